"""`zit rerender IMAGE.png`: the exact token sequence of an image rendered again from its PNG alone."""

from __future__ import annotations

import base64
import json
import shutil
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import encode_ids, read_record, save_rendered
from zit_agent.sequence import ChatSequence, Segment, assemble

# Byte-level tokens that are not valid UTF-8 alone: their decoded text re-tokenizes to other ids.
SPLIT_CHARACTER_IDS = [145, 254, 109, 120, 3391]


@pytest.fixture(scope="module")
def model_dir(tiny_zimage_dir):
    return tiny_zimage_dir


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def alone(png, folder):
    """The PNG copied into a folder of its own, without the JSON beside it."""
    folder.mkdir()
    return shutil.copy(png, folder / "image.png")


def rerender(capsys, *args):
    code, out, err = zit(capsys, "rerender", *map(str, args), "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_writer_sequence_is_rendered_again_pixel_for_pixel(
    capsys, model_dir, qwen_tokenizer, tmp_path
):
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.zimage import ZImageBackend

    seq = ChatSequence.think(
        "a cat", Segment(text="?", ids=SPLIT_CHARACTER_IDS), "A tabby cat on a windowsill."
    )
    ids = assemble(seq, qwen_tokenizer).ids
    backend = ZImageBackend.from_pretrained(model_dir)
    options = RenderOptions(width=64, height=48, steps=2, sampler="euler_a", layer=-3)
    first = save_rendered(backend.render(ids, [21], options), tmp_path / "a", idea="a cat")[0]
    record = read_record(first)
    assert qwen_tokenizer.encode_text(record["text"]) != ids  # the text alone cannot reproduce it

    result = rerender(capsys, alone(first, tmp_path / "only"), "--out", tmp_path / "again")
    assert np.array_equal(pixels(result["images"][0]), pixels(first))
    again = read_record(result["images"][0])
    assert (
        again["token_sha256"] == record["token_sha256"]
        and again["token_ids"] == record["token_ids"]
    )
    assert (again["idea"], again["seed"], again["sampler"], again["layer"]) == (
        "a cat",
        21,
        "euler_ancestral",  # euler_a is its old name
        -3,
    )


def test_generate_then_rerender_with_cfg_and_a_negative(capsys, model_dir, tmp_path):
    args = ["generate", "a lighthouse at night\n", "--writer", "none", "--no-ruts"]
    args += ["--image-model", str(model_dir), "--size", "64x48", "--steps", "2"]
    args += ["--guidance", "2.5", "--negative", "blurry, dark", "--out", str(tmp_path / "gen")]
    code, out, err = zit(capsys, *args, "--seed", "5")
    assert code == 0, err
    first = out.strip()
    assert read_record(first)["negative_token_ids"] is not None

    result = rerender(capsys, alone(first, tmp_path / "only"), "--out", tmp_path / "again")
    assert np.array_equal(pixels(result["images"][0]), pixels(first))
    assert read_record(result["images"][0])["rerendered_from"].endswith("image.png")

    # Another seed and size: what generate gives for them.
    code, out, _ = zit(capsys, *args, "--seed", "6", "--size", "48x64")
    assert code == 0
    changed = rerender(capsys, first, "--seed", 6, "--size", "48x64", "--out", tmp_path / "other")
    assert np.array_equal(pixels(changed["images"][0]), pixels(out.strip()))
    assert changed["seeds"] == [6]


def damaged(tmp_path, record: dict | str | None):
    """A PNG whose zit record is `record` (a dict as JSON, a string as it is)."""
    path = tmp_path / "damaged.png"
    info = PngImagePlugin.PngInfo()
    if record is not None:
        info.add_itxt("zit", record if isinstance(record, str) else json.dumps(record))
    Image.new("RGB", (16, 16)).save(path, pnginfo=info)
    return path


ONE_ID = encode_ids([1])
BOMB = {
    "encoding": ONE_ID["encoding"],
    "data": base64.b64encode(zlib.compress(bytes(10**7))).decode(),
}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "has no zit record"),
        ("{not json", "has no zit record"),
        ({"seed": 1, "width": 64}, "has no token ids"),
        ({"seed": 1, "token_ids": {**ONE_ID, "data": "AAA="}}, "damaged"),
        ({"seed": 1, "token_ids": BOMB}, "hold over 1504 ids"),
        ({"seed": 1, "token_ids": [1, 2, 3]}, "are not zlib-uint32le-base64 data"),
        ({"seed": 1, "token_count": 9, "token_ids": ONE_ID}, "do not match"),
        ({"seed": 1, "steps": "many", "token_ids": ONE_ID}, "steps is invalid"),
        ({"seed": 1, "width": 70, "token_ids": ONE_ID}, "not a multiple of 16"),
        ({"token_ids": ONE_ID}, "no integer seed"),
    ],
)
def test_a_png_that_cannot_be_rerendered_is_one_line_and_exit_2(capsys, tmp_path, record, message):
    code, out, err = zit(capsys, "rerender", str(damaged(tmp_path, record)))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("zit: error:") and message in err


def test_missing_file_and_unknown_model_are_one_line(capsys, tmp_path):
    code, _, err = zit(capsys, "rerender", str(tmp_path / "nope.png"))
    assert code == 2 and "no image file" in err and err.count("\n") == 1
    path = damaged(tmp_path, {"seed": 1, "model": "<memory>", "token_ids": ONE_ID})
    code, _, err = zit(capsys, "rerender", str(path))
    assert code == 2 and "does not name the image model" in err


def test_zit_home_that_is_a_file_is_one_line_before_the_model_loads(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("ZIT_HOME", str(home))
    path = damaged(tmp_path, {"seed": 1, "model": "no/such-model", "token_ids": ONE_ID})
    code, _, err = zit(capsys, "rerender", str(path))
    assert code == 2 and err.count("\n") == 1
    assert f"ZIT_HOME {home} is a file, not a folder" in err


def test_a_bad_size_is_refused_before_the_model_loads(capsys, tmp_path):
    path = damaged(tmp_path, {"seed": 1, "model": "no/such-model", "token_ids": ONE_ID})
    code, _, err = zit(capsys, "rerender", str(path), "--size", "70x64")
    assert code == 2 and err == "zit: error: width 70 is not a multiple of 16 (use 64 or 80)\n"


def generate_batch(capsys, model_dir, out, *args):
    base = ["generate", "a lighthouse at night", "--writer", "none", "--no-ruts"]
    base += ["--image-model", str(model_dir), "--size", "64x48", "--steps", "2", "--json"]
    code, printed, err = zit(capsys, *base, "--out", str(out), *args)
    assert code == 0, err
    return json.loads(printed)["images"]


def test_each_image_of_a_batch_of_two_is_rendered_again_pixel_for_pixel(
    capsys, model_dir, tmp_path
):
    images = generate_batch(capsys, model_dir, tmp_path / "gen", "-n", "2", "--batch", "2",
                            "--seed", "11")  # fmt: skip
    for index, first in enumerate(images):
        assert read_record(first)["batch"] == {"seeds": [11, 12], "index": index}
        result = rerender(capsys, alone(first, tmp_path / f"only{index}"), "--out",
                          tmp_path / f"again{index}")  # fmt: skip
        assert result["batch"] == {"seeds": [11, 12], "index": index} and result["note"] is None
        assert np.array_equal(pixels(result["images"][0]), pixels(first))
        again = read_record(result["images"][0])
        assert again["seed"] == 11 + index and again["batch"] == read_record(first)["batch"]


def test_a_batch_is_rendered_again_with_the_torch_threads_it_was_made_with(
    capsys, model_dir, tmp_path
):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(4)  # a batch's pixels can move by a level with another thread count
    try:
        images = generate_batch(capsys, model_dir, tmp_path / "gen", "-n", "2", "--seed", "7")
    finally:
        torch.set_num_threads(before)
    torch.set_num_threads(1)
    try:
        for index, first in enumerate(images):
            assert read_record(first)["torch_threads"] == 4
            result = rerender(capsys, first, "--out", tmp_path / f"again{index}")
            assert np.array_equal(pixels(result["images"][0]), pixels(first))
            assert read_record(result["images"][0])["torch_threads"] == 4
        assert torch.get_num_threads() == 1  # put back after the render
    finally:
        torch.set_num_threads(before)


def test_a_record_without_its_batch_renders_alone_and_says_so(capsys, model_dir, tmp_path):
    from zit_agent.backends.provenance import UNRECORDED_BATCH, ImageRecord, save_image

    [first, _] = generate_batch(capsys, model_dir, tmp_path / "gen", "-n", "2", "--seed", "11")
    old = {k: v for k, v in read_record(first).items() if k != "batch"}  # as an older zit wrote
    with Image.open(first) as image:
        older = save_image(image.copy(), ImageRecord.model_validate(old), tmp_path / "old", "older")
    code, out, err = zit(capsys, "rerender", str(older), "--out", str(tmp_path / "again"))
    assert code == 0, err
    assert err.strip() == f"zit: note: {UNRECORDED_BATCH}"
    alone_again = pixels(out.strip())
    assert read_record(out.strip())["batch"] == {"seeds": [11], "index": 0}
    # Alone, seed 11 may differ from seed 11 inside a batch of two by one 8-bit level (FACTS.md
    # section 10: other kernels for another batch shape); a wrong seed or setting changes far more.
    assert np.abs(alone_again.astype(int) - pixels(first).astype(int)).max() <= 1

    # Another seed is a new image: rendered alone, recorded as such, no note.
    result = rerender(capsys, first, "--seed", 12, "--out", tmp_path / "other")
    assert result["batch"] == {"seeds": [12], "index": 0} and result["note"] is None


def test_a_controlled_image_is_rendered_again_with_its_map_and_controlnet(
    capsys, model_dir, tmp_path
):
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet

    controlnet = build_tiny_controlnet(tmp_path / "cn")
    control = tmp_path / "map.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(control)
    args = ["--controlnet", str(controlnet), "--control", str(control), "--seed", "4"]
    [first] = generate_batch(capsys, model_dir, tmp_path / "gen", *args)
    [plain] = generate_batch(capsys, model_dir, tmp_path / "plain", "--seed", "4")
    assert not np.array_equal(pixels(first), pixels(plain))  # the map changed the image

    result = rerender(capsys, alone(first, tmp_path / "only"), "--out", tmp_path / "again")
    assert np.array_equal(pixels(result["images"][0]), pixels(first))
    assert read_record(result["images"][0])["control"] == read_record(first)["control"]

    Image.new("RGB", (64, 48)).save(control)  # the map is not the one the record names
    code, out, err = zit(capsys, "rerender", first)
    assert code == 2 and out == "" and "its sha256 differs" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "batch",
    [
        [1, 2],
        {"seeds": [2, 3], "index": 0},
        {"seeds": [1, 2], "index": 5},
        {"seeds": [1, True], "index": 0},
        {"seeds": list(range(1, 100)), "index": 0},
        {"seeds": [1], "index": "0"},
    ],
)
def test_a_damaged_batch_field_is_one_line_and_exit_2(capsys, tmp_path, batch):
    path = damaged(tmp_path, {"seed": 1, "model": "m", "batch": batch, "token_ids": ONE_ID})
    code, out, err = zit(capsys, "rerender", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "the record's batch is invalid" in err


@pytest.mark.parametrize("threads", [0, 1024, "4", 2.5])
def test_damaged_torch_threads_are_one_line_and_exit_2(capsys, tmp_path, threads):
    record = {"seed": 1, "model": "m", "torch_threads": threads, "token_ids": ONE_ID}
    code, out, err = zit(capsys, "rerender", str(damaged(tmp_path, record)))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "the record's torch_threads is not 1..256" in err
