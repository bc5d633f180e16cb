"""`zit eval` in a subprocess: the smoke suite end to end, kill -9 and resume, compare, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.evals.helpers import (
    REPO,
    jobs_done,
    sketch_suite,
    without_timings,
    write_suite,
    zit,
)
from zit_agent.evals.runner import RunContext, run_suite
from zit_agent.evals.suite import Suite
from zit_agent.files import FOLDER_MARKER

IDEAS = [
    {"id": f"idea{n}", "text": text, "locked": [text.split()[-1]]}
    for n, text in enumerate(
        [
            "a red fox",
            "a bowl of ramen",
            "a lighthouse",
            "an old typewriter",
            "a barn owl",
            "a blue teapot",
        ]
    )  # fmt: skip
]

pytestmark = pytest.mark.slow  # starts processes or builds models


def test_smoke_suite_writes_the_report_and_the_agent_beats_raw(smoke_run):
    for name in ("report.html", "summary.json", "per_image.jsonl", "config.json"):
        assert (smoke_run / name).is_file(), name
    summary = json.loads((smoke_run / "summary.json").read_text())
    metrics = {name: c["metrics"] for name, c in summary["configs"].items()}
    # What the sketch stand-in is built to show: plain ideas rut; the agent states varied axes.
    assert (
        metrics["agent"]["vendi"]["interval"]["mean"] > metrics["raw"]["vendi"]["interval"]["mean"]
    )
    distance = metrics["agent"]["mean_distance"]
    assert distance["vs_baseline"]["mean"] > 0
    assert metrics["raw"]["rut_rate"]["interval"]["mean"] == 1.0
    assert "stand-in" in summary["note"] and "stand-in" in (smoke_run / "report.html").read_text()
    assert any(e["kind"] != "final rut" for e in summary["rut_events"])  # the agent's escapes


def test_kill_9_then_resume_gives_each_image_once_and_the_same_summary(tmp_path, qwen_tokenizer):
    suite = write_suite(
        tmp_path / "suite.yaml",
        sketch_suite(
            seeds=[0, 1],
            ideas=IDEAS,
            configs={"raw": {"strategy": "raw"}, "agent": {"strategy": "agent", "max_attempts": 2}},
            backend={"kind": "sketch", "width": 192, "height": 192},
        ),
    )
    expected = len(IDEAS) * 2 * 2  # images: raw and agent, two seeds each
    jobs = len(IDEAS) * (2 + 1)  # raw: a job per seed; agent: a job per idea
    killed = tmp_path / "killed"
    for more in (2, 5):  # kill twice, at different points (agent jobs included), then finish
        _kill_when_jobs(suite, killed, at_least=jobs_done(killed) + more)
        assert jobs_done(killed) < jobs, "the run finished before it was killed"
    finished = zit("eval", str(suite), "--out", str(killed), "--resume", "--quiet")
    assert finished.returncode == 0, finished.stderr
    uninterrupted = Suite.model_validate(yaml.safe_load(suite.read_text()))
    context = RunContext(uninterrupted, tokenizer=qwen_tokenizer)
    run_suite(uninterrupted, tmp_path / "straight", quiet=True, context=context)

    images = sorted(p.name for p in (killed / "images").glob("*.png"))
    assert len(images) == expected == len(set(images))
    assert images == sorted(p.name for p in (tmp_path / "straight" / "images").glob("*.png"))
    hidden = [p for p in killed.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert hidden == [killed / FOLDER_MARKER]  # no temporary file left
    records = [json.loads(x) for x in (killed / "per_image.jsonl").read_text().splitlines()]
    assert len({r["key"] for r in records}) == expected
    summaries = [
        json.loads((d / "summary.json").read_text()) for d in (killed, tmp_path / "straight")
    ]
    assert without_timings(summaries[0]) == without_timings(summaries[1])


def _kill_when_jobs(suite, out, at_least: int) -> None:
    args = [
        sys.executable,
        "-m",
        "zit_agent.agent",
        "eval",
        str(suite),
        "--out",
        str(out),
        "--quiet",
    ]
    if out.exists():
        args.append("--resume")
    proc = subprocess.Popen(args, cwd=REPO, env=os.environ.copy(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while jobs_done(out) < at_least and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_eval_and_eval_compare_both_parse(smoke_run, tmp_path):
    shown = zit("eval", "compare", str(smoke_run), str(smoke_run), "--json")
    assert shown.returncode == 0, shown.stderr
    diff = json.loads(shown.stdout)
    assert diff["settings_differ"] == {} and diff["only_in_a"] == diff["only_in_b"] == []
    assert diff["configs"]["agent"]["vendi"]["b_minus_a"] == 0.0
    readable = zit("eval", "compare", str(smoke_run), str(smoke_run))
    assert readable.returncode == 0 and "minus" in readable.stdout
    run_form = zit("eval", "run", "--help")
    assert run_form.returncode == 0 and "--resume" in run_form.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "no-such-suite"], "no suite file 'no-such-suite'"),
        (["eval", "compare", "nowhere", "nowhere"], "no summary.json in nowhere"),
        (["eval", "smoke", "--only", "nope"], "unknown config nope"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = zit(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_suite_names_field_and_line(tmp_path):
    bad = write_suite(tmp_path / "bad.yaml", sketch_suite(configs={"raw": {"strategy": "rawest"}}))
    result = zit("eval", str(bad))
    assert result.returncode == 2
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "rawest" in text)
    assert f"bad.yaml:{line}: field configs.raw.strategy" in result.stderr


def test_a_suite_whose_image_model_is_missing_names_the_model(tmp_path):
    """As `zit generate` does: the image model is named, not the tokenizer folder inside it."""
    backend = {"kind": "zimage", "model": str(tmp_path / "no-model")}
    suite = write_suite(tmp_path / "s.yaml", sketch_suite(backend=backend))
    result = zit("eval", str(suite), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert f"image model: no directory '{tmp_path / 'no-model'}'" in result.stderr, result.stderr


def test_a_runs_config_json_reruns_the_same_suite(smoke_run):
    from zit_agent.evals.suite import load_suite

    config = json.loads((smoke_run / "config.json").read_text())
    assert load_suite(smoke_run / "config.json").digest() == config["suite_digest"]
    assert config["suite_digest"] == load_suite("smoke").digest()
