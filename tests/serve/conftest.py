"""The server under test: the real app over the sketch stand-in (and the hash embedder), through
FastAPI's TestClient or a live uvicorn on loopback; backends that hold a render until told to go
(tests only) for the queue's behaviour."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from tests.agent.agent_fixtures import IDEA, sketch_runner
from zit_agent.backends.base import ImageBackend

SMALL = {"size": "64x64", "count": 2, "seed": 1}


def make_app(tokenizer, *, backend=None, **kwargs):
    from zit_agent.agent.serve import create_app
    from zit_agent.settings import load_settings

    runner = sketch_runner(tokenizer, backend=backend)
    return create_app(load_settings(), runner=runner, **kwargs)


@pytest.fixture
def client(qwen_tokenizer, zit_home):
    from fastapi.testclient import TestClient

    with TestClient(make_app(qwen_tokenizer), base_url="http://127.0.0.1") as test_client:
        yield test_client


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        from zit_agent.agent.cli.serve import bind

        self.app = app
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the live server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def state(self):
        return self.app.state.zit


@pytest.fixture
def live(qwen_tokenizer, zit_home) -> Iterator[LiveServer]:
    with LiveServer(make_app(qwen_tokenizer)) as server:
        yield server


class GateBackend(ImageBackend):
    """A fake image backend (tests only): each render takes `steps` steps reported through the real
    progress hook, each 50 ms long until `go` is set (then none), so a test decides how long renders
    last; a cancelled job stops at its next step (`stopped_at`)."""

    name = "gate"

    def __init__(self, tokenizer, steps: int = 400):
        from zit_agent.backends.tiny.sketch import SketchBackend

        self.sketch = SketchBackend(tokenizer)
        self.steps = steps
        self.go = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.stopped_at: int | None = None

    def render(self, token_ids, seeds, options):
        from zit_agent.backends.progress import step_callback

        self.calls += 1
        self.started.set()
        report = step_callback(None, self.steps)
        for step in range(self.steps):
            try:
                if report is not None:
                    report(None, step, None, {})
            except Exception:
                self.stopped_at = step
                raise
            if not self.go.is_set():
                time.sleep(0.05)
        return self.sketch.render(token_ids, seeds, options)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    """(kind, data) per server-sent event, from a stream's lines."""
    import json

    kind, data = None, ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and kind is not None:
            yield kind, json.loads(data)
            kind, data = None, ""


@contextlib.contextmanager
def gated_live(
    qwen_tokenizer, steps: int = 400, **kwargs
) -> Iterator[tuple[LiveServer, GateBackend]]:
    backend = GateBackend(qwen_tokenizer, steps)
    try:
        with LiveServer(make_app(qwen_tokenizer, backend=backend, **kwargs)) as server:
            yield server, backend
    finally:
        backend.go.set()


__all__ = ["IDEA", "SMALL", "GateBackend", "LiveServer", "gated_live", "make_app", "sse_events"]
