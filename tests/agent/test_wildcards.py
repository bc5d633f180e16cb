"""Wildcard prompts (`zit_agent.agent.wildcards`, through dynamicprompts): each seed's expansion is
dynamicprompts' own for that seed, `--combinatorial` enumerates every combination once, a missing
wildcard file is one line naming it, and the agent keeps the template and each image's expansion."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_zit as zit
from zit_agent.agent.wildcards import Wildcards, is_template
from zit_agent.errors import UserError

TEMPLATE = "a {2$$tall|small|old} __animal__ in {rain|snow|fog}, __colors/sky__ sky"
SKETCH = ["--backend", "sketch", "--size", "128x128"]


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "wild"
    (root / "colors").mkdir(parents=True)
    (root / "animal.txt").write_text("cat\ndog\nfox\nowl\n# a comment\n", encoding="utf-8")
    (root / "colors" / "sky.txt").write_text("grey\npink\n", encoding="utf-8")
    (root / "shot.txt").write_text("close-up\nmedium shot\n", encoding="utf-8")
    return root


def test_each_seeds_expansion_is_what_dynamicprompts_gives_for_that_seed(folder):
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    seeds = [0, 1, 2, 7, 123456, 2**31 - 1]
    ours = Wildcards([folder]).expand(TEMPLATE, seeds)
    theirs = [
        RandomPromptGenerator(WildcardManager(folder), seed=seed).generate(TEMPLATE)[0]
        for seed in seeds
    ]
    assert ours == theirs
    assert len(set(ours)) > 1  # the seeds really draw different ideas
    assert all("__" not in text and "{" not in text for text in ours)
    # the same seed gives the same idea, alone or among others
    assert Wildcards([folder]).expand(TEMPLATE, [7]) == [theirs[3]]


def test_the_run_api_expands_per_seed_from_the_options(folder, zit_home):
    from zit_agent.agent.run import idea_seeds
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    options = run_options(seed=40, count=3, wildcards=str(folder))
    seeds, ideas = idea_seeds(load_settings(), TEMPLATE, options, 3)
    assert seeds == [40, 41, 42]
    assert ideas == Wildcards([folder]).expand(TEMPLATE, seeds)
    # a plain idea is not parsed at all
    assert idea_seeds(load_settings(), "a red car", options, 3) == ([40, 41, 42], None)
    assert not is_template("a red car, 50% off: yes") and is_template("a {red|blue} car")


def test_zit_home_wildcards_are_found_without_the_option(folder, zit_home):
    import shutil

    from zit_agent.agent.run import idea_seeds
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    shutil.copytree(folder, zit_home / "wildcards")
    _, ideas = idea_seeds(load_settings(), "a __animal__", run_options(seed=1), 2)
    assert all(idea.split()[1] in ("cat", "dog", "fox", "owl") for idea in ideas)


def test_combinatorial_yields_every_combination_once(folder):
    template = "a {tall|small} __animal__ in {rain|snow|fog}"
    found = Wildcards([folder]).combinations(template, limit=100)
    expected = {
        f"a {size} {animal} in {weather}"
        for size, animal, weather in itertools.product(
            ("tall", "small"), ("cat", "dog", "fox", "owl"), ("rain", "snow", "fog")
        )
    }
    assert len(found) == len(expected) == 24 and set(found) == expected
    with pytest.raises(UserError, match="more than 10 combinations"):
        Wildcards([folder]).combinations(template, limit=10)


def test_combinatorial_on_the_command_line_renders_each_combination_once(capsys, tmp_path, folder):
    code, out, err = zit(
        capsys, "generate", "a {tall|small} __animal__", *SKETCH, "--wildcards", str(folder),
        "--combinatorial", "--no-ruts", "--seed", "3", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    records = [json.loads(Path(p).with_suffix(".json").read_text()) for p in result["images"]]
    expansions = [r["wildcards"]["expansion"] for r in records]
    assert sorted(expansions) == sorted(
        f"a {s} {a}" for s in ("tall", "small") for a in ("cat", "dog", "fox", "owl")
    )
    assert [r["seed"] for r in records] == list(range(3, 11))


@pytest.mark.parametrize(
    ("idea", "error"),
    [
        ("a __unicorn__ in the rain", "wildcard __unicorn__ has no file: no unicorn.txt in"),
        ("a {red|blue car", "bad wildcard syntax in 'a {red|blue car'"),
    ],
)
def test_bad_templates_are_one_line_errors(capsys, tmp_path, folder, idea, error):
    code, out, err = zit(
        capsys, "generate", idea, *SKETCH, "--wildcards", str(folder), "--out", str(tmp_path)
    )
    assert code == 2, err
    assert err.strip().count("\n") == 0 and err.startswith("zit: error: ") and error in err
    assert "--wildcards DIR" in err or "{a|b}" in err
    assert not list(tmp_path.glob("*.png"))  # refused before anything rendered


def test_a_missing_wildcard_folder_is_named(capsys, tmp_path):
    code, _, err = zit(
        capsys, "generate", "a __cat__", *SKETCH, "--wildcards", str(tmp_path / "nowhere")
    )
    assert code == 2 and "wildcard folder" in err and "nowhere" in err


def test_generate_records_the_template_and_each_images_expansion(
    capsys, tmp_path, folder, qwen_tokenizer
):
    from zit_agent.backends.provenance import read_record

    template = "a portrait of a __animal__ in a cafe"
    code, out, err = zit(
        capsys, "generate", template, *SKETCH, "-n", "3", "--seed", "11",
        "--wildcards", str(folder), "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    first = result["per_attempt"][0]
    expected = Wildcards([folder]).expand(template, [11, 12, 13])
    for shot, idea, seed in zip(first["shots"], expected, [11, 12, 13], strict=True):
        assert shot["seeds"] == [seed] and shot["description"] == idea
        record = read_record(shot["images"][0])
        assert record["idea"] == idea and record["seed"] == seed
        assert record["wildcards"] == {"template": template, "expansion": idea, "seed": seed}
    # The encoder saw each expansion (user turn and prompt), never the template's syntax.
    for shot, idea in zip(first["shots"], expected, strict=True):
        text = qwen_tokenizer.decode(shot["token_ids"])
        assert text.count(idea) >= 1 and "__" not in text


def test_the_rut_judge_groups_a_templates_expansions_as_one_idea(capsys, tmp_path, folder):
    """One image per run: the judge compares it with the template's recent images, whatever
    animal each drew (a rut across __animal__ values is still a rut)."""
    from zit_agent.agent.history import HistoryStore
    from zit_agent.settings import load_settings

    template = "a portrait of a __animal__ in a cafe"
    for seed in (1, 2, 3):
        code, _, err = zit(
            capsys, "generate", template, *SKETCH, "-n", "1", "--seed", str(seed),
            "--wildcards", str(folder), "--out", str(tmp_path), "--max-attempts", "1",
        )  # fmt: skip
        assert code == 0, err
    store = HistoryStore(load_settings().history_db)
    try:
        rows = store.images(idea=template, limit=10)
    finally:
        store.close()
    assert len(rows) == 3
    ideas = {read(r.path)["wildcards"]["expansion"] for r in rows}
    assert len(ideas) >= 2  # different expansions, one idea in the history window


def read(path: str) -> dict:
    return json.loads(Path(path).with_suffix(".json").read_text())


def test_vary_changes_a_wildcard_free_axis_when_the_wildcard_did_not_help(capsys, tmp_path, folder):
    """Every seed drew 'close-up' and the images fell in a rut: the ladder's vary leaves the
    wildcard's axis (shot size) to the wildcard and varies others."""
    code, out, err = zit(
        capsys, "generate", "a portrait of a woman in a cafe, __shot__", *SKETCH, "-n", "3",
        "--seed", "1", "--wildcards", str(folder), "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    first, second = result["per_attempt"][:2]
    assert first["verdict"] == "rut"
    assert {s["description"] for s in first["shots"]} == {
        "a portrait of a woman in a cafe, close-up"
    }
    vary = second["levers"][0]
    assert vary["name"] == "vary" and "shot_size" not in vary["values"]["axes"]
    assert vary["values"]["axes"]  # it varied something else
    for shot in second["shots"]:  # each image keeps its own expansion
        assert shot["description"].startswith("a portrait of a woman in a cafe, close-up.")
        assert read(shot["images"][0])["wildcards"]["expansion"].endswith("close-up")


def test_a_chat_sessions_first_turn_expands_per_seed(capsys, tmp_path, folder):
    code, out, err = zit(
        capsys, "chat", "--session", "wild", "--message", "a __animal__ at dawn", *SKETCH,
        "-n", "2", "--seed", "5", "--wildcards", str(folder), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    expected = Wildcards([folder]).expand("a __animal__ at dawn", [5, 6])
    assert result["description"] == expected
    assert [read(p)["wildcards"]["expansion"] for p in result["images"]] == expected
    # the next turn refines each image's own idea
    code, out, err = zit(capsys, "chat", "--session", "wild", "--message", "in fog", "--json")
    assert code == 0, err
    assert json.loads(out)["description"] == [f"{idea}. in fog" for idea in expected]


def test_the_plain_path_renders_each_seeds_expansion(qwen_tokenizer, tmp_path, folder):
    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.backends.provenance import read_record
    from zit_agent.options import run_options

    options = run_options(seed=20, count=4, size="128x128", wildcards=str(folder))
    result = sketch_runner(qwen_tokenizer).render_plain("a __animal__", options, out_dir=tmp_path)
    expected = Wildcards([folder]).expand("a __animal__", [20, 21, 22, 23])
    assert result["seeds"] == [20, 21, 22, 23] and result["ideas"] == expected
    for path, seed, idea in zip(result["images"], result["seeds"], expected, strict=True):
        record = read_record(path)
        assert record["seed"] == seed and record["idea"] == idea
        assert record["wildcards"]["template"] == "a __animal__"
        assert record["wildcards"]["expansion"] == idea


def test_a_suites_wildcard_idea_is_expanded_per_seed(qwen_tokenizer, tmp_path, folder, zit_home):
    """Suites read ZIT_HOME/wildcards; each seed's image pictures that seed's expansion."""
    import shutil

    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.runner import RunContext, run_suite
    from zit_agent.evals.suite import Suite

    shutil.copytree(folder, zit_home / "wildcards")
    template = "a __animal__ in the snow"
    ideas = [{"id": "wild", "text": template, "locked": ["snow"]}]
    suite = Suite.model_validate(sketch_suite(seeds=[3, 4, 5], ideas=ideas))
    run_suite(
        suite, tmp_path / "run", quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer)
    )
    lines = (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    records = sorted((json.loads(line) for line in lines), key=lambda r: r["seed"])
    expected = Wildcards([folder]).expand(template, [3, 4, 5])
    assert [r["description"] for r in records] == expected
    for record, idea in zip(records, expected, strict=True):
        assert record["backend"]["wildcards"] == {
            "template": template,
            "expansion": idea,
            "seed": record["seed"],
        }
        assert qwen_tokenizer.decode(record["sequence"]["ids"]).count(idea) == 1


def test_with_a_writer_a_missing_wildcard_is_written_saved_and_said(
    qwen_tokenizer, tmp_path, zit_home, caplog
):
    """z-explorer style: `__beast__` has no file, so the writer lists values; they are saved as
    ZIT_HOME/wildcards/beast.txt (the person can edit it) and the run expands from that file."""
    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.agent.run import check_request
    from zit_agent.backends.writers.fake import FakeWriter
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    writer = FakeWriter(qwen_tokenizer)
    writer.enqueue('1. lynx\n2. otter\n- heron\n* lynx\n"red panda"\n__nope__\n{a|b}\n')
    events = []
    options = run_options(seed=2, count=3, size="128x128", ruts=False)
    template = "a __beast__ in the snow"
    final = sketch_runner(qwen_tokenizer, writer=writer).generate(
        template, options, out_dir=tmp_path, ruts=False, on_event=lambda k, d: events.append((k, d))
    )
    saved = zit_home / "wildcards" / "beast.txt"
    assert saved.read_text() == "lynx\notter\nheron\nred panda\n"
    asked = writer.history[0].messages
    assert "Wildcard: beast" in asked[-1].content and template in asked[-1].content
    assert ("wildcard", {"written": str(saved), "values": 4}) in events
    assert "the writer wrote the wildcard" in caplog.text and str(saved) in caplog.text
    expected = Wildcards([saved.parent]).expand(template, [2, 3, 4])
    assert final.expansions == expected
    assert all(any(v in idea for v in ("lynx", "otter", "heron", "red panda")) for idea in expected)
    # a check before loading lets a writer's run through, and refuses one without a writer
    settings = load_settings()
    missing = "a __griffin__"
    check_request(settings, run_options(writer="gguf:/w.gguf"), ruts=False, idea=missing)
    with pytest.raises(UserError, match="__griffin__ has no file"):
        check_request(settings, run_options(), ruts=False, idea=missing)
