"""Installs `zit_plugin_example` as a distribution with entry points (a dist-info folder on
`sys.path`), as `pip install` of a plugin package would, and clears zit's registry caches; and
serves OpenAI-compatible chat completions on a loopback port for its HTTP writer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ENTRY_POINTS = """\
[zit_agent.writers]
http = tests.plugin.zit_plugin_example:load_http

[zit_agent.image_backends]
flat = tests.plugin.zit_plugin_example:load_flat

[zit_agent.embedders]
mean-colour = tests.plugin.zit_plugin_example:load_mean_colour

[zit_agent.levers]
far-seeds = tests.plugin.zit_plugin_example:FAR_SEEDS
"""


@pytest.fixture
def plugin_installed(tmp_path, monkeypatch):
    from zit_agent.agent import levers
    from zit_agent.backends import registry

    dist = tmp_path / "site" / "zit_plugin_example-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zit-plugin-example\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry.registered.cache_clear()
    levers.registered.cache_clear()
    yield
    registry.registered.cache_clear()
    levers.registered.cache_clear()


class CompletionsServer:
    """A small real HTTP server (stdlib, a thread, a free loopback port) that answers
    `POST /v1/chat/completions` as an OpenAI-compatible server does, deterministically: a plan and
    a description built from the idea in the last user message and the request's seed. Every
    request body is kept in `requests`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                answer = json.dumps(owner.completion(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def idea(body: dict) -> str:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        return user.removeprefix("Idea:").split("\n\n", 1)[0].strip()

    def completion(self, body: dict) -> dict:
        idea, seed = self.idea(body), body.get("seed", 0)
        description = f"Served over HTTP: {idea}, in soft morning light, variation {seed}."
        content = f"<think>\nLight and one variation.\n</think>\n\n{description}"
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": "served-qwen3",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60},
        }

    def __enter__(self) -> CompletionsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def completions() -> Iterator[CompletionsServer]:
    with CompletionsServer() as server:
        yield server
