"""The real `openai` client against a live `zit serve` app on loopback, rendering with the real
Z-Image backend path (a tiny random Z-Image pipeline through diffusers), with a token."""

from __future__ import annotations

import base64
import io
import time

import httpx
import openai
import pytest
from PIL import Image

from tests.agent.agent_fixtures import IDEA, tiny_zimage
from tests.serve.conftest import LiveServer, sse_events

pytestmark = pytest.mark.slow  # builds a model, starts a server
TOKEN = "tiny-secret"


@pytest.fixture
def zimage_server(tmp_path_factory, zit_home):
    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    model = tiny_zimage(tmp_path_factory)
    options = run_options(image_model=str(model), steps=2, size="64x64")
    with LiveServer(create_app(load_settings(), options, token=TOKEN)) as server:
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/health").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert server.state.status == "ready", server.state.load_error
        server.model_name = model.name
        yield server


def test_the_openai_client_generates_pngs_of_the_requested_size(zimage_server):
    client = openai.OpenAI(base_url=f"{zimage_server.url}/v1", api_key=TOKEN)
    [model] = client.models.list().data
    assert model.id == zimage_server.model_name  # the tiny model's folder name, not its path
    result = client.images.generate(
        model=model.id, prompt=IDEA, n=2, size="64x96", response_format="b64_json",
        extra_body={"seed": 7, "ruts": False},
    )  # fmt: skip
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.format == "PNG" and image.size == (64, 96)
        assert item.revised_prompt == IDEA

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{zimage_server.url}/v1", api_key="wrong").models.list()
    with pytest.raises(openai.UnprocessableEntityError, match="multiple of 16"):
        client.images.generate(prompt=IDEA, size="100x100")


def test_each_render_step_of_the_real_backend_is_an_event(zimage_server):
    with httpx.stream(
        "POST", f"{zimage_server.url}/api/generate",
        json={"idea": IDEA, "ruts": False, "count": 1, "seed": 1},
        headers={"accept": "text/event-stream", "authorization": f"Bearer {TOKEN}"}, timeout=60,
    ) as response:  # fmt: skip
        events = list(sse_events(response.iter_lines()))
    steps = [(data["step"], data["steps"]) for kind, data in events if kind == "step"]
    assert steps == [(1, 2), (2, 2)]
    assert events[-1][0] == "done" and len(events[-1][1]["images"]) == 1


def test_the_openai_client_sent_while_the_models_load_gets_its_image(
    tmp_path_factory, zit_home, monkeypatch
):
    """As a client started the moment the port answers: the real load (held until the request
    is queued, so it surely comes during the load) and no client retries to hide a 503."""
    import threading

    from zit_agent.agent.run import Runner
    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    gate, real_load = threading.Event(), Runner.load

    def held_load(*args, **kwargs):
        gate.wait(60)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(Runner, "load", held_load)
    options = run_options(image_model=str(tiny_zimage(tmp_path_factory)), steps=2, size="64x64")
    try:
        with LiveServer(create_app(load_settings(), options, token=TOKEN)) as server:
            assert httpx.get(f"{server.url}/health").json()["status"] == "loading"
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
            result = []
            ask = threading.Thread(target=lambda: result.append(client.images.generate(
                prompt=IDEA, response_format="b64_json", extra_body={"seed": 3, "ruts": False},
            )))  # fmt: skip
            ask.start()
            deadline = time.monotonic() + 30
            while not server.state.jobs._jobs:  # queued while the models load
                assert time.monotonic() < deadline
                time.sleep(0.02)
            gate.set()
            ask.join(120)
            [image] = result[0].data
            assert Image.open(io.BytesIO(base64.b64decode(image.b64_json))).size == (64, 64)
    finally:
        gate.set()
