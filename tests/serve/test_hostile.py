"""Issue 24's hostile battery against the server: each request that got a 500, hung, or reached a
file by path, now a 4xx that names the problem (tests named after their input)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import httpx
import pytest
from PIL import Image

from tests.serve.conftest import IDEA, SMALL, sse_events


def png_bytes(size=(16, 16), chunk: tuple[bytes, bytes] | None = None, before=b"IEND") -> bytes:
    """A small PNG (or a huge 1-bit one), with one extra chunk before `before` when given."""
    buffer = io.BytesIO()
    Image.new("1" if size[0] > 4096 else "RGB", size).save(buffer, format="PNG")
    raw = buffer.getvalue()
    if chunk is None:
        return raw
    kind, data = chunk
    end = raw.index(before) - 4
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return raw[:end] + struct.pack(">I", len(data)) + kind + data + crc + raw[end:]


def finished_job(server) -> str:
    done = httpx.post(f"{server.url}/api/generate", json={"idea": IDEA, **SMALL}, timeout=60)
    assert done.status_code == 200, done.text
    [job] = list(server.state.jobs._jobs.values())
    assert job.done
    return job.id


@pytest.mark.parametrize("last", ["500", "99999999999999999999999", "²", "-1", "x"])
def test_events_of_a_finished_job_with_last_event_id_end(live, last):
    """`Last-Event-ID: 500` past a finished job's last event used to ping for ever; `²` was a 500."""
    job = finished_job(live)
    started, kinds = time.monotonic(), []
    url = f"{live.url}/api/jobs/{job}/events"
    headers = {"last-event-id": last.encode("latin-1")}  # as a client sends "²": one byte, b2
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            kinds.append(line)
            assert time.monotonic() - started < 8, "the stream did not end"
    assert ": ping" not in kinds
    events = [kind for kind, _ in sse_events(iter(kinds))]
    assert events == [] or events[-1] == "done"


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/api/generate", {"idea": 5}, "idea: Input should be a valid string"),
        ("/api/generate", {"idea": ["a", "cat"]}, "idea: Input should be a valid string"),
        ("/api/generate", {"idea": IDEA, "noise": 0.5, "noise_steps": 0}, "noise_steps"),
        ("/api/generate", {"idea": IDEA, "guidance": 1e308}, "guidance"),
        ("/api/sessions", {"name": "s", "idea": 5}, "idea: Input should be a valid string"),
        ("/api/tokens", {"idea": 5}, "idea: Input should be a valid string"),
    ],
    ids=["idea-5", "idea-a-list", "noise-steps-0", "guidance-1e308", "session-idea-5",
         "tokens-idea-5"],
)  # fmt: skip
def test_a_bad_json_value_is_a_422_that_names_it(client, path, body, problem):
    done = client.post(path, json=body)
    assert done.status_code == 422, done.text
    assert problem in done.json()["error"]["message"]


def test_ruts_of_a_20000x20000_png_bomb_is_a_422(client):
    files = [("files", (f"{i}.png", png_bytes((20000, 20000)), "image/png")) for i in range(2)]
    done = client.post("/api/ruts", files=files)
    assert done.status_code == 422 and "too large" in done.json()["error"]["message"], done.text


def test_ruts_of_pngs_with_an_empty_itxt_zit_chunk_judges_them(client):
    empty = png_bytes(chunk=(b"iTXt", b"zit\0"))
    files = [("files", (f"{i}.png", empty, "image/png")) for i in range(2)]
    done = client.post("/api/ruts", files=files)
    assert done.status_code == 200, done.text
    assert done.json()["count"] == 2


def test_ruts_of_a_ztxt_chunk_inflating_to_100_mb_is_a_422(client):
    bomb = png_bytes(chunk=(b"zTXt", b"zit\0\0" + zlib.compress(bytes(100 << 20))), before=b"IDAT")
    files = [("files", (f"{i}.png", bomb, "image/png")) for i in range(2)]
    done = client.post("/api/ruts", files=files)
    assert done.status_code == 422 and "not a readable image" in done.text, done.text


OUTSIDE = ["/etc/passwd", "/no/such/file.safetensors", "../../etc/passwd", "~root/.bashrc"]


@pytest.mark.parametrize("path", OUTSIDE)
@pytest.mark.parametrize("command", ["/lora {}:1", "/control {}"])
def test_chat_commands_over_http_never_reach_a_file_outside_zit_home(client, command, path):
    """`/control PATH` rendered with any image the server could read; `/lora /etc/passwd:1`
    answered differently for files that exist: now one answer for every path outside."""
    start = client.post("/api/sessions", json={"name": "probe", "idea": IDEA, **SMALL})
    assert start.status_code == 201, start.text
    done = client.post("/api/sessions/probe/messages", json={"text": command.format(path)})
    assert done.status_code == 422, done.text
    message = done.json()["error"]["message"]
    assert (
        message.startswith("a request's /")
        and "must name a file under the server's ZIT_HOME" in message
    )
    assert client.get("/api/sessions/probe").json()["turns"] == 1  # nothing rendered


@pytest.mark.parametrize("path", OUTSIDE)
@pytest.mark.parametrize("field", ["lora", "control"])
def test_request_options_never_name_a_file_outside_zit_home(client, field, path):
    value = [f"{path}:1"] if field == "lora" else path
    done = client.post("/api/generate", json={"idea": IDEA, **SMALL, field: value})
    assert done.status_code == 422, done.text
    assert f"a request's {field} must name a file under the server's ZIT_HOME" in done.text


def test_a_lora_under_zit_home_gets_the_usual_checks(client, zit_home):
    done = client.post(
        "/api/generate", json={"idea": IDEA, **SMALL, "lora": [f"{zit_home}/x.safetensors:1"]}
    )
    assert done.status_code == 422 and "does not exist" in done.text, done.text


def test_chat_layer_99999_is_refused_by_the_options_bounds(client):
    client.post("/api/sessions", json={"name": "deep", "idea": IDEA, **SMALL})
    done = client.post("/api/sessions/deep/messages", json={"text": "/layer 99999"})
    assert done.status_code == 422 and "layer" in done.json()["error"]["message"], done.text


def test_a_json_client_that_gives_up_on_a_running_64_image_job_cancels_it(qwen_tokenizer, zit_home):
    """Its job streamed step events faster than the idle check, so the disconnect went unseen
    and the job ran to the end."""
    from tests.serve.conftest import gated_live
    from tests.serve.test_jobs import wait_for

    with gated_live(qwen_tokenizer) as (server, backend):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{server.url}/api/generate",
                json={"idea": IDEA, "ruts": False, "size": "64x64", "count": 64}, timeout=1.0,
            )  # fmt: skip
        [job] = list(server.state.jobs._jobs.values())
        wait_for(lambda: job.done)
        assert job.status == "cancelled"
        assert backend.stopped_at is not None and backend.stopped_at < backend.steps


def test_ruts_of_pngs_whose_record_is_json_100k_deep_judges_them(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    data = png_bytes(chunk=(b"iTXt", b"zit\0\0\0\0\0" + deep))
    files = [("files", (f"{i}.png", data, "image/png")) for i in range(2)]
    done = client.post("/api/ruts", files=files)
    assert done.status_code == 200, done.text
