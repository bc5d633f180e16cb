"""`zit generate --early-prompt/--early-steps` and `--lora PATH:S@A-B` end to end, and `zit rerender`
of what they made."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

IDEA = "a lighthouse at night"


def generate(capsys, model_dir, *args):
    base = ["generate", IDEA, "--writer", "none", "--no-ruts", "--image-model", str(model_dir)]
    return zit(capsys, *base, "--size", "64x48", "--steps", "3", "--seed", "4", *args)


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def rerendered(capsys, png, out):
    code, text, err = zit(capsys, "rerender", str(png), "--json", "--out", str(out))
    assert code == 0, err
    return json.loads(text)["images"][0]


def test_early_prompt_is_recorded_and_rerendered(capsys, tiny_zimage_dir, tmp_path):
    code, plain, _ = generate(capsys, tiny_zimage_dir, "--out", str(tmp_path / "p"))
    assert code == 0
    code, zero, _ = generate(
        capsys, tiny_zimage_dir, "--early-prompt", "", "--early-steps", "0", "--out",
        str(tmp_path / "z"),
    )  # fmt: skip
    assert code == 0 and np.array_equal(pixels(zero.strip()), pixels(plain.strip()))
    code, out, err = generate(
        capsys, tiny_zimage_dir, "--early-prompt", "a crowded market", "--early-steps", "1",
        "--out", str(tmp_path / "e"),
    )  # fmt: skip
    assert code == 0, err
    early = out.strip()
    record = read_record(early)
    assert record["early_steps"] == 1 and "a crowded market" in record["early_prompt"]
    assert not np.array_equal(pixels(early), pixels(plain.strip()))
    again = rerendered(capsys, early, tmp_path / "again")
    assert np.array_equal(pixels(again), pixels(early))


def test_gated_lora_is_recorded_and_rerendered(capsys, tiny_zimage_dir, lora_file, tmp_path):
    code, out, err = generate(
        capsys, tiny_zimage_dir, "--lora", f"{lora_file}:0.8@0-1", "--out", str(tmp_path / "g")
    )
    assert code == 0, err
    png = out.strip()
    record = read_record(png)
    assert record["lora_strength"] == 0.8
    assert record["lora_gates"] == [{"start": 0.0, "end": 1.0, "fraction": False}]
    again = rerendered(capsys, png, tmp_path / "again")
    assert np.array_equal(pixels(again), pixels(png))
    code, full, _ = generate(capsys, tiny_zimage_dir, "--lora", f"{lora_file}:0.8")
    code, gated_all, _ = generate(capsys, tiny_zimage_dir, "--lora", f"{lora_file}:0.8@0-3")
    assert np.array_equal(pixels(full.strip()), pixels(gated_all.strip()))
    assert not np.array_equal(pixels(full.strip()), pixels(png))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--early-prompt", "", "--early-steps", "3"], "leave no step of 3"),
        (["--early-steps", "1"], "early steps need an early prompt"),
        (["--lora", "{lora}@0-4"], "outside the schedule of 3 steps"),
        (["--lora", "{lora}:0.5@0-1.5"], "outside the schedule"),
        (["--lora", "{lora}@2-"], "bad LoRA step gate"),
    ],
)
def test_bad_step_levers_are_one_line_exit_2(capsys, tiny_zimage_dir, lora_file, args, message):
    args = [a.replace("{lora}", str(lora_file)) for a in args]
    code, out, err = generate(capsys, tiny_zimage_dir, *args)
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith("zit: error:") and message in last and "Traceback" not in err


def test_lora_spec_parsing(lora_file):
    from zit_agent.agent.run import parse_lora, parse_lora_spec

    path = str(lora_file)
    assert parse_lora_spec(path) == (path, 1.0, None)
    _, strength, gate = parse_lora_spec(f"{path}:-0.5@0-2")
    assert strength == -0.5 and (gate.start, gate.end, gate.fraction) == (0, 2, False)
    _, strength, gate = parse_lora_spec(f"{path}@0-0.25")
    assert strength == 1.0 and gate.fraction and gate.end == 0.25
    assert parse_lora(f"{path}:0.5@1-2") == (path, 0.5)  # the plain parse leaves the gate out
