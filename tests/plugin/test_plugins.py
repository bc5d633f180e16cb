"""A plugin package adds an image backend, an embedder and an escape lever through entry points,
touching no file of zit, and each works in `zit generate`, a chat turn and an eval suite."""

from __future__ import annotations

import json

from tests.cli_helpers import run_zit as zit

PLUGIN = ["--backend", "flat", "--embedder", "mean-colour", "--size", "64x64", "-n", "2"]


def test_a_plugin_backend_embedder_and_lever_run_in_generate(plugin_installed, capsys, tmp_path):
    code, out, err = zit(
        capsys, "generate", "a red fox in the snow", *PLUGIN, "--seed", "3",
        "--ladder", "far-seeds", "--max-attempts", "2", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["ruts_detected"] >= 1  # flat grey, whatever the seed: a rut
    levers = [lv for a in result["per_attempt"] for lv in a["levers"]]
    assert [lv["name"] for lv in levers] == ["far-seeds"]
    assert levers[0]["values"] == {"by": 7919 * 2}


def test_a_plugin_lever_is_a_chat_command_listed_in_help(plugin_installed, capsys, tmp_path):
    from zit_agent.agent.commands import Escape, help_text, parse_command

    assert parse_command("/far-seeds") == Escape(lever="far-seeds", raw="/far-seeds")
    assert "/far-seeds" in help_text() and "/vary" in help_text()


def test_an_unknown_lever_is_one_line_naming_the_plugins_too(plugin_installed, capsys, tmp_path):
    code, _, err = zit(capsys, "generate", "a cat", *PLUGIN, "--ladder", "vary,jump")
    assert code == 2 and "unknown jump" in err and "far-seeds" in err


def test_a_suite_runs_on_the_plugin_backend_embedder_and_lever(
    plugin_installed, tmp_path, qwen_tokenizer
):
    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.runner import RunContext, run_suite
    from zit_agent.evals.suite import Suite

    data = sketch_suite(
        backend={"kind": "flat", "width": 64, "height": 64},
        embedder="mean-colour",
        ideas=[{"id": "fox", "text": "a red fox in the snow"}],
        configs={
            "raw": {"strategy": "raw"},
            "agent": {"strategy": "agent", "ladder": ["far-seeds"], "max_attempts": 2},
        },
    )
    suite = Suite.model_validate(data)
    run_suite(
        suite, tmp_path / "run", quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer)
    )
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    assert len(records) == 4 and {r["backend"]["kind"] for r in records} == {"flat"}
    escapes = [e for r in records for e in r["events"] if "far-seeds" in json.dumps(e)]
    assert escapes, records[0]["events"]


def test_a_suite_naming_an_unregistered_backend_is_refused_at_its_line():
    import pytest

    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.suite import Suite

    with pytest.raises(ValueError, match="unknown image backend 'flat'"):
        Suite.model_validate(sketch_suite(backend={"kind": "flat"}))
