"""The HTTP API through FastAPI's TestClient: the real app, run API and sketch stand-in; sessions
shared with `zit chat` in both directions; bounds answered with one-line 422s."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tests.cli_helpers import run_zit
from tests.serve.conftest import IDEA, SMALL, sse_events


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def test_openai_images_are_pngs_of_the_requested_size(client):
    done = client.post(
        "/v1/images/generations",
        json={"prompt": IDEA, "n": 2, "size": "64x96", "seed": 3, "response_format": "b64_json"},
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert len(body["data"]) == 2
    for item in body["data"]:
        assert png(base64.b64decode(item["b64_json"])).size == (64, 96)
        assert item["revised_prompt"].startswith(IDEA)
    # n > 1 runs the rut loop: the sketch stand-in's default composition is a rut, escaped
    assert body["zit"]["ruts_detected"] == 1 and body["zit"]["final_verdict"] == "ok"
    assert body["zit"]["attempts"][0]["verdict"] == "rut"


def test_openai_urls_serve_the_images_and_one_image_skips_the_rut_loop(client):
    done = client.post(
        "/v1/images/generations",
        json={"prompt": IDEA, "size": "64x64", "seed": 9, "response_format": "url"},
    )
    assert done.status_code == 200, done.text
    [item] = done.json()["data"]
    assert item["url"].startswith("http://127.0.0.1/images/") and "b64_json" not in item
    assert png(client.get(item["url"]).content).size == (64, 64)
    assert done.json()["zit"]["attempts"][0].get("verdict") is None  # n = 1: no rut check


def test_models_lists_the_served_model_and_others_are_not_found(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["sketch"]
    other = client.post("/v1/images/generations", json={"prompt": IDEA, "model": "dall-e-3"})
    assert other.status_code == 404 and "dall-e-3" in other.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"prompt": IDEA, "n": 0}, "n: Input should be greater than or equal to 1"),
        ({"prompt": IDEA, "n": 65}, "n: Input should be less than or equal to 64"),
        ({"prompt": IDEA, "size": "100x100"}, "width 100 is not a multiple of 16"),
        ({"prompt": IDEA, "size": "8192x64"}, "8192"),
        ({"prompt": IDEA, "steps": 1000}, "steps: Input should be less than or equal to 200"),
        ({"prompt": "x" * 4001}, "prompt: String should have at most 4000 characters"),
        ({"prompt": ""}, "prompt: String should have at least 1 character"),
        ({"prompt": IDEA, "writer": "gguf:/x.gguf"}, "writer: Extra inputs are not permitted"),
        ({"prompt": IDEA, "seed": -1}, "seed: Input should be greater than or equal to 0"),
    ],
)
def test_bad_requests_get_a_422_that_names_the_problem(client, body, problem):
    done = client.post("/v1/images/generations", json=body)
    assert done.status_code == 422, done.text
    error = done.json()["error"]
    assert problem in error["message"] and "\n" not in error["message"]
    assert error["type"] == "invalid input"


def test_bodies_over_the_bound_are_refused_before_they_are_read(client):
    from zit_agent.defaults import SERVE

    big = b'{"prompt": "' + b"x" * SERVE.max_json_bytes + b'"}'
    done = client.post(
        "/v1/images/generations", content=big, headers={"content-type": "application/json"}
    )
    assert done.status_code == 413 and "over" in done.json()["error"]["message"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(SERVE.max_json_bytes // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post(
        "/api/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_a_session_continues_between_the_api_and_zit_chat_both_ways(client, capsys):
    started = client.post("/api/sessions", json={"name": "cafe", "idea": IDEA, **SMALL})
    assert started.status_code == 201, started.text
    assert started.json()["turns"] == 1 and started.json()["status"] == "waiting"

    code, out, err = run_zit(capsys, "chat", "--session", "cafe", "--message", "at night", "--json")
    assert code == 0, err
    seen = client.get("/api/sessions/cafe").json()
    assert [t["message"] for t in seen["history"]] == [IDEA, "at night"]

    sent = client.post("/api/sessions/cafe/messages", json={"text": "/seed 40"})
    assert sent.status_code == 200, sent.text
    code, out, err = run_zit(capsys, "chat", "--session", "cafe", "--show", "--json")
    shown = json.loads(out)
    assert [t["message"] for t in shown["turns"]] == [IDEA, "at night", "/seed 40"]
    assert shown["turns"][2]["shots"][0]["seeds"] == [40, 41]
    last = sent.json()["history"][-1]["attempts"][-1]["images"]
    assert [png(client.get(ref["url"]).content).size for ref in last] == [(64, 64)] * 2
    assert [s["name"] for s in client.get("/api/sessions").json()] == ["cafe"]


def test_session_errors_leave_the_session_as_it_was(client):
    client.post("/api/sessions", json={"name": "s", "idea": IDEA, **SMALL})
    again = client.post("/api/sessions", json={"name": "s", "idea": IDEA})
    assert again.status_code == 409 and "exists" in again.json()["error"]["message"]
    bad = client.post("/api/sessions/s/messages", json={"text": "/frobnicate"})
    assert (
        bad.status_code == 422 and "unknown command /frobnicate" in bad.json()["error"]["message"]
    )
    owned = client.post("/api/sessions/s/messages", json={"text": "more", "size": "128x128"})
    assert owned.status_code == 422 and "/size WxH" in owned.json()["error"]["message"]
    assert client.get("/api/sessions/nope").status_code == 404
    assert client.get("/api/sessions/..%2F..").status_code in (404, 422)
    assert client.get("/api/sessions/s").json()["turns"] == 1


def test_local_commands_and_shorter(client):
    client.post("/api/sessions", json={"name": "c", "idea": IDEA + " at golden hour", **SMALL})
    helped = client.post("/api/sessions/c/messages", json={"text": "/help"}).json()
    assert "/shorter" in helped["answer"] and helped["turns"] == 1
    shorter = client.post("/api/sessions/c/messages", json={"text": "/shorter"}).json()
    turn = shorter["history"][-1]
    assert turn["message"] == "/shorter"
    assert [lever["name"] for lever in turn["attempts"][0]["levers"]] == ["shorter"]


def test_progress_streams_as_server_sent_events(client):
    with client.stream(
        "POST", "/api/sessions", json={"name": "p", "idea": IDEA, "ruts": True, **SMALL},
        headers={"accept": "text/event-stream"},
    ) as response:  # fmt: skip
        assert response.status_code == 200  # the stream's; the session's outcome is in `done`
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    kinds = [kind for kind, _ in events]
    for kind in ("queued", "start", "write", "assemble", "render", "rendered", "judge", "escape"):
        assert kind in kinds
    assert kinds[-1] == "done" and events[-1][1]["name"] == "p"
    judged = [data["verdict"] for kind, data in events if kind == "judge"]
    assert judged[0] == "rut" and judged[-1] == "ok"
    rendered = next(data for kind, data in events if kind == "rendered")
    assert all(len(i) == 64 for i in rendered["images"])  # ids, never paths


def test_render_again_renders_the_exact_stored_ids(client):
    done = client.post("/api/generate", json={"idea": IDEA, **SMALL}).json()
    first = done["images"][0]
    again = client.post(f"/api/images/{first['id']}/render", json={})
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["exact"] and body["images"][0]["seed"] == first["seed"]

    def pixels(ref):
        return png(client.get(ref["url"]).content).tobytes()

    assert pixels(body["images"][0]) == pixels(first)  # the same ids and seed: the same image
    other = client.post(f"/api/images/{first['id']}/render", json={"seed": 77}).json()
    assert other["images"][0]["id"] != first["id"] and other["images"][0]["seed"] == 77
    record = client.get(f"/api/images/{first['id']}").json()
    assert record["idea"] == IDEA and record["provenance"]["seed"] == first["seed"]


def test_tokens_are_the_ids_zit_tokens_prints(client, capsys):
    done = client.post("/api/tokens", json={"idea": "a cat"}).json()
    assert done["token_ids"] == [151644, 872, 198, 64, 8251, 151645, 198, 151644, 77091, 198]
    think = client.post("/api/tokens", json={"idea": "a cat", "think": "small", "close": True})
    assert think.json()["shape"] == "think"
    assert client.post("/api/tokens", json={"idea": "a cat", "close": True}).status_code == 422


def test_ruts_judges_uploaded_images(client, zit_home):
    done = client.post("/api/generate", json={"idea": IDEA, "ruts": False, **SMALL, "count": 4})
    files = [
        ("files", (f"{i}.png", client.get(ref["url"]).content, "image/png"))
        for i, ref in enumerate(done.json()["images"])
    ]
    judged = client.post("/api/ruts", files=files)
    assert judged.status_code == 200, judged.text
    body = judged.json()
    assert body["verdict"] == "rut" and body["count"] == 4 and body["embedder"] == "hash"
    assert body["groups"][0]["idea"] == IDEA  # read from the images' own provenance
    junk = client.post("/api/ruts", files=[*files[:1], ("files", ("x.png", b"nope", "image/png"))])
    assert junk.status_code == 422 and "x.png is not a readable image" in junk.text


def test_pages_show_sessions_history_and_eval_reports(client, zit_home):
    client.post("/api/sessions", json={"name": "cafe", "idea": IDEA, "ruts": True, **SMALL})
    page = client.get("/sessions/cafe")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'class="verdict rut"' in page.text and "mean similarity" in page.text
    assert "Vendi" in page.text and "<b>vary</b>" in page.text  # the lever that fired
    assert client.get("/").status_code == 200 and "cafe" in client.get("/").text
    assert client.get("/sessions/none-such").status_code == 404
    assert "render again" in client.get("/history").text

    report = zit_home / "outputs" / "evals" / "smoke" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_bytes(b"<!doctype html><p>the report, as written</p>")
    listing = client.get("/evals").text
    assert "outputs/evals/smoke" in listing
    link = listing.split('href="/evals/')[1].split('"')[0]
    served = client.get(f"/evals/{link}")
    assert served.content == report.read_bytes() and served.headers["content-type"].startswith(
        "text/html"
    )
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/images/generations" in schema["paths"] and "/api/sessions" in schema["paths"]


def test_user_text_is_escaped_in_the_page(client):
    idea = "<script>alert(1)</script> & <img src=x onerror=alert(2)>"
    client.post("/api/sessions", json={"name": "x", "idea": idea, **SMALL})
    page = client.get("/sessions/x").text
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(2)&gt;" in page


def test_a_session_started_with_other_parts_is_refused(qwen_tokenizer, zit_home, capsys):
    from fastapi.testclient import TestClient

    from tests.serve.conftest import make_app

    code, _, err = run_zit(
        capsys, "chat", "--session", "z", "--message", IDEA, "--backend", "sketch",
        "--image-model", "elsewhere", "--size", "64x64", "-n", "1",
    )  # fmt: skip
    assert code == 0, err
    with TestClient(make_app(qwen_tokenizer), base_url="http://127.0.0.1") as client:
        refused = client.post("/api/sessions/z/messages", json={"text": "closer"})
    assert refused.status_code == 409
    assert "image_model 'elsewhere'" in refused.json()["error"]["message"]


def test_the_servers_options_are_the_requests_defaults(qwen_tokenizer, zit_home):
    from fastapi.testclient import TestClient

    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    served = run_options(backend="sketch", size="32x48", seed=5)
    app = create_app(load_settings(), served, runner=sketch_runner(qwen_tokenizer))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        [item] = client.post("/v1/images/generations", json={"prompt": IDEA}).json()["data"]
        assert png(base64.b64decode(item["b64_json"])).size == (32, 48)
        done = client.post("/v1/images/generations", json={"prompt": IDEA, "size": "auto"})
        assert png(base64.b64decode(done.json()["data"][0]["b64_json"])).size == (32, 48)
        given = client.post("/api/generate", json={"idea": IDEA, "size": "16x16", "count": 1})
        assert given.json()["images"][0]["seed"] == 5
