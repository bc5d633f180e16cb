"""Render-again (`POST /api/images/{id}/render`) on images the real Z-Image backend path made (a tiny
random Z-Image through diffusers): everything the record says is kept, the batch too, so the
pixels are the same; what cannot be kept is named and `exact` is false."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.agent.agent_fixtures import IDEA, tiny_zimage

pytestmark = pytest.mark.slow  # builds a model, loads it in a server


def wait_ready(client, seconds: float = 120) -> None:
    import time

    deadline = time.monotonic() + seconds
    while client.get("/health").json()["status"] == "loading":
        assert time.monotonic() < deadline, "the models did not load"
        time.sleep(0.05)
    assert client.get("/health").json()["status"] == "ready"


@pytest.fixture
def zimage_client(tmp_path_factory, zit_home):
    from fastapi.testclient import TestClient

    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    model = tiny_zimage(tmp_path_factory)
    options = run_options(image_model=str(model), steps=2, size="64x48")
    with TestClient(create_app(load_settings(), options), base_url="http://127.0.0.1") as client:
        wait_ready(client)
        yield client


def pixels(client, ref) -> np.ndarray:
    answer = client.get(ref["url"])
    assert answer.status_code == 200
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))


def provenance(client, ref) -> dict:
    return client.get(f"/api/images/{ref['id']}").json()["provenance"]


def test_render_again_keeps_scheduler_negative_shift_and_batch(zimage_client):
    client = zimage_client
    body = {
        "idea": IDEA, "ruts": False, "count": 2, "seed": 5, "scheduler": "beta",
        "guidance": 1.5, "negative": "blurry, dark", "shift": "2.5",
    }  # fmt: skip
    done = client.post("/api/generate", json=body)
    assert done.status_code == 200, done.text
    images = done.json()["images"]
    first = provenance(client, images[0])
    assert (first["scheduler"], first["shift"], first["guidance"]) == ("beta", 2.5, 1.5)
    assert first["negative_token_ids"] is not None
    assert first["batch"] == {"seeds": [5, 6], "index": 0}

    for index, ref in enumerate(images):
        again = client.post(f"/api/images/{ref['id']}/render", json={})
        assert again.status_code == 200, again.text  # was 422: "bad value for shift"
        answer = again.json()
        assert answer["exact"] and answer["not_kept"] == [] and answer["note"] is None
        [made] = answer["images"]
        assert made["seed"] == 5 + index
        assert np.array_equal(pixels(client, made), pixels(client, ref))  # the same batch
        record, original = provenance(client, made), provenance(client, ref)
        for key in ("scheduler", "sigmas", "shift", "guidance", "negative_token_ids", "batch"):
            assert record[key] == original[key], key
        assert record["token_sha256"] == original["token_sha256"]

    other = client.post(f"/api/images/{images[1]['id']}/render", json={"seed": 9}).json()
    assert other["exact"] and other["images"][0]["seed"] == 9  # a new image, rendered alone
    assert provenance(client, other["images"][0])["batch"] == {"seeds": [9], "index": 0}


def test_render_again_names_what_it_could_not_keep(zimage_client, tmp_path_factory, zit_home):
    folder = zit_home / "loras"  # a request names only files under the server's ZIT_HOME
    folder.mkdir(parents=True, exist_ok=True)
    lora = tiny_lora(tiny_zimage(tmp_path_factory), folder)
    done = client_generate(zimage_client, lora=[f"{lora}:0.8"])
    ref = done["images"][0]
    assert provenance(zimage_client, ref)["lora"] == str(lora.resolve())
    lora.unlink()  # the LoRA file is gone: rendered without it, and said so
    again = zimage_client.post(f"/api/images/{ref['id']}/render", json={})
    assert again.status_code == 200, again.text
    answer = again.json()
    assert not answer["exact"]
    assert answer["not_kept"] == [f"LoRA {lora.resolve()} (the file is gone)"]
    assert provenance(zimage_client, answer["images"][0])["lora"] is None


def client_generate(client, **options) -> dict:
    done = client.post("/api/generate", json={"idea": IDEA, "ruts": False, "seed": 3, **options})
    assert done.status_code == 200, done.text
    return done.json()


def tiny_lora(model, folder):
    """A random LoRA on the tiny transformer's attention (diffusers' safetensors layout)."""
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = ZImageTransformer2DModel.from_pretrained(model / "transformer")
    torch.manual_seed(3)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False
    )
    transformer.add_adapter(config)
    ZImagePipeline.save_lora_weights(
        folder, transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return folder / "pytorch_lora_weights.safetensors"


def test_render_again_keeps_a_control_map_and_names_a_changed_one(
    tmp_path_factory, tmp_path, zit_home
):
    from fastapi.testclient import TestClient

    from zit_agent.agent.serve import create_app
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    controlnet = build_tiny_controlnet(tmp_path / "cn")
    control = zit_home / "maps" / "map.png"  # a request names only files under ZIT_HOME
    control.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(control)
    options = run_options(
        image_model=str(tiny_zimage(tmp_path_factory)), controlnet=str(controlnet), steps=2,
        size="64x48",
    )  # fmt: skip
    with TestClient(create_app(load_settings(), options), base_url="http://127.0.0.1") as client:
        wait_ready(client)
        ref = client_generate(client, control=str(control))["images"][0]
        assert provenance(client, ref)["control"]["image"] == str(control.resolve())
        again = client.post(f"/api/images/{ref['id']}/render", json={}).json()
        assert again["exact"] and again["not_kept"] == []
        assert np.array_equal(pixels(client, again["images"][0]), pixels(client, ref))

        Image.new("RGB", (64, 48)).save(control)  # not the map the record names any more
        changed = client.post(f"/api/images/{ref['id']}/render", json={}).json()
        assert not changed["exact"]
        assert changed["not_kept"] == [
            f"control map {control.resolve()} (the file changed since the image was made: its "
            "sha256 differs)"
        ]
        assert provenance(client, changed["images"][0])["control"] is None
