"""`zit serve` as a user runs it: a fresh process answers GET / with the page; killed mid-session
(SIGKILL) and started again (now on 0.0.0.0 with --token: 401 without it), it continues the
session, which `zit chat` then continues too;
SIGTERM stops it cleanly (the running job finishes, the databases close)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from tests.cli_helpers import run_zit
from tests.serve.conftest import IDEA

pytestmark = pytest.mark.slow  # starts processes
READY = re.compile(r"ready at (http://\S+/) ")
TOKEN = "restart-token"


class ServeProcess:
    """`zit serve --port 0 ...` in a new process; `url` once it says it is ready."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zit_agent.agent", "serve", "--port", "0", *args],
            stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = self._wait_ready()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_ready(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=90)
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"not ready: {self.seen}") from None
            self.seen.append(line)
            found = READY.search(line)
            if found:
                return found.group(1).rstrip("/")

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self.reader.join(10)  # every line it wrote is read
        return code


def test_killed_and_started_again_the_server_continues_the_session(capsys, zit_home):
    first = ServeProcess("--backend", "sketch", "--size", "64x64", "-n", "2")
    try:
        assert any("loading the image backend (sketch)" in line for line in first.seen)
        page = httpx.get(f"{first.url}/")
        assert page.status_code == 200 and "<!doctype html>" in page.text.lower()
        started = httpx.post(
            f"{first.url}/api/sessions", json={"name": "cafe", "idea": IDEA, "seed": 3}, timeout=60
        )
        assert started.status_code == 201, started.text
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # no clean-up of any kind

    # started again, reachable from other machines: with a token, which every route but /health needs
    second = ServeProcess("--backend", "sketch", "--size", "64x64", "-n", "2", "--host", "0.0.0.0",
                          "--token", TOKEN)  # fmt: skip
    url = second.url.replace("0.0.0.0", "127.0.0.1")
    auth = {"authorization": f"Bearer {TOKEN}"}
    try:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/api/sessions/cafe").status_code == 401
        sent = httpx.post(
            f"{url}/api/sessions/cafe/messages", json={"text": "at night"}, headers=auth, timeout=60
        )
        assert sent.status_code == 200, sent.text
        assert [t["message"] for t in sent.json()["history"]] == [IDEA, "at night"]
        for ref in sent.json()["history"][0]["attempts"][0]["images"]:  # the first server's
            assert httpx.get(url + ref["url"], headers=auth).status_code == 200
    finally:  # a clean stop (uvicorn then ends the process by the signal it was sent)
        assert second.stop(signal.SIGTERM) == -signal.SIGTERM
    assert any("stopped" in line for line in list(second.lines.queue))

    code, out, err = run_zit(capsys, "chat", "--session", "cafe", "--message", "/seed 9", "--json")
    assert code == 0, err
    assert json.loads(out)["turn"] == 3
