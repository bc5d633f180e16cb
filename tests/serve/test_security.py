"""Security: loopback by default, a token off loopback (and then on every route but /health),
images by id only and nothing outside ZIT_HOME, Host names checked on a loopback server."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

from tests.cli_helpers import run_zit
from tests.serve.conftest import IDEA, SMALL, make_app

TOKEN = "s3cret-token"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_a_reachable_host_without_a_token_refuses_to_start(capsys, host, monkeypatch):
    monkeypatch.delenv("ZIT_SERVE_TOKEN", raising=False)
    code, out, err = run_zit(capsys, "serve", "--host", host, "--backend", "sketch")
    assert code == 2 and out == ""
    assert err.startswith("zit: error: --host ") and "needs --token" in err
    assert len(err.strip().splitlines()) == 1


def test_loopback_names_are_loopback():
    from zit_agent.agent.cli.serve import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "localhost.example.org"]))


def test_a_busy_port_is_one_line(capsys):
    from zit_agent.agent.cli.serve import bind

    taken = bind("127.0.0.1", 0)
    taken.listen()
    port = str(taken.getsockname()[1])
    try:
        code, _, err = run_zit(capsys, "serve", "--port", port, "--backend", "sketch")
    finally:
        taken.close()
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err


ROUTES = [
    ("GET", "/"), ("GET", "/sessions/x"), ("GET", "/generate"), ("GET", "/history"),
    ("GET", "/evals"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/v1/models"),
    ("POST", "/v1/images/generations"), ("GET", "/api/sessions"), ("POST", "/api/sessions"),
    ("POST", "/api/tokens"), ("POST", "/api/ruts"), ("GET", "/api/images"),
    ("GET", "/static/app.js"), ("GET", "/images/" + "0" * 64 + ".png"), ("GET", "/api/jobs/x"),
    ("POST", "/v1/images/edits"), ("POST", "/api/edits"),
    ("POST", "/api/images/" + "0" * 64 + "/vary"),
]  # fmt: skip


def test_with_a_token_every_route_but_health_needs_it(qwen_tokenizer, zit_home):
    app = make_app(qwen_tokenizer, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                answer = client.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
        assert client.get("/health").status_code == 200
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/v1/models", headers=good).status_code == 200
        done = client.post(
            "/v1/images/generations", headers=good, json={"prompt": IDEA, "size": "64x64"}
        )
        assert done.status_code == 200, done.text

        # a browser logs in once: a SameSite=Strict, HttpOnly cookie
        refused = client.post("/login", data={"token": "wrong"}, follow_redirects=False)
        assert refused.status_code == 401 and "zit_token" not in refused.headers.get(
            "set-cookie", ""
        )
        login = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/").status_code == 200  # the client keeps the cookie


def test_a_browser_without_the_token_is_sent_to_log_in(qwen_tokenizer, zit_home):
    with TestClient(make_app(qwen_tokenizer, token=TOKEN), base_url="http://127.0.0.1") as client:
        page = client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 401 and 'href="/login"' in page.text
        assert client.get("/login").status_code == 200


TRAVERSALS = [
    "/images/../../../../etc/passwd", "/images/..%2f..%2f..%2fetc%2fpasswd",
    "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png", "/images/etc/passwd.png",
    "/static/../../../../etc/passwd", "/static/..%2f..%2fapp.py", "/static/%2e%2e/app.py",
    "/evals/../../etc/passwd", "/evals/..%2f..%2f/report.html", "/api/images/..%2f..%2fetc",
    "/images/" + "a" * 64 + ".png", "/images/" + "A" * 64 + ".png", "/images/history.sqlite",
]  # fmt: skip


def test_no_request_path_reaches_a_file_outside_zit_home(client, zit_home, tmp_path):
    for path in TRAVERSALS:
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert b"root:" not in answer.content


def test_only_recorded_pngs_inside_zit_home_are_served(client, zit_home, tmp_path):
    from zit_agent.agent.history import HistoryStore, file_hash
    from zit_agent.settings import load_settings

    done = client.post("/api/generate", json={"idea": IDEA, "ruts": False, **SMALL}).json()
    inside = done["images"][0]
    assert client.get(inside["url"]).status_code == 200

    outside = tmp_path / "outside.png"  # a real PNG, outside ZIT_HOME, recorded anyway
    outside.write_bytes(client.get(inside["url"]).content[:-1] + b"\x00")
    link = zit_home / "outputs" / "link.png"  # inside, but a link to the outside file
    os.symlink(outside, link)
    changed = zit_home / "outputs" / "changed.png"  # recorded, then its bytes replaced
    changed.write_bytes(outside.read_bytes() + b"1")
    changed_id = file_hash(changed)
    with HistoryStore(load_settings().history_db) as store:
        outside_id = store.add_image(outside).content_hash
        store.add_image(link)
        store.add_image(changed)
    changed.write_bytes(b"other bytes")

    for image_id in (outside_id, changed_id):
        assert client.get(f"/images/{image_id}.png").status_code == 404
        assert client.get(f"/api/images/{image_id}").status_code == 404
    assert client.get(f"/images/{inside['id']}.jpg").status_code == 404


def test_a_loopback_server_answers_only_to_loopback_host_names(qwen_tokenizer, zit_home):
    hosts = ["127.0.0.1", "localhost", "::1"]
    with TestClient(make_app(qwen_tokenizer, allowed_hosts=hosts)) as client:
        for host in ("127.0.0.1:7860", "localhost", "[::1]:7860", "LOCALHOST:1"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:7860", "127.0.0.1.evil.example", ""):
            assert client.get("/health", headers={"host": host}).status_code == 400, host
