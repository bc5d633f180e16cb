"""Helpers of the eval tests: small suites on the sketch stand-in, `zit` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TIMING_PREFIX = "seconds_"


def sketch_suite(**overrides) -> dict:
    """A small suite on the sketch stand-in (64x64: fast), as a dict to dump as YAML."""
    suite = {
        "name": "tiny",
        "seeds": [0, 1],
        "embedder": "hash",
        "fidelity": "attributes",
        "backend": {"kind": "sketch", "width": 64, "height": 64},
        "ideas": [
            {"id": "fox", "text": "a red fox in the snow", "locked": ["red fox", "snow"]},
            {"id": "ramen", "text": "a bowl of ramen", "locked": ["ramen"]},
        ],
        "configs": {"raw": {"strategy": "raw"}},
    }
    suite.update(overrides)
    return suite


def write_suite(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def zit(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m zit_agent.agent ARGS` (the `zit` entry point) in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "zit_agent.agent", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def without_timings(summary: dict) -> dict:
    """A summary without wall-clock figures (they differ from run to run by nature)."""
    if isinstance(summary, dict):
        return {
            k: without_timings(v) for k, v in summary.items() if not k.startswith(TIMING_PREFIX)
        }
    if isinstance(summary, list):
        return [without_timings(v) for v in summary]
    return summary


def files_under(root: Path) -> dict[str, str | bytes]:
    """Every file under `root` by relative path: its bytes, or `-> TARGET` for a symbolic link
    (links are listed, never followed). Comparing two of these shows what a command changed."""
    found: dict[str, str | bytes] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                found[key] = path.read_bytes()
    return found


def changed(before: dict, after: dict) -> set[str]:
    """The paths added, removed or rewritten between two `files_under` listings."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def journal(out: Path) -> list[dict]:
    """The run's journal lines (`jobs.jsonl`) that parse (a run writing it may be mid-line)."""
    import json

    path = Path(out) / "jobs.jsonl"
    lines = []
    for line in path.read_bytes().splitlines() if path.is_file() else []:
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def jobs_done(out: Path) -> int:
    """Jobs with a finished record in the journal."""
    return len({line["key"] for line in journal(out) if "images" in line})


def drop_from_journal(out: Path, key: str) -> None:
    """The journal without the job's lines: as if killed after its images, before its record."""
    import json

    kept = [line for line in journal(out) if line["key"] != key]
    (Path(out) / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
