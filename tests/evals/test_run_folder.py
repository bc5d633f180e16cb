"""Run folders: nothing written outside ZIT_HOME or the folder given, no user file overwritten, no
symbolic link followed, no two runs mixed, a damaged journal or a deleted image redone. Each test
checks the filesystem afterwards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_helpers import run_zit
from tests.evals.helpers import (
    changed,
    files_under,
    jobs_done,
    journal,
    sketch_suite,
    write_suite,
)
from zit_agent.errors import UserError
from zit_agent.evals.runner import RunContext, RunFolder, plan, run_suite
from zit_agent.evals.suite import Suite
from zit_agent.files import FOLDER_MARKER


@pytest.fixture
def run(qwen_tokenizer):
    """`run_suite` with the session's tokenizer (loading one costs about a second)."""

    def run(suite: Suite, out, **kwargs):
        context = RunContext(suite, tokenizer=qwen_tokenizer)
        return run_suite(suite, out, quiet=True, context=context, **kwargs)

    return run


def one_line_error(capsys, *args: str) -> str:
    code, _, err = run_zit(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_suite_name_never_sends_the_run_outside_zit_home(tmp_path, zit_home, capsys, where):
    target = tmp_path / "escaped"
    name = "../" * 12 + str(target) if where == "relative" else str(target)
    suite = write_suite(tmp_path / "suite.yaml", sketch_suite(name=name))
    before = files_under(tmp_path)
    code, out, err = run_zit(capsys, "eval", str(suite), "-q")
    assert code == 0, err
    written = changed(before, files_under(tmp_path))
    assert written and all(p.startswith(f"{zit_home.name}/outputs/evals/") for p in written)
    assert not target.exists()
    report = Path(out.strip())
    assert report.name == "report.html" and report.parent.parent == zit_home / "outputs" / "evals"
    assert re.fullmatch("[a-z0-9-]+", report.parent.name), report


@pytest.mark.parametrize("command", ["eval", "demo"])
def test_a_non_empty_folder_zit_did_not_make_is_refused_untouched(tmp_path, capsys, command):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "precious"}')
    (out / "index.html").write_text("my page")
    before = files_under(tmp_path)
    suite = write_suite(tmp_path / "suite.yaml", sketch_suite())
    args = ["eval", str(suite), "--out", str(out), "-q"] if command == "eval" else ["demo"]
    err = one_line_error(capsys, *args, *(["--out", str(out)] if command == "demo" else []))
    assert "is not empty and holds no zit" in err
    assert changed(before, files_under(tmp_path)) == {"suite.yaml"}


def test_a_demo_folder_is_not_an_eval_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / FOLDER_MARKER).write_text('{"kind": "demo"}')
    (out / "summary.json").write_text("the demo's")
    suite = write_suite(tmp_path / "suite.yaml", sketch_suite())
    before = files_under(tmp_path)
    err = one_line_error(capsys, "eval", str(suite), "--out", str(out))
    assert "holds a zit demo, not a zit eval run" in err
    assert changed(before, files_under(tmp_path)) == set()


def test_a_symlinked_run_lock_leaves_its_target_untouched(tmp_path, run):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    suite = Suite.model_validate(sketch_suite())
    # a folder of a run, and one of nothing but the link: both refused, the target as it was
    ours, bare = tmp_path / "ours", tmp_path / "bare"
    RunFolder(ours).claim(suite, resume=False)
    for folder in (ours, bare):
        folder.mkdir(exist_ok=True)
        (folder / "run.lock").symlink_to(victim)
        before = files_under(tmp_path)
        with pytest.raises(UserError, match="symbolic link|holds no zit eval run"):
            run(suite, folder)
        assert changed(before, files_under(tmp_path)) == set()
    assert victim.read_text() == "keep me"


def test_resume_with_another_suite_is_refused(tmp_path, run):
    out = tmp_path / "run"
    run(Suite.model_validate(sketch_suite()), out)
    before = files_under(tmp_path)
    other = Suite.model_validate(sketch_suite(name="other"))
    with pytest.raises(UserError, match="holds a run of suite 'tiny', not of 'other'"):
        run(other, out, resume=True)
    assert changed(before, files_under(tmp_path)) == set()


def as_before_the_one_journal(out: Path) -> None:
    """Turn a run folder into the layout of runs before jobs.jsonl: a journal file per job."""
    (out / "jobs").mkdir()
    for line in journal(out):
        (out / "jobs" / f"{line['key']}.json").write_text(json.dumps(line))
    (out / "jobs.jsonl").unlink()


def test_a_run_made_before_folders_were_marked_is_still_resumed(tmp_path, run):
    out = tmp_path / "run"
    suite = Suite.model_validate(sketch_suite())
    run(suite, out)
    as_before_the_one_journal(out)
    (out / FOLDER_MARKER).unlink()
    with pytest.raises(UserError, match="suite 'tiny', not of 'other'"):
        run(Suite.model_validate(sketch_suite(name="other")), out, resume=True)
    assert run(suite, out, resume=True).ran == 0
    assert json.loads((out / FOLDER_MARKER).read_text()) == {"kind": "eval run", "suite": "tiny"}


def test_a_run_journaled_a_file_per_job_resumes_without_redoing_them(tmp_path, run):
    out = tmp_path / "run"
    suite = Suite.model_validate(sketch_suite())
    first = run(suite, out)
    as_before_the_one_journal(out)
    (out / "jobs" / f"{plan(suite)[0].key}.json").unlink()  # that job was not finished
    again = run(suite, out, resume=True)
    assert (again.ran, again.skipped) == (1, 3)
    assert len(list((out / "images").glob("*.png"))) == 4
    assert again.summary["counts"] == first.summary["counts"]


@pytest.mark.parametrize("damage", ["last line cut short", "line not UTF-8", "image deleted"])
def test_resume_redoes_a_job_whose_journal_line_or_image_is_damaged(tmp_path, run, damage):
    out = tmp_path / "run"
    suite = Suite.model_validate(sketch_suite())
    first = run(suite, out)
    job = plan(suite)[0]
    lines = {line["key"]: line for line in journal(out)}
    image = out / lines[job.key]["images"][0]["image"]
    others = "".join(json.dumps(v) + "\n" for k, v in lines.items() if k != job.key)
    mine = json.dumps(lines[job.key]).encode()
    if damage == "last line cut short":  # the machine crashed while appending it
        (out / "jobs.jsonl").write_bytes(others.encode() + mine[: len(mine) // 2])
    elif damage == "line not UTF-8":
        (out / "jobs.jsonl").write_bytes(b"\xff\xfe" + mine[2:] + b"\n" + others.encode())
    else:
        image.unlink()
    again = run(suite, out, resume=True)
    assert (again.ran, again.skipped) == (1, 3)
    assert image.is_file() and jobs_done(out) == 4
    assert len(list((out / "images").glob("*.png"))) == 4
    assert again.summary["counts"] == first.summary["counts"]
    assert run(suite, out, resume=True).ran == 0  # the appended line is whole: nothing redone


def test_an_empty_only_runs_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite.yaml", sketch_suite())
    before = files_under(tmp_path)
    err = one_line_error(capsys, "eval", str(suite), "--only", "", "--out", str(tmp_path / "r"))
    assert "no configuration selected" in err
    assert changed(before, files_under(tmp_path)) == set()


@pytest.mark.parametrize(
    ("summary", "problem"),
    [
        (b"[]", "is not an eval summary: (the top level)"),
        (b'{"configs": 5}', "is not an eval summary: configs"),
        (
            b'{"configs": {"raw": {"metrics": {"vendi": {"interval": {"mean": "x"}}}}}}',
            "configs.raw.metrics.vendi.interval.mean",
        ),
        (b'{"configs": {', "cannot read"),
        (b"\xff\xfe", "cannot read"),
    ],
)
def test_compare_on_a_malformed_summary_is_one_line(tmp_path, capsys, summary, problem):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_bytes(summary)
    err = one_line_error(capsys, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "a"))
    assert problem in err


def test_a_folder_whose_run_finished_no_job_is_taken_by_any_suite(tmp_path, run):
    out = tmp_path / "run"
    RunFolder(out).claim(Suite.model_validate(sketch_suite()), resume=False)  # stopped there
    other = Suite.model_validate(sketch_suite(name="other"))
    assert run(other, out).ran == 4
    assert json.loads((out / FOLDER_MARKER).read_text())["suite"] == "other"
