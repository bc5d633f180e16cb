"""The benchmark runner, the peak-memory probe and the GPU script's CPU mode work (no timings are
checked: machines here are noisy, and performance lives in benchmarks/, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURE_KEYS = {"name", "value", "unit", "baseline", "baseline_name", "target", "met", "spread",
               "extra", "ratio", "paired_ratio"}  # fmt: skip


@pytest.mark.slow
def test_quick_run_writes_a_results_file(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "startup", "token-assembly",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert {"cpu", "cores", "python", "libraries"} <= set(data["machine"])
    assert data["machine"]["libraries"]["torch"]
    assert set(data["results"]) == {"startup", "token-assembly"}
    for figures in data["results"].values():
        assert figures
        for figure in figures:
            assert set(figure) == FIGURE_KEYS
            assert figure["value"] > 0
    startup = data["results"]["startup"][0]
    assert startup["baseline"] > 0 and startup["ratio"] == startup["value"] / startup["baseline"]
    assert not list(tmp_path.glob("*.tmp")), "the results file is written atomically"


def test_a_paired_ratio_is_the_median_of_the_ratios_pair_by_pair():
    from benchmarks.core import Figure, Timing, paired

    slow, fast = Timing.of([2.0, 4.0, 9.0]), Timing.of([1.0, 4.0, 3.0])  # drift between pairs
    ratio = paired(slow, fast)
    assert ratio.median == 2.0 and ratio.samples == [2.0, 1.0, 3.0]
    figure = Figure("x", slow.median, "s", fast.median, paired_ratio=ratio.median)
    assert figure.ratio == 2.0 != figure.value / figure.baseline  # not the ratio of the medians
    with pytest.raises(ValueError, match="same number of runs"):
        paired(slow, Timing.of([1.0]))


def test_an_unknown_benchmark_is_named():
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "no-such-benchmark"])
    assert exit_info.value.code == 2


def test_peak_memory_is_the_commands_own(tmp_path):
    """The probe reports the command's peak, not this (large) test process's size inherited
    through fork, and fails loudly when the command fails."""
    import os

    from benchmarks.bench_memory import measure

    env = dict(os.environ)
    ballast = bytearray(400 * 2**20)  # makes this process large; a fork would inherit its peak
    ballast[:: 2**12] = b"1" * len(ballast[:: 2**12])
    small = measure([sys.executable, "-c", "pass"], env, tmp_path)
    big = measure([sys.executable, "-c", "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
                  env, tmp_path)  # fmt: skip
    assert small.peak_mb < 100
    assert big.peak_mb > small.peak_mb + 250
    with pytest.raises(RuntimeError, match="exited 3"):
        measure([sys.executable, "-c", "import sys; sys.exit(3)"], env, tmp_path)


def test_gpu_standing_uses_the_devices_bf16_peak():
    from benchmarks import gpu, gpu_zimage

    plan = gpu_zimage.make_plan(gpu.parse_args([]))
    cases = {
        "raw-vs-backend": {"raw": {"median_s": 0.9}, "backend": {"median_s": 0.97}},
        "batch:4": {"median_s": 3.2, "per_image_s": 0.8},
    }
    sxm = gpu.standing("NVIDIA H100 80GB HBM3", cases, plan)
    assert sxm["floor_s"] == pytest.approx(4.8e14 / 989e12)
    assert sxm["anchor_s"] == pytest.approx(1.0)  # the same bf16 peak as the H800
    assert sxm["measured"]["backend, batch 4, per image"]["seconds"] == 0.8
    assert sxm["measured"]["backend, batch 1"]["x_floor"] == pytest.approx(0.97 / sxm["floor_s"])
    assert gpu.standing("NVIDIA H100 PCIe", cases, plan)["bf16_peak_flops"] == 756e12
    unknown = gpu.standing("Some GPU", cases, plan)
    assert unknown["floor_s"] is None and unknown["note"]


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path):
    """--dry builds the real configurations on the meta device and runs every case on CPU."""
    from benchmarks import gpu

    out = tmp_path / "gpu.json"
    assert gpu.main(["--dry", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["plan"]["dry"] is True and data["device"]
    cases = data["cases"]
    assert list(cases) == ["real-configs", "writer", "build", "raw-vs-backend",
                           "encode-cold-vs-cached", "batch:2", "attention:_native_math",
                           "lever:candidates", "lever:early", "lever:adapter",
                           "compile"]  # fmt: skip
    assert not [name for name, case in cases.items() if "error" in case or "skipped" in case]
    real = cases["real-configs"]
    assert real["transformer"]["params"] == 6_154_908_736  # Z-Image's 6.15 B DiT
    assert round(real["text_encoder"]["params"] / 1e9, 2) == 4.02  # Qwen3-4B, 36 layers
    assert real["transformer"]["dtype"] == "torch.bfloat16"
    writer = cases["writer"]
    assert writer["raw"]["tokens_per_s"] > 0 and writer["writer"]["tokens_per_s"] > 0
    assert 0 < writer["new_tokens"]["writer"] <= 8
    batch = cases["batch:2"]
    assert batch["per_image_s"] == batch["median_s"] / 2 and batch["vs_baseline"] > 0
    assert cases["compile"]["first_call_s"] > 0
    levers = cases["lever:candidates"]
    assert levers["per_image_s"] == levers["median_s"] / 2 and levers["steps_per_kept"] == 3.0
    assert all(cases[f"lever:{n}"]["vs_baseline"] > 0 for n in ("candidates", "early", "adapter"))
    assert "backend, batch 1" in data["standing"]["measured"]


def test_a_case_that_fails_runs_long_or_finds_no_time_is_recorded_and_the_run_goes_on(tmp_path):
    """Each case is written as soon as it ends; a failure or a timeout is a result."""
    import time

    from benchmarks import gpu

    path = tmp_path / "gpu.json"
    results = gpu.Results(path, {"device": "test"})
    run = gpu.CaseRunner(results, budget_s=60, on_cuda=False)
    run("fine", lambda: {"median_s": 1.0})
    assert json.loads(path.read_text())["cases"]["fine"]["median_s"] == 1.0
    run("slow", lambda: time.sleep(30) or {}, 0.2)
    run("broken", lambda: 1 / 0)
    run.deadline = time.monotonic() + 1  # less left than a case may start with
    run("late", lambda: {"median_s": 2.0})
    cases = json.loads(path.read_text())["cases"]
    assert cases["slow"]["error"] == "timed out after 0 s" and cases["slow"]["case_s"] < 5
    assert cases["broken"]["error"].startswith("ZeroDivisionError")
    assert "budget" in cases["late"]["skipped"]


def test_gpu_results_go_under_out_on_a_lent_device(monkeypatch, tmp_path):
    from benchmarks import gpu

    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu.results_path(None, "NVIDIA H200") == tmp_path / "gpu-NVIDIA-H200.json"
    assert gpu.results_path(tmp_path / "x.json", "NVIDIA H200") == tmp_path / "x.json"
    monkeypatch.delenv("OUT")
    assert gpu.results_path(None, "NVIDIA H200") is None


def test_gpu_script_refuses_without_a_device(tmp_path, capsys):
    import torch

    from benchmarks import gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu.main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.parametrize("doc", ["README.md", "docs/performance.md"])
def test_the_documented_figures_are_one_results_files_own(doc):
    from benchmarks.table import marked_source, update

    text = (ROOT / doc).read_text(encoding="utf-8")
    source = marked_source(text)
    assert source, f"{doc} has no table made by python -m benchmarks.table"
    results = json.loads((ROOT / source).read_text(encoding="utf-8"))
    assert update(text, results, source) == text, (
        f"{doc} does not match {source}: python -m benchmarks.table {source} --update {doc}"
    )
