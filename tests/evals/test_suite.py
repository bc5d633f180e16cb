"""Suite files: validation, and errors that name the field and its line."""

from __future__ import annotations

import pytest

from zit_agent.errors import UserError
from zit_agent.evals.suite import load_suite, parse_suite, shipped_suites

GOOD = """\
name: t
seeds: 2
ideas:
  - text: a red umbrella
    locked: [red umbrella]
  - text: a dog
configs:
  raw: {strategy: raw}
  agent:
    strategy: agent
"""


def error_of(text: str) -> str:
    with pytest.raises(UserError) as info:
        parse_suite(text, source="s.yaml")
    return info.value.one_line()


def test_a_good_suite_parses_with_defaults():
    suite = parse_suite(GOOD)
    assert suite.seeds == [0, 1]
    assert [i.id for i in suite.ideas] == ["a-red-umbrella", "a-dog"]
    assert suite.baseline == "raw"
    assert suite.configs["agent"].sequence_shape == "plain"


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (("strategy: agent", "strategy: agnt"), "s.yaml:10: field configs.agent.strategy"),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, layr: 3}"),
            "s.yaml:8: field configs.raw.layr",
        ),
        (("    locked: [red umbrella]", "    locked: [blue]"), "s.yaml:4: field ideas.0"),
        (("seeds: 2", "seeds: [1, 1]"), "s.yaml:2: field seeds"),
        (("a dog", "a red umbrella"), "s.yaml:6: field ideas.1"),
        (("  raw: {strategy: raw}", "  raw: {strategy: expanded}"), "s.yaml:8: field configs.raw"),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, sampling: {temperature: -1}}"),
            "s.yaml:8: field configs.raw.sampling.temperature",
        ),
        (("seeds: 2", "seeds: 1"), "s.yaml:2: field seeds"),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, sampler: dpm}"),
            "s.yaml:8: field configs.raw.sampler: Value error, unknown sampler 'dpm'",
        ),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, scheduler: karras}"),
            "s.yaml:8: field configs.raw.scheduler: Value error, unknown scheduler 'karras'",
        ),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, shift: -2}"),
            "s.yaml:8: field configs.raw.shift",
        ),
        (
            ("  raw: {strategy: raw}", "  raw: {strategy: raw, max_tokens: 4096}"),
            "s.yaml:8: field configs.raw.max_tokens",
        ),
    ],
)
def test_a_bad_field_is_named_with_its_line(edit, where):
    message = error_of(GOOD.replace(*edit))
    assert message.startswith(where), message


def test_configs_sweep_sampler_scheduler_and_shift_by_comfyui_names():
    text = GOOD.replace(
        "  raw: {strategy: raw}",
        "  raw: {strategy: raw}\n"
        "  ea-bong: {strategy: raw, sampler: euler_a, scheduler: bong_tangent, shift: auto}\n"
        "  er: {strategy: raw, sampler: er_sde, scheduler: sgm_uniform, shift: 2.5}",
    )
    configs = parse_suite(text).configs
    assert (configs["raw"].sampler, configs["raw"].scheduler, configs["raw"].shift) == (None,) * 3
    bong = configs["ea-bong"]
    assert (bong.sampler, bong.scheduler, bong.shift) == (
        "euler_ancestral",
        "bong_tangent",
        "auto:diffusers",
    )
    assert (configs["er"].sampler, configs["er"].shift) == ("er_sde", 2.5)


def test_a_bad_baseline_points_at_its_line():
    assert error_of(GOOD + "baseline: nope\n").startswith("s.yaml:11: field baseline")


def test_a_missing_field_points_at_the_mapping_that_lacks_it():
    message = error_of(GOOD.replace("name: t\n", ""))
    assert message.startswith("s.yaml:1: field name: Field required"), message


def test_yaml_syntax_errors_name_the_line():
    message = error_of(GOOD.replace("  - text: a dog", "  - text: [a dog"))
    assert message.startswith("s.yaml:7: not valid YAML"), message


def test_not_a_mapping():
    assert "a suite is a YAML mapping" in error_of("- just\n- a list\n")


def test_only_and_limit_select_configs_and_ideas():
    suite = parse_suite(GOOD).select(only=["agent"], limit=1)
    assert list(suite.configs) == ["agent"] and len(suite.ideas) == 1
    assert suite.baseline == "agent"  # the baseline was left out: the first selected stands in
    with pytest.raises(UserError, match="unknown config nope"):
        parse_suite(GOOD).select(only=["nope"])


@pytest.mark.parametrize("name", shipped_suites())
def test_shipped_suites_are_valid(name):
    suite = load_suite(name)
    assert suite.baseline in suite.configs


def test_standard_suite_covers_the_categories():
    suite = load_suite("standard")
    tags = {t for idea in suite.ideas for t in idea.tags}
    assert {"people", "animals", "places", "objects", "food", "text", "multiple", "style"} <= tags
    assert 45 <= len(suite.ideas) <= 60


def test_a_missing_suite_lists_the_shipped_ones():
    with pytest.raises(UserError) as info:
        load_suite("no-such-suite")
    assert "smoke" in info.value.one_line() and "standard" in info.value.one_line()


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (("seeds: 2", "seeds: [-5, 1]"), "s.yaml:2: field seeds.0: Input should be greater"),
        (("seeds: 2", "seeds: [0, 99999999999999999999999]"), "s.yaml:2: field seeds.1: Input"),
        (("seeds: 2", "seeds: 1000000000"), "s.yaml:2: field seeds: Value error, give 2..64"),
        (("seeds: 2", f"seeds: {list(range(65))}"), "s.yaml:2: field seeds: List should have"),
        (("seeds: 2", "seeds: 2\nbackend: {width: 99984}"), "s.yaml:3: field backend.width"),
        (("seeds: 2", "seeds: 2\nbackend: {height: 100}"), "s.yaml:3: field backend.height"),
        (("seeds: 2", "seeds: 2\nbackend: {steps: 100000}"), "s.yaml:3: field backend.steps"),
        (("strategy: agent", "strategy: agent\n    steps: 201"), "s.yaml:11: field configs.agent"),
        (("strategy: agent", "strategy: agent\n    max_tokens: 99999"), "s.yaml:11: field"),
        (("  - text: a dog", "  - {text: a dog, id: a/b}"), "s.yaml:6: field ideas.1: Value"),
        (("  - text: a dog", "  - {text: a dog, id: ../x}"), "s.yaml:6: field ideas.1: Value"),
    ],
)
def test_suite_values_get_the_cli_bounds(edit, where):
    message = error_of(GOOD.replace(*edit))
    assert message.startswith(where), message


def test_the_bounds_themselves_are_allowed():
    edited = GOOD.replace("seeds: 2", "seeds: [0, 9223372036854775807]\nbackend: {width: 4096}")
    suite = parse_suite(edited)
    assert suite.seeds[1] == 2**63 - 1 and suite.backend.width == 4096


def test_an_empty_selection_is_refused_not_everything():
    with pytest.raises(UserError, match="no configuration selected"):
        parse_suite(GOOD).select(only=[])


def test_a_config_option_takes_its_help_and_bounds_from_run_options():
    """A suite's config declares the run options it may set once, in RunOptions: each shared
    field has the option's help, and a value `zit generate` refuses is refused here too."""
    from zit_agent.evals.suite import Config
    from zit_agent.options import RunOptions, run_options

    shared = set(Config.model_fields) & set(RunOptions.model_fields) - {"ladder", "noise"}
    assert {"layer", "steps", "early_steps", "candidates", "max_attempts"} <= shared
    for name in shared:
        assert Config.model_fields[name].description == RunOptions.model_fields[name].description
    for name, value in (("layer", 5000), ("early_steps", 999), ("max_attempts", 51)):
        with pytest.raises(UserError):
            run_options(**{name: value})
        message = error_of(GOOD.replace("strategy: agent", f"strategy: agent\n    {name}: {value}"))
        assert message.startswith(f"s.yaml:11: field configs.agent.{name}"), message
