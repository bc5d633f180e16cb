"""Image edits over HTTP on the real Z-Image path (the tiny random model): the real `openai`
client's `images.edit` against `POST /v1/images/edits`, zit's `POST /api/edits`, and
`POST /api/images/{id}/vary`."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.agent.agent_fixtures import IDEA
from tests.serve.test_openai_client import TOKEN, zimage_server  # noqa: F401 (a fixture)
from zit_agent.backends.provenance import read_record

pytestmark = pytest.mark.slow  # builds a model, starts a server


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def photo(width: int = 80, height: int = 48) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    return png(Image.fromarray(np.stack([x * 3, y * 5, x + y], -1).astype(np.uint8)))


def openai_mask(width: int = 80, height: int = 48, hole: bool = True) -> bytes:
    """OpenAI's kind of mask: opaque everywhere, fully transparent where the image is edited."""
    alpha = np.full((height, width), 255, np.uint8)
    if hole:
        alpha[8:40, 16:64] = 0
    rgba = np.dstack([np.zeros((height, width, 3), np.uint8), alpha])
    return png(Image.fromarray(rgba, "RGBA"))


def decoded(item) -> tuple[Image.Image, dict]:
    data = base64.b64decode(item.b64_json)
    return Image.open(io.BytesIO(data)), read_record(io.BytesIO(data))


def test_the_openai_client_edits_an_image_with_a_mask(zimage_server):  # noqa: F811
    client = openai.OpenAI(base_url=f"{zimage_server.url}/v1", api_key=TOKEN)
    result = client.images.edit(
        image=("photo.png", photo(), "image/png"), mask=("mask.png", openai_mask(), "image/png"),
        prompt=IDEA, n=2, response_format="b64_json", extra_body={"seed": 3},
    )  # fmt: skip
    assert len(result.data) == 2
    for item in result.data:
        image, record = decoded(item)
        assert image.format == "PNG" and image.size == (80, 48)  # the image's, not the server's
        assert record["strength"] == 1.0 and record["init"]["mask_share"] == 0.4
        assert record["seed"] in (3, 4) and item.revised_prompt == IDEA


def test_the_openai_client_edits_a_whole_image_at_another_size(zimage_server):  # noqa: F811
    client = openai.OpenAI(base_url=f"{zimage_server.url}/v1", api_key=TOKEN)
    result = client.images.edit(
        image=("photo.png", photo(), "image/png"), prompt=IDEA, size="64x64",
        extra_body={"strength": 0.5},
    )  # fmt: skip
    image, record = decoded(result.data[0])
    assert image.size == (64, 64)
    assert record["init"]["resized"] is True and record["init"]["mask"] is None
    assert record["strength"] == 0.5


def test_bad_edits_are_422_with_one_line(zimage_server):  # noqa: F811
    client = openai.OpenAI(base_url=f"{zimage_server.url}/v1", api_key=TOKEN)
    with pytest.raises(openai.UnprocessableEntityError, match="not a readable image"):
        client.images.edit(image=("notes.png", b"no picture", "image/png"), prompt=IDEA)
    with pytest.raises(openai.UnprocessableEntityError, match="is empty: nothing to redraw"):
        client.images.edit(
            image=("photo.png", photo(), "image/png"),
            mask=("mask.png", openai_mask(hole=False), "image/png"), prompt=IDEA,
        )  # fmt: skip
    with pytest.raises(openai.UnprocessableEntityError, match="the mask is 80x40"):
        client.images.edit(
            image=("photo.png", photo(), "image/png"),
            mask=("mask.png", openai_mask(80, 40), "image/png"), prompt=IDEA,
        )  # fmt: skip


def test_zits_own_edit_and_vary_routes(zimage_server):  # noqa: F811
    headers = {"authorization": f"Bearer {TOKEN}"}
    answer = httpx.post(
        f"{zimage_server.url}/api/edits", headers=headers, timeout=60,
        data={"idea": IDEA, "count": "1", "seed": "5", "strength": "0.6"},
        files={"image": ("photo.png", photo(), "image/png")},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    [ref] = answer.json()["images"]
    record = httpx.get(f"{zimage_server.url}/api/images/{ref['id']}", headers=headers).json()
    assert record["provenance"]["init"]["strength"] == 0.6

    varied = httpx.post(
        f"{zimage_server.url}/api/images/{ref['id']}/vary", headers=headers, timeout=60,
        json={"level": "strong", "count": 2, "seed": 40},
    )  # fmt: skip
    assert varied.status_code == 200, varied.text
    refs = varied.json()["images"]
    assert [r["seed"] for r in refs] == [40, 41]
    for item in refs:
        shown = httpx.get(f"{zimage_server.url}/api/images/{item['id']}", headers=headers).json()
        provenance = shown["provenance"]
        assert provenance["token_sha256"] == record["provenance"]["token_sha256"]
        assert provenance["strength"] == 0.7
        assert provenance["init"]["source_seed"] == 5
