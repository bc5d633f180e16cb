"""A bounded load test on loopback: 200 requests 12 at a time (the queue holds 12 behind the
running job, so all are served), then a burst of 24 while a render holds the queue (13 fit, the rest
are refused). Every answer is 200, 429 or 503 (never a 5xx), no image is lost or duplicated, and
the server still answers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import gated_live

pytestmark = pytest.mark.slow  # starts a server, sends 224 requests
ALLOWED = {200, 429, 503}
QUEUE = 12  # 12 clients never find it full (the running one may just have finished)


def test_many_clients_get_answers_and_every_image_once(qwen_tokenizer, zit_home):
    from zit_agent.agent.history import HistoryStore
    from zit_agent.settings import load_settings

    with gated_live(qwen_tokenizer, steps=4, queue_size=QUEUE) as (server, backend), httpx.Client(
        base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=40)
    ) as http:  # fmt: skip
        backend.go.set()

        def ask(seed: int) -> httpx.Response:
            body = {
                "prompt": f"idea {seed % 7}",
                "size": "64x64",
                "seed": seed,
                "response_format": "url",
            }
            return http.post("/v1/images/generations", json=body)

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(200)))

        assert [a.status_code for a in answers] == [200] * 200

        # a burst of 24 at once, while one render holds the queue (12 may wait behind it)
        backend.go.clear()
        gate = threading.Barrier(24)

        def burst(seed: int) -> httpx.Response:
            gate.wait()
            return ask(seed)

        with ThreadPoolExecutor(24) as pool:
            pending = [pool.submit(burst, 1000 + i) for i in range(24)]
            while server.state.jobs.waiting < QUEUE and not all(p.done() for p in pending):
                threading.Event().wait(0.02)
            refused = [p.result() for p in pending if p.done()]
            backend.go.set()
            burst_answers = [p.result() for p in pending]
        assert http.get("/health").json()["status"] == "ready"  # still answering
        assert http.get("/").status_code == 200

    everything = answers + burst_answers
    assert {a.status_code for a in everything} <= ALLOWED, [a.status_code for a in everything]
    assert all(a.headers.get("retry-after") for a in everything if a.status_code == 429)
    assert sum(a.status_code == 429 for a in burst_answers) >= 24 - (QUEUE + 1)
    assert all(a.status_code == 429 for a in refused)
    served = [a.json() for a in everything if a.status_code == 200]
    ids = [item["url"].rsplit("/", 1)[1] for body in served for item in body["data"]]
    assert len(ids) == len(served) and len(set(ids)) == len(ids)  # one image each, no duplicate
    on_disk = sorted(Path(load_settings().outputs_dir, "serve").glob("*.png"))
    assert len(on_disk) == len(ids)  # none lost, none extra
    with HistoryStore(load_settings().history_db) as store:
        assert {f"{row.content_hash}.png" for row in store.images()} == set(ids)
