"""The community's models and samplers through `zit generate` (the run API's options), on the tiny
Z-Image: ControlNet, single files, the encoder as writer, base defaults, schedulers, samplers,
long prompts, writer threads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

IDEA = "a lighthouse at night"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir)


def generate(capsys, model_dir, *args, idea=IDEA):
    base = ["generate", idea, "--writer", "none", "--no-ruts", "--image-model", str(model_dir)]
    code, out, err = zit(capsys, *base, "--size", "64x48", "--steps", "2", "--seed", "3",
                         "--json", *args)  # fmt: skip
    return code, (json.loads(out) if code == 0 else None), err


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def one_line(err: str) -> bool:
    return err.strip().splitlines()[-1].startswith("zit: error:") and "Traceback" not in err


def test_controlnet_scale_zero_is_the_plain_render_and_the_map_is_recorded(
    capsys, model_dir, tmp_path
):
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet

    controlnet = build_tiny_controlnet(tmp_path / "cn")
    control = tmp_path / "pose.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(control)
    code, plain, err = generate(capsys, model_dir)
    assert code == 0, err
    args = ["--controlnet", str(controlnet), "--control", str(control)]
    code, off, err = generate(capsys, model_dir, *args, "--control-scale", "0")
    assert code == 0, err
    code, on, err = generate(capsys, model_dir, *args)
    assert code == 0, err
    assert np.array_equal(pixels(off["images"][0]), pixels(plain["images"][0]))
    assert not np.array_equal(pixels(on["images"][0]), pixels(plain["images"][0]))
    record = read_record(on["images"][0])
    assert record["control"]["fixes_composition"] and record["control"]["scale"] == 0.75


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "missing.png"], "missing.png"),
        (["--controlnet", "/nope/cn"], "/nope/cn"),
        (["--control-scale", "3"], "bad value for --control-scale"),
        (["--preprocess", "sobel"], "sobel"),
        (["--checkpoint", "/nope/aio.safetensors"], "/nope/aio.safetensors"),
        (["--vram", "7.5x"], "7.5x"),
        (["--scheduler", "karras2"], "karras2"),
        (["--shift", "auto:magic"], "unknown shift formula 'magic'"),
        (["--threads", "0"], "bad value for --threads"),
        (["--max-tokens", "4096"], "1504"),
    ],
)
def test_bad_model_and_sampling_options_are_one_line_exit_2(capsys, model_dir, args, message):
    code, _, err = generate(capsys, model_dir, *args)
    assert code == 2 and message in err and one_line(err)


def test_an_all_in_one_checkpoint_gives_the_folders_image(capsys, model_dir, tmp_path):
    from zit_agent.backends.tiny.single_files import write_all_in_one, write_config_folder

    checkpoint = write_all_in_one(model_dir, tmp_path / "aio.safetensors")
    configs = write_config_folder(model_dir, tmp_path / "configs")
    code, folder, err = generate(capsys, model_dir)
    assert code == 0, err
    code, single, err = generate(capsys, configs, "--checkpoint", str(checkpoint))
    assert code == 0, err
    assert np.array_equal(pixels(single["images"][0]), pixels(folder["images"][0]))


def test_each_scheduler_is_recorded_with_its_sigmas(capsys, model_dir):
    from zit_agent.backends.schedules import sigma_schedule

    for name in ("simple", "beta", "bong_tangent"):
        code, out, err = generate(capsys, model_dir, "--scheduler", name, "--steps", "8")
        assert code == 0, err
        record = read_record(out["images"][0])
        assert record["scheduler"] == name
        assert np.allclose(record["sigmas"], sigma_schedule(name, 8, 3.0), atol=1e-6)


def test_er_sde_is_reproducible_and_differs_from_euler(capsys, model_dir):
    runs = [generate(capsys, model_dir, "--sampler", s)[1] for s in ("er_sde", "er_sde", "euler")]
    first, again, euler = (pixels(r["images"][0]) for r in runs)
    assert np.array_equal(first, again) and not np.array_equal(first, euler)
    assert read_record(runs[0]["images"][0])["sampler"] == "er_sde"


def test_a_900_token_sequence_renders_with_a_1504_budget(capsys, model_dir):
    idea = "a lighthouse on a rocky coast, " * 110
    code, out, err = generate(capsys, model_dir, "--max-tokens", "1504", idea=idea)
    assert code == 0, err
    assert 850 < out["token_count"] <= 1504 and out["cut"] is None
    assert "past the 512 tokens" in err  # the warning
    code, out, err = generate(capsys, model_dir, idea=idea)  # the default budget of 512 cuts,
    assert code == 0 and out["token_count"] == 512 and out["cut"]  # and says so


def test_the_encoder_writes_and_one_qwen3_is_loaded(capsys, model_dir):
    code, out, err = zit(
        capsys, "generate", IDEA, "--writer", "encoder", "--image-model", str(model_dir),
        "--no-ruts", "--size", "64x48", "--steps", "2", "--seed", "1", "--max-new-tokens", "8",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    record = read_record(json.loads(out)["images"][0])
    assert record["writer"]["writer"].startswith("encoder")


def test_auto_shift_is_recorded(capsys, model_dir):
    code, out, err = generate(capsys, model_dir, "--shift", "auto")
    assert code == 0, err
    record = read_record(out["images"][0])
    assert record["shift_source"].startswith("auto") and record["shift"] > 0


def test_expand_writes_with_the_encoder_of_the_image_model(capsys, model_dir):
    code, out, err = zit(capsys, "expand", IDEA, "--writer", "encoder", "--image-model",
                         str(model_dir), "--max-new-tokens", "8", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["token_ids"][:3] == [151644, 872, 198] and data["writer"]["new_tokens"] >= 1


def test_a_memory_plan_is_printed_before_the_render(capsys, model_dir):
    code, out, err = generate(capsys, model_dir, "--vram", "8")
    assert code == 0, err
    plan = "\n".join(out["memory_plan"])
    assert "8 GB" in plan and "transformer" in plan and out["images"]
