"""`zit generate IDEA --writer none --no-ruts`: the plain path, end to end on a tiny Z-Image."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageChops

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

IDEA = "a lighthouse at night"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir)


def one_error_line(err: str) -> bool:
    """The error is one line, the last on stderr (loading progress bars may come before it)."""
    return err.splitlines()[-1].startswith("zit: error:") and "Traceback" not in err


def generate(capsys, model_dir, *args):
    base = ["generate", IDEA, "--writer", "none", "--no-ruts", "--image-model", str(model_dir)]
    return zit(capsys, *base, "--size", "64x48", "--steps", "2", *args)


def test_renders_n_images_with_provenance_and_prints_json(capsys, model_dir, zit_home):
    code, out, _ = generate(capsys, model_dir, "-n", "2", "--seed", "11", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["seeds"] == [11, 12]
    assert result["options"]["width"] == 64 and result["options"]["height"] == 48
    assert all(p.startswith(str(zit_home / "outputs")) for p in result["images"])
    records = [read_record(p) for p in result["images"]]
    assert [r["seed"] for r in records] == [11, 12]
    assert all(r["idea"] == IDEA and r["writer"] is None for r in records)
    assert records[0]["token_count"] == result["token_count"]
    assert [r["batch"] for r in records] == [{"seeds": [11, 12], "index": i} for i in (0, 1)]

    # Same seeds in the same batch: same pixels. (A seed alone may differ from that seed inside a
    # batch of two by one 8-bit level: FACTS.md section 10; the record says the batch.)
    code, out, _ = generate(capsys, model_dir, "-n", "2", "--seed", "11", "--json")
    assert code == 0
    for path, again_path in zip(result["images"], json.loads(out)["images"], strict=True):
        with Image.open(path) as first, Image.open(again_path) as again:
            assert ImageChops.difference(first, again).getbbox() is None


def test_batches_of_one_give_each_seed_its_own_pixels(capsys, model_dir, zit_home):
    code, out, _ = generate(capsys, model_dir, "-n", "2", "--batch", "1", "--seed", "11", "--json")
    assert code == 0
    images = json.loads(out)["images"]
    assert read_record(images[1])["batch"] == {"seeds": [12], "index": 0}
    code, out, _ = generate(capsys, model_dir, "--seed", "12")  # rendered alone too
    assert code == 0
    with Image.open(images[1]) as first, Image.open(out.strip()) as again:
        assert ImageChops.difference(first, again).getbbox() is None


def test_render_flags_reach_the_record(capsys, model_dir, tmp_path):
    code, out, _ = generate(
        capsys, model_dir, "--seed", "1", "--layer", "-3", "--sampler", "euler_a",
        "--shift", "2.5", "--noise", "0.5", "--noise-seed", "9", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    record = read_record(out.strip())
    # euler_a is the old name of ComfyUI's euler_ancestral: recorded by its ComfyUI name.
    assert (record["layer"], record["sampler"], record["shift"]) == (-3, "euler_ancestral", 2.5)
    assert record["scheduler"] == "simple" and len(record["sigmas"]) == 3  # 2 steps, then 0
    assert record["noise"]["strength"] == 0.5 and record["noise"]["seed"] == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "70x64"], "not a multiple of 16"),
        (["--size", "big"], "bad size"),
        (["--layer", "7"], "layer 7 is out of range"),
        (["--lora", "missing.safetensors"], "does not exist"),
        (["--lora", "x.safetensors:5"], "strength 5.0 is out of range"),
        (["--lora", "style.ckpt"], "pickle"),
        (["--sampler", "ddim"], "unknown sampler"),
        (["--noise-seed", "3"], "need a noise strength (set --noise)"),
        (["--guidance", "inf"], "bad value for --guidance: Input should be a finite number"),
        (["--steps", "-1"], "bad value for --steps"),
        (["--seed", "99999999999999999999999"], "bad value for --seed"),
        (
            ["--max-tokens", "4096"],
            "past the ceiling of 1504 tokens",
        ),
        (["--count", "0"], "bad value for --count"),
        (["--noise", "0.3", "--noise-fraction", "1.5"], "fraction"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, model_dir, args, message):
    code, out, err = generate(capsys, model_dir, *args)
    assert code == 2
    assert message in err
    assert one_error_line(err)


def test_unreadable_lora_is_one_line_and_exit_2(capsys, model_dir, tmp_path):
    junk = tmp_path / "style.safetensors"
    junk.write_bytes(b"\x00" * 16)
    code, _, err = generate(capsys, model_dir, "--lora", str(junk))
    assert code == 2 and "not a readable safetensors" in err and one_error_line(err)


def test_missing_model_directory_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = zit(
        capsys, "generate", IDEA, "--writer", "none", "--no-ruts",
        "--image-model", str(tmp_path / "no-model"),
    )  # fmt: skip
    assert code == 2 and "image model: no directory" in err and one_error_line(err)


def test_render_options_use_settings_defaults_and_a_configured_shift(monkeypatch):
    from zit_agent.agent.run import render_options, seeds_of
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    request = run_options(count=3, seed=40)
    assert seeds_of(request, 3) == [40, 41, 42]
    options = render_options(load_settings(), request)
    assert (options.width, options.height, options.steps, options.guidance) == (1024, 1024, 8, 0.0)
    assert options.shift is None  # the model's own scheduler config decides
    monkeypatch.setenv("ZIT_RENDER__SHIFT", "2.0")
    assert render_options(load_settings(), request).shift == 2.0
    base = render_options(load_settings(), run_options(), variant="base")
    assert (base.steps, base.guidance) == (28, 4.0)  # never Turbo's on the base model


def test_lora_flag_parsing(tmp_path):
    import torch
    from safetensors.torch import save_file

    from zit_agent.agent.run import parse_lora

    path = tmp_path / "style:v2.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    assert parse_lora(str(path)) == (str(path), 1.0)
    assert parse_lora(f"{path}:-0.5") == (str(path), -0.5)
