"""`zit generate --init`, `zit vary`, `zit inpaint` on the tiny Z-Image, and `zit rerender` of a
refined image: records, reproduction, and bad input as one line with exit code 2."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

TINY = ["--steps", "2"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def ok(capsys, *args) -> dict:
    code, out, err = zit(capsys, *map(str, args), "--json")
    assert code == 0, err
    return json.loads(out)


def refused(capsys, *args) -> str:
    code, out, err = zit(capsys, *map(str, args))
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zit: error:"), err
    return lines[0]


@pytest.fixture
def files(tmp_path):
    y, x = np.mgrid[0:48, 0:64]
    picture = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "photo.png")
    Image.fromarray(picture).resize((80, 60)).save(tmp_path / "big.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[8:40, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(mask[:32]).save(tmp_path / "small-mask.png")
    (tmp_path / "notes.txt").write_text("no picture here")
    return tmp_path


@pytest.fixture
def made(capsys, tiny_zimage_dir, tmp_path):
    """An image `zit generate` made (the plain path)."""
    result = ok(
        capsys, "generate", "a lighthouse at night", "--writer", "none", "--no-ruts",
        "--image-model", tiny_zimage_dir, "--size", "64x48", *TINY, "--seed", "3",
        "--out", tmp_path / "made",
    )  # fmt: skip
    return Path(result["images"][0])


def test_generate_from_an_init_image(capsys, tiny_zimage_dir, files, tmp_path):
    result = ok(
        capsys, "generate", "a red barn", "--writer", "none", "--no-ruts", "--image-model",
        tiny_zimage_dir, *TINY, "--init", files / "photo.png", "--strength", "0.5",
        "--seed", "1", "--out", tmp_path / "out",
    )  # fmt: skip
    [image] = result["images"]
    record = read_record(image)
    assert Image.open(image).size == (64, 48)  # the init image's size when --size is not given
    assert record["init"]["sha256"] == sha(files / "photo.png")
    assert record["init"]["zit_record"] is None  # not a zit image
    assert record["strength"] == 0.5 and record["init"]["mask"] is None


def test_vary_uses_the_images_token_ids_and_writes_n_images(capsys, made, tmp_path):
    source = read_record(made)
    result = ok(capsys, "vary", made, "--subtle", "-n", "2", "--out", tmp_path / "v")
    assert len(result["images"]) == 2 and result["strength"] == 0.3
    assert result["ruts"]["count"] == 3  # the init image and the two variations are judged
    assert result["ruts"]["verdict"] in ("ok", "warn", "rut")
    for path in result["images"]:
        record = read_record(path)
        assert record["token_sha256"] == source["token_sha256"]
        assert record["init"]["sha256"] == sha(made)
        assert record["init"]["zit_record"] == str(made.with_suffix(".json").resolve())
        assert record["init"]["source_seed"] == 3 and record["seed"] in result["seeds"]
        assert (record["width"], record["height"], record["steps"]) == (64, 48, 2)
    strong = ok(
        capsys, "vary", made, "--strong", "-n", "1", "--seed", "9", "--no-ruts", "--out", tmp_path
    )  # fmt: skip
    assert strong["strength"] == 0.7 and strong["seeds"] == [9] and strong["ruts"] is None


def test_rerender_reproduces_a_variation_and_says_when_the_init_is_gone(capsys, made, tmp_path):
    [varied] = ok(capsys, "vary", made, "-n", "1", "--seed", "4", "--out", tmp_path / "v")["images"]
    again = ok(capsys, "rerender", varied, "--out", tmp_path / "again")
    assert np.array_equal(pixels(again["images"][0]), pixels(varied))

    made.rename(made.with_name("moved.png"))
    line = refused(capsys, "rerender", varied)
    assert f"refined from the init image {made.resolve()}, which is not there" in line


def test_inpaint_repaints_inside_the_mask(capsys, made, files, tmp_path):
    result = ok(
        capsys, "inpaint", made, "a full moon", "--mask", files / "mask.png", "--seed", "2",
        "--out", tmp_path / "in",
    )  # fmt: skip
    [image] = result["images"]
    record = read_record(image)
    assert record["model"] == read_record(made)["model"]  # the image's own model
    assert record["init"]["mask_sha256"] == sha(files / "mask.png")
    assert record["strength"] == 1.0 and record["init"]["mask_share"] == 0.3333
    assert record["prompt"] == "a full moon"
    assert Image.open(image).size == (64, 48)


def test_an_init_of_another_size_is_resized_and_said(capsys, tiny_zimage_dir, files, tmp_path):
    code, out, err = zit(
        capsys, "generate", "a red barn", "--writer", "none", "--no-ruts", "--image-model",
        str(tiny_zimage_dir), *TINY, "--init", str(files / "big.png"), "--size", "64x48",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    assert "the init image is 80x60: resized to the render size 64x48" in err
    assert Image.open(out.strip()).size == (64, 48)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--init", "photo.png", "--strength", "1.5"], "strength"),
        (["--init", "photo.png", "--strength", "0"], "0 would return the init image unchanged"),
        (["--init", "notes.txt"], "is not a readable image"),
        (["--init", "nowhere.png"], "does not exist"),
        (["--init", "photo.png", "--mask", "small-mask.png"], "the mask is 64x32, the init"),
        (["--init", "photo.png", "--mask", "empty.png"], "is empty: nothing to redraw"),
        (["--mask", "mask.png"], "a mask needs an init image"),
        (["--strength", "0.5"], "a strength needs an init image"),
    ],
)
def test_bad_refine_input_is_one_line_exit_2(capsys, files, args, message):
    args = [str(files / a) if a.endswith((".png", ".txt")) else a for a in args]
    line = refused(capsys, "generate", "a barn", "--writer", "none", "--no-ruts", *args)
    assert message in line


def test_vary_refuses_bad_input(capsys, made, files):
    assert "give one of --subtle, --strong" in refused(capsys, "vary", made, "--subtle", "--strong")
    assert "has no zit record" in refused(capsys, "vary", files / "photo.png")
    assert "out of range" in refused(capsys, "vary", made, "--strength", "0")
    copy = shutil.copy(files / "notes.txt", files / "fake.png")
    assert "has no zit record" in refused(capsys, "vary", copy)


def test_the_sketch_stand_in_blends_the_init_image(capsys, files, tmp_path):
    result = ok(
        capsys, "generate", "a barn", "--writer", "none", "--no-ruts", "--backend", "sketch",
        "--init", files / "photo.png", "--strength", "0.5", "--seed", "1", "--count", "1",
        "--out", tmp_path,
    )  # fmt: skip
    [image] = result["images"]
    record = read_record(image)
    assert record["init"]["sha256"] == sha(files / "photo.png")
    assert Image.open(image).size == (64, 48)
    assert "drawn by the sketch stand-in" in refused(capsys, "vary", image)


def test_the_rut_judge_counts_the_init_image(capsys, files, tmp_path):
    """One image alone is never a rut; with its init image in the window, a copy of the init is."""

    def verdict(strength: str) -> str:
        result = ok(
            capsys, "generate", "a barn", "--writer", "none", "--backend", "sketch", "--ruts",
            "--init", files / "photo.png", "--strength", strength, "-n", "1", "--seed", "1",
            "--max-attempts", "1", "--out", tmp_path / strength,
        )  # fmt: skip
        return result["final_verdict"]

    assert verdict("0.01") == "rut"  # the image is (nearly) the init
    assert verdict("1.0") == "ok"  # the drawing alone: nothing like the init


def test_variations_that_copy_the_init_image_read_as_a_rut(qwen_tokenizer, files, tmp_path):
    from tests.agent.agent_fixtures import sketch_runner

    runner = sketch_runner(qwen_tokenizer)
    init = files / "photo.png"
    copies = [shutil.copy(init, tmp_path / f"copy{i}.png") for i in range(2)]
    noise = np.random.default_rng(1).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    others = [tmp_path / f"other{i}.png" for i in range(2)]
    for array, path in zip(noise, others, strict=True):
        Image.fromarray(array).save(path)
    assert runner.judge_variations(init, [Path(p) for p in copies])["verdict"] == "rut"
    assert runner.judge_variations(init, others)["verdict"] == "ok"
