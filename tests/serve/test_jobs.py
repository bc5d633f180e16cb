"""One GPU, many clients: the bounded queue (429 + Retry-After), requests that wait while the models
load (503 past the wait, after a failed load, or while stopping), per-job progress, and a client
that goes away cancelling its job. On a live uvicorn (loopback)."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from tests.serve.conftest import IDEA, SMALL, LiveServer, gated_live, sse_events

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


class SlowLoad:
    """`Runner.load` held until `release` is set (then the sketch runner, or `error` raised)."""

    def __init__(self, tokenizer, error: Exception | None = None):
        self.tokenizer, self.error = tokenizer, error
        self.release = threading.Event()

    def __call__(self, settings, options, **kwargs):
        from tests.agent.agent_fixtures import sketch_runner

        kwargs["progress"]("loading the image backend (sketch) and its tokenizer")
        self.release.wait(60)
        if self.error is not None:
            raise self.error
        return sketch_runner(self.tokenizer)


@contextlib.contextmanager
def loading_server(monkeypatch, load: SlowLoad, **kwargs):
    from zit_agent.agent.run import Runner
    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    monkeypatch.setattr(Runner, "load", staticmethod(load))
    app = create_app(load_settings(), run_options(backend="sketch"), **kwargs)
    try:
        with LiveServer(app) as server:
            yield server
    finally:
        load.release.set()


def test_a_request_during_loading_waits_for_the_models_and_gets_its_image(
    qwen_tokenizer, zit_home, monkeypatch
):
    load, lines = SlowLoad(qwen_tokenizer), []
    with loading_server(monkeypatch, load, progress=lines.append) as server:
        url = server.url
        assert httpx.get(f"{url}/health").json()["status"] == "loading"
        assert httpx.get(f"{url}/").status_code == 200  # the page answers while the models load
        events, answers = [], {}

        def follow() -> None:  # a progress stream, sent first: its job waits for the models
            body = {"idea": IDEA, "ruts": False, **SMALL}
            headers = {"accept": "text/event-stream"}
            with httpx.stream("POST", f"{url}/api/generate", json=body, headers=headers,
                              timeout=60) as stream:  # fmt: skip
                events.extend(sse_events(stream.iter_lines()))

        def ask(name: str, path: str, body: dict) -> None:
            answers[name] = httpx.post(f"{url}{path}", json=body, timeout=60)

        clients = [threading.Thread(target=follow)]
        clients[0].start()
        wait_for(lambda: len(server.state.jobs._jobs) == 1)
        clients += [
            threading.Thread(target=ask, args=("image", "/v1/images/generations",
                                               {"prompt": IDEA, "size": "64x64", "seed": 4})),
            threading.Thread(target=ask, args=("empty", "/api/generate", {"idea": "   "})),
        ]  # fmt: skip
        for client in clients[1:]:
            client.start()
        wait_for(lambda: len(server.state.jobs._jobs) == 3)
        time.sleep(0.3)  # they wait (none is answered 503)
        assert not answers and httpx.get(f"{url}/health").json()["status"] == "loading"
        load.release.set()
        for client in clients:
            client.join(60)

        image = answers["image"]
        assert image.status_code == 200, image.text
        assert len(image.json()["data"]) == 1
        empty = answers["empty"]  # checked once the models are there: a 422, not a 503
        assert empty.status_code == 422 and "the idea is empty" in empty.json()["error"]["message"]
        kinds = [kind for kind, _ in events]
        assert kinds[:4] == ["queued", "start", "waiting", "loaded"] and kinds[-1] == "done"
        assert events[0][1] == {"position": 1, "waiting_for": "models"}
        assert events[2][1]["for"] == "models" and events[2][1]["timeout_s"] > 0

        server.state.stop()
        assert httpx.get(f"{url}/health").json()["status"] == "stopping"
        stopping = generate(url)
        assert stopping.status_code == 503 and "stopping" in stopping.json()["error"]["message"]
    assert lines == ["loading the image backend (sketch) and its tokenizer", "stopped"]


def test_a_request_waits_for_the_models_at_most_load_wait_s(qwen_tokenizer, zit_home, monkeypatch):
    with loading_server(monkeypatch, SlowLoad(qwen_tokenizer), load_wait_s=0.5) as server:
        late = generate(server.url)
        assert late.status_code == 503 and int(late.headers["retry-after"]) >= 1
        assert "still loading after 0.5 s" in late.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").json()["status"] == "loading"


def test_a_request_waiting_for_a_load_that_fails_gets_why(qwen_tokenizer, zit_home, monkeypatch):
    from zit_agent.errors import ModelNotFoundError

    load = SlowLoad(qwen_tokenizer, ModelNotFoundError("image model: no such folder /x"))
    with loading_server(monkeypatch, load) as server:
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(generate(server.url)))
        waiting.start()
        wait_for(lambda: len(server.state.jobs._jobs) == 1)
        load.release.set()
        waiting.join(60)
        [answer] = answers
        assert answer.status_code == 503
        assert "failed to load: image model: no such folder /x" in answer.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").json()["status"] == "failed"


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
