"""The composition levers in suites: the shipped `levers` suite, and a sweep on the sketch stand-in
whose report counts denoising steps per kept image."""

from __future__ import annotations

import pytest

from tests.evals.helpers import sketch_suite
from zit_agent.errors import UserError
from zit_agent.evals.runner import RunContext, run_suite
from zit_agent.evals.suite import Suite, load_suite


def test_the_levers_suite_sweeps_the_levers():
    suite = load_suite("levers")
    configs = suite.configs
    assert configs["candidates"].candidates == 16 and configs["candidates"].preview_step == 2
    assert configs["early-empty"].early_prompt == "" and configs["early-empty"].early_steps == 2
    assert configs["ladder-composition"].ladder[:2] == ["candidates", "early"]
    standard = {i.id: i.text for i in load_suite("standard").ideas}
    assert all(standard[i.id] == i.text for i in suite.ideas)  # the standard ideas


def test_candidates_need_the_agent_strategy():
    data = sketch_suite(configs={"raw": {"strategy": "raw", "candidates": 4}})
    with pytest.raises((UserError, ValueError), match="only the agent strategy"):
        Suite.model_validate(data)


def test_the_report_counts_denoising_steps_per_kept_image(tmp_path, qwen_tokenizer):
    configs = {
        "raw": {"strategy": "raw", "steps": 4},
        "early": {"strategy": "raw", "steps": 4, "early_prompt": "", "early_steps": 1},
        "candidates": {
            "strategy": "agent", "writer": "none", "max_attempts": 1, "steps": 4,
            "candidates": 6, "preview_step": 1,
        },
    }  # fmt: skip
    suite = Suite.model_validate(sketch_suite(configs=configs))
    result = run_suite(
        suite, tmp_path / "run", quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer)
    )
    cost = {name: c["metrics"]["denoise_steps"] for name, c in result.summary["configs"].items()}
    means = {name: value["interval"]["mean"] for name, value in cost.items()}
    assert means["raw"] == means["early"] == 4.0
    # The sketch backend has no early preview: 6 candidates in full for 2 kept = 12 steps each.
    assert means["candidates"] == 6 * 4 / 2
    assert "steps / image" in (tmp_path / "run" / "report.html").read_text()
