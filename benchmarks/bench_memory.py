"""Peak resident memory of the CLI on the tiny models, against two baselines in fresh processes:
a bare `python -c "import torch, diffusers"`, and a bare diffusers script that loads the same tiny
`ZImagePipeline` and renders the idea once (what the CLI drives, without the CLI).

Each command runs in a fresh child process with its own ZIT_HOME; its peak is the child's
`ru_maxrss` (from `os.wait4`), so the benchmark's own memory never counts. The tiny models weigh a
few MB, so what these figures show is what the code path loads on top of the libraries.

- `zit generate --writer none --no-ruts`: the plain path (tokenizer, tiny Z-Image, one render);
- `zit generate --writer gguf:...`: the agent path with the tiny llama.cpp writer;
- `zit demo`: the whole demo with its models already built (as on every run after the first).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core import Figure, benchmark, spread_of

IMPORTS = "import torch, diffusers"
IDEA = "a red fox in the snow"
TINY_RENDER = ["--size", "64x64", "--steps", "2"]
RAW_PIPELINE = f"""import sys
from diffusers import ZImagePipeline
pipe = ZImagePipeline.from_pretrained(sys.argv[1])
pipe(prompt={IDEA!r}, height=64, width=64, num_inference_steps=2, guidance_scale=0.0).images[0].save(
    sys.argv[2])
"""
EXTRA_TARGET_MB = 150  # what the CLI may add on top of the raw pipeline script


# A process's peak RSS outlives exec: a child forked from this (large) process would report this
# process's size. So a small launcher forks the command and reports the command's own ru_maxrss.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""
# ru_maxrss is in bytes on macOS, in KiB on Linux.
MAXRSS_PER_MB = 2**20 if sys.platform == "darwin" else 2**10


@dataclass
class ChildRun:
    peak_mb: float
    seconds: float
    cpu_s: float  # user + system time of the command (less moved by other work than wall time)


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """Run `cmd` to the end; its peak resident memory (MB), wall time and CPU time. Fails loudly
    (with the command's stderr) when it fails, so a broken path is never reported as a figure."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "maxrss"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(report), *cmd],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{tail}")
        maxrss, cpu_s = report.read_text().split()
        return ChildRun(int(maxrss) / MAXRSS_PER_MB, seconds, float(cpu_s))


def tiny_home(root: Path) -> tuple[Path, Path]:
    """ZIT_HOME with the demo's tiny models already in its cache; (gguf, zimage dir)."""
    from zit_agent.backends.tiny.qwen3 import GGUF_NAME, build_tiny_qwen3_gguf
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    cache = root / "demo-models"
    return build_tiny_qwen3_gguf(cache / GGUF_NAME), build_tiny_zimage(cache / "tiny-zimage")


def commands(gguf: Path, zimage: Path, out: Path) -> dict[str, list[str]]:
    zit = [sys.executable, "-m", "zit_agent.agent"]
    generate = [*zit, "generate", IDEA, "--image-model", str(zimage), *TINY_RENDER]
    return {
        "zit generate --writer none --no-ruts": [
            *generate, "--writer", "none", "--no-ruts", "--out", str(out / "plain"),
        ],
        "zit generate --writer gguf (tiny) --no-ruts": [
            *generate, "--writer", f"gguf:{gguf}", "--no-ruts", "--max-new-tokens", "32",
            "--out", str(out / "gguf"),
        ],
        "zit demo (models cached)": [*zit, "demo", "--out", str(out / "demo")],
    }  # fmt: skip


@benchmark("memory")
def peak_memory(quick: bool) -> list[Figure]:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="zit-bench-memory-") as tmp:
        root = Path(tmp)
        home = root / "home"
        gguf, zimage = tiny_home(home)
        env = {**os.environ, "ZIT_HOME": str(home), "ZIT_CONFIG": os.devnull,
               "HF_HUB_OFFLINE": "1"}  # fmt: skip
        cwd = Path(__file__).resolve().parent.parent

        def runs(cmd: list[str]) -> list[ChildRun]:
            return [measure(cmd, env, cwd) for _ in range(repeats)]

        imports = runs([sys.executable, "-c", IMPORTS])
        raw = runs([sys.executable, "-c", RAW_PIPELINE, str(zimage), str(root / "raw.png")])
        measured = {name: runs(cmd) for name, cmd in commands(gguf, zimage, root / "out").items()}
    imports_mb, raw_mb = _median_mb(imports), _median_mb(raw)
    figures = [
        Figure(
            "raw ZImagePipeline script (tiny): peak RSS", raw_mb, "MB", imports_mb,
            f"python -c '{IMPORTS}'", spread=_spread(raw),
            extra={"seconds": _median_s(raw), "baseline_seconds": _median_s(imports)},
        )
    ]  # fmt: skip
    for name, rs in measured.items():
        peak = _median_mb(rs)
        figures.append(
            Figure(
                f"{name}: peak RSS", peak, "MB", raw_mb, "raw ZImagePipeline script (tiny)",
                target=f"extra < {EXTRA_TARGET_MB} MB", met=peak - raw_mb < EXTRA_TARGET_MB,
                spread=_spread(rs),
                extra={"extra_mb": round(peak - raw_mb, 1),
                       "over_imports_mb": round(peak - imports_mb, 1),
                       "seconds": _median_s(rs), "repeats": len(rs)},
            )
        )  # fmt: skip
    return figures


def _median_mb(runs: list[ChildRun]) -> float:
    return statistics.median(r.peak_mb for r in runs)


def _median_s(runs: list[ChildRun]) -> float:
    return round(statistics.median(r.seconds for r in runs), 2)


def _spread(runs: list[ChildRun]) -> float | None:
    return spread_of([r.peak_mb for r in runs])
