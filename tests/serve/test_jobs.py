"""One GPU, many clients: the bounded queue (429 + Retry-After), 503 while loading or stopping,
per-job progress, and a client that goes away cancelling its job. On a live uvicorn (loopback)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.serve.conftest import IDEA, SMALL, gated_live, sse_events

pytestmark = pytest.mark.slow  # starts servers


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def generate(url: str, **extra) -> httpx.Response:
    body = {"prompt": IDEA, "size": "64x64", **extra}
    return httpx.post(f"{url}/v1/images/generations", json=body, timeout=60)


def test_a_full_queue_answers_429_with_retry_after(qwen_tokenizer, zit_home):
    with gated_live(qwen_tokenizer, queue_size=1) as (server, backend):
        answers: list[httpx.Response] = []
        first = threading.Thread(target=lambda: answers.append(generate(server.url, seed=1)))
        first.start()
        wait_for(backend.started.is_set)  # running
        second = threading.Thread(target=lambda: answers.append(generate(server.url, seed=2)))
        second.start()
        wait_for(lambda: server.state.jobs.waiting == 1)  # waiting: the queue is full
        refused = generate(server.url, seed=3)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").json()["queue"] == {
            "waiting": 1, "size": 1, "running": True,
        }  # fmt: skip
        backend.go.set()
        first.join(30)
        second.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert backend.calls == 2


def test_a_client_that_disconnects_cancels_its_running_job(qwen_tokenizer, zit_home):
    with gated_live(qwen_tokenizer) as (server, backend):
        with httpx.stream(
            "POST", f"{server.url}/api/generate", json={"idea": IDEA, "ruts": False, **SMALL},
            headers={"accept": "text/event-stream"}, timeout=30,
        ) as response:  # fmt: skip
            job_id = response.headers["x-zit-job"]
            for kind, data in sse_events(response.iter_lines()):
                if kind == "step" and data["step"] >= 3:
                    break  # and the connection closes here
        job = server.state.jobs.get(job_id)
        wait_for(lambda: job.done)
        assert job.status == "cancelled"
        assert backend.stopped_at is not None and backend.stopped_at < backend.steps
        status = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
        assert status["status"] == "cancelled"
        backend.go.set()
        assert generate(server.url, seed=6).status_code == 200  # the queue goes on


def test_a_waiting_client_that_goes_away_cancels_its_queued_job(qwen_tokenizer, zit_home):
    with gated_live(qwen_tokenizer) as (server, backend):
        running = threading.Thread(target=lambda: generate(server.url, seed=1))
        running.start()
        wait_for(backend.started.is_set)
        with pytest.raises(httpx.ReadTimeout):  # this client gives up while its job waits
            httpx.post(
                f"{server.url}/v1/images/generations",
                json={"prompt": "a second idea", "size": "64x64"}, timeout=0.5,
            )  # fmt: skip
        wait_for(lambda: server.state.jobs.waiting == 0)
        jobs = list(server.state.jobs._jobs.values())
        assert jobs[-1].label == "a second idea" and jobs[-1].status == "cancelled"
        backend.go.set()
        running.join(30)
    assert backend.calls == 1  # the cancelled job never rendered


def test_progress_can_be_followed_by_another_client(qwen_tokenizer, zit_home):
    with gated_live(qwen_tokenizer) as (server, backend):
        owner = threading.Thread(target=lambda: generate(server.url, seed=1))
        owner.start()
        wait_for(backend.started.is_set)
        [job] = list(server.state.jobs._jobs.values())
        backend.go.set()
        with httpx.stream("GET", f"{server.url}/api/jobs/{job.id}/events", timeout=30) as events:
            kinds = [kind for kind, _ in sse_events(events.iter_lines())]
        owner.join(30)
    assert kinds[:2] == ["queued", "start"] and kinds[-1] == "done"
    assert kinds.count("step") == backend.steps


def test_503_while_loading_and_while_stopping(qwen_tokenizer, zit_home, monkeypatch):
    from fastapi.testclient import TestClient

    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.agent.run import Runner
    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    release, lines = threading.Event(), []

    def slow_load(settings, options, **kwargs):
        kwargs["progress"]("loading the image backend (sketch) and its tokenizer")
        release.wait(20)
        return sketch_runner(qwen_tokenizer)

    monkeypatch.setattr(Runner, "load", staticmethod(slow_load))
    app = create_app(load_settings(), run_options(backend="sketch"), progress=lines.append)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/health").json()["status"] == "loading"
        assert client.get("/").status_code == 200  # the page answers while the models load
        busy = client.post("/v1/images/generations", json={"prompt": IDEA})
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert "loading" in busy.json()["error"]["message"]
        release.set()
        wait_for(lambda: client.get("/health").json()["status"] == "ready")
        assert client.post("/v1/images/generations", json={"prompt": IDEA, "size": "64x64"}).status_code == 200  # fmt: skip
        app.state.zit.stop()
        assert client.get("/health").json()["status"] == "stopping"
        stopping = client.post("/v1/images/generations", json={"prompt": IDEA})
        assert stopping.status_code == 503 and "stopping" in stopping.json()["error"]["message"]
    assert lines == ["loading the image backend (sketch) and its tokenizer", "stopped"]


def test_a_failed_load_is_reported_not_served(zit_home, tmp_path):
    from fastapi.testclient import TestClient

    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    errors = []
    missing = run_options(backend="sketch", tokenizer=str(tmp_path / "no-tokenizer"))
    app = create_app(load_settings(), missing, on_loaded=errors.append)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        wait_for(lambda: errors)
        assert errors[0].kind == "model not found"
        assert client.get("/health").json()["status"] == "failed"
        answer = client.post("/v1/images/generations", json={"prompt": IDEA})
        assert answer.status_code == 503 and "failed to load" in answer.json()["error"]["message"]


def test_concurrent_sessions_never_mix(live):
    def converse(name: str) -> dict:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            idea = f"{IDEA}, {name}"
            assert http.post("/api/sessions", json={"name": name, "idea": idea, **SMALL}).is_success
            for text in (f"{name} wears red", "/vary"):
                answer = http.post(f"/api/sessions/{name}/messages", json={"text": text})
                assert answer.status_code == 200, answer.text
            return http.get(f"/api/sessions/{name}").json()

    names = ["north", "south", "east", "west"]
    results: dict[str, dict] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, converse(n))) for n in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name in names:
        view = results[name]
        assert view["idea"].endswith(name)
        assert [t["message"] for t in view["history"]] == [
            view["idea"],
            f"{name} wears red",
            "/vary",
        ]
        images = {ref["id"] for t in view["history"] for a in t["attempts"] for ref in a["images"]}
        for image_id in images:
            record = httpx.get(f"{live.url}/api/images/{image_id}").json()
            assert record["session"] == name and record["provenance"]["agent"]["run"] == name
            assert record["provenance"]["idea"] == view["idea"]
