"""The runner: jobs keyed by what produced them, resume, writer strategies, the report files."""

from __future__ import annotations

import json

import pytest

from tests.evals.helpers import drop_from_journal, sketch_suite
from zit_agent.backends.writers.fake import FakeWriter
from zit_agent.evals.runner import RunContext, plan, run_suite
from zit_agent.evals.suite import Suite

REPORT_FILES = ("report.html", "summary.json", "per_image.jsonl", "config.json")


@pytest.fixture
def run(qwen_tokenizer):
    """`run_suite` with the session's tokenizer (loading one costs about a second)."""

    def run(suite: Suite, out, **kwargs):
        context = RunContext(suite, tokenizer=qwen_tokenizer)
        return run_suite(suite, out, quiet=True, context=context, **kwargs)

    return run


def images_of(out) -> list[str]:
    return sorted(p.name for p in (out / "images").glob("*.png"))


def test_a_run_writes_the_report_files_and_each_image_once(tmp_path, run):
    suite = Suite.model_validate(sketch_suite())
    result = run(suite, tmp_path / "run")
    for name in REPORT_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    lines = (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(images_of(tmp_path / "run")) == 4
    assert {(r["idea"]["id"], r["seed"]) for r in records} == {
        (i, s) for i in ("fox", "ramen") for s in (0, 1)
    }
    first = records[0]
    assert first["sequence"]["count"] == len(first["sequence"]["ids"])
    assert first["backend"]["kind"] == "sketch"
    assert result.summary["fidelity"]["method"] == "attributes"
    assert result.summary["embedder"]["name"] == "hash"
    assert result.summary["configs"]["raw"]["metrics"]["fidelity"]["interval"]["mean"] == 1.0


def test_the_agents_final_images_are_moved_with_their_tagged_records(tmp_path, run):
    from zit_agent.backends.provenance import read_record

    configs = {"agent": {"strategy": "agent", "max_attempts": 2}}
    ideas = sketch_suite()["ideas"][:1]
    suite = Suite.model_validate(sketch_suite(configs=configs, ideas=ideas, baseline="agent"))
    out = tmp_path / "run"
    run(suite, out)
    [job] = plan(suite)
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 2
    for png in pngs:
        record = read_record(png)
        assert record == json.loads(png.with_suffix(".json").read_text())  # both: the first write
        assert record["eval"] == {"suite": "tiny", "config": "agent", "job": job.key}
        assert record["agent"]["run"] == job.stem_prefix  # rendered by the agent's loop
    final = {read_record(png)["agent"]["attempt"] for png in pngs}
    left = [p.name for p in (out / "work" / job.stem_prefix).iterdir()]
    assert not [name for name in left if any(f"-a{n}-" in name for n in final)]  # moved, not copied
    assert not [name for name in left if not name.endswith((".png", ".json"))]  # no store file


def test_resume_does_only_what_is_missing(tmp_path, run):
    out = tmp_path / "run"
    suite = Suite.model_validate(sketch_suite())
    run(suite, out)
    again = run(suite, out, resume=True)
    assert (again.ran, again.skipped) == (0, 4)
    # one more seed: only the new seed's jobs run, the rest keep their keys
    wider = Suite.model_validate(sketch_suite(seeds=[0, 1, 2]))
    grown = run(wider, out, resume=True)
    assert (grown.ran, grown.skipped) == (2, 4)
    assert len(images_of(out)) == 6


def test_a_run_folder_is_not_overwritten_without_resume(tmp_path, run):
    from zit_agent.errors import UserError

    suite = Suite.model_validate(sketch_suite())
    run(suite, tmp_path / "run")
    with pytest.raises(UserError, match="already holds an eval run"):
        run(suite, tmp_path / "run")


def test_leftovers_of_an_unfinished_job_are_replaced_not_duplicated(tmp_path, run):
    out = tmp_path / "run"
    suite = Suite.model_validate(sketch_suite())
    run(suite, out)
    job = plan(suite)[0]
    drop_from_journal(out, job.key)  # as if killed after saving its images, before its record
    (out / "images" / f".{job.stem_prefix}-x.png.tmp").write_bytes(b"half a png")
    again = run(suite, out, resume=True)
    assert again.ran == 1
    assert len(images_of(out)) == 4
    assert not list((out / "images").glob(".*"))


def test_keys_change_with_what_produces_the_images_only():
    base = sketch_suite()
    keys = {j.key for j in plan(Suite.model_validate(base))}
    renamed = sketch_suite(name="other", description="different words")
    assert {j.key for j in plan(Suite.model_validate(renamed))} == keys
    config = {"raw": {"strategy": "raw", "layer": -3}}
    assert not keys & {j.key for j in plan(Suite.model_validate(sketch_suite(configs=config)))}


def test_writer_strategies_use_the_writer_ids_and_measure_retention(tmp_path, qwen_tokenizer):
    data = sketch_suite(
        writer="fake",
        ideas=[{"id": "fox", "text": "a red fox in the snow", "locked": ["red fox", "snow"]}],
        configs={
            "raw": {"strategy": "raw"},
            "expanded": {"strategy": "expanded"},
            "think": {"strategy": "think"},
        },
    )
    suite = Suite.model_validate(data)
    writer = FakeWriter(qwen_tokenizer)
    for answer in ("a red fox, close-up", "a red fox in snow, wide shot"):  # expanded, seeds 0, 1
        writer.enqueue(answer)
    for answer in ("a fox at dusk", "a fox in snow at dawn"):  # think, seeds 0, 1
        writer.enqueue(answer, think="keep the fox; vary the light")
    context = RunContext(suite, tokenizer=qwen_tokenizer, writers={"fake": writer})
    result = run_suite(suite, tmp_path / "run", quiet=True, context=context)

    assert [call.seed for call in writer.history] == [0, 1, 0, 1]  # writer seed = image seed
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    by = {(r["config"], r["seed"]): r for r in records}
    expanded = by[("expanded", 1)]
    answer_ids = writer.generated_ids("a red fox in snow, wide shot")[:-1]  # without <|im_end|>
    ids = expanded["sequence"]["ids"]
    assert any(ids[i : i + len(answer_ids)] == answer_ids for i in range(len(ids)))
    assert (
        expanded["sequence"]["shape"] == "plain"
        and by[("think", 0)]["sequence"]["shape"] == "think"
    )
    assert expanded["cost"]["writer_new_tokens"] > 0
    fidelity = {
        n: c["metrics"]["fidelity"]["interval"]["mean"]
        for n, c in result.summary["configs"].items()
    }
    assert fidelity == pytest.approx({"raw": 1.0, "expanded": 0.75, "think": 0.25})
    diff = result.summary["configs"]["think"]["metrics"]["fidelity"]["vs_baseline"]
    assert diff["mean"] == pytest.approx(-0.75)


@pytest.mark.slow
def test_expanded_runs_a_real_llama_cpp_writer_and_keeps_its_ids(
    tmp_path, tiny_gguf, qwen_tokenizer
):
    from zit_agent.backends.writers import load_writer

    spec = f"gguf:{tiny_gguf}"
    data = sketch_suite(
        writer=spec,
        ideas=[{"id": "fox", "text": "a red fox in the snow", "locked": ["red fox"]}],
        configs={
            "raw": {"strategy": "raw"},
            "expanded": {"strategy": "expanded", "sampling": {"max_new_tokens": 8}},
        },
    )
    suite = Suite.model_validate(data)
    context = RunContext(suite, tokenizer=qwen_tokenizer, writers={spec: load_writer(spec)})
    run_suite(suite, tmp_path / "run", quiet=True, context=context)
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    for record in [r for r in records if r["config"] == "expanded"]:
        writer, ids = record["writer"], record["sequence"]["ids"]
        assert writer["model"] == "tiny-qwen3.gguf" and writer["new_tokens"] == 8
        answer = writer["answer_ids"]  # what the writer generated, cleaned of control ids
        assert answer and any(ids[i : i + len(answer)] == answer for i in range(len(ids)))
        assert record["cost"]["writer_prompt_tokens"] > 0


def test_a_failed_draft_is_recorded_and_retried_on_resume(tmp_path, qwen_tokenizer):
    data = sketch_suite(
        writer="fake",
        ideas=[{"id": "fox", "text": "a red fox in the snow", "locked": ["red fox"]}],
        configs={"raw": {"strategy": "raw"}, "expanded": {"strategy": "expanded"}},
    )
    suite = Suite.model_validate(data)
    writer = FakeWriter(qwen_tokenizer)
    writer.enqueue("a red fox, wide shot")  # seed 0 works
    for _ in range(3):  # seed 1: an empty answer, on every retry
        writer.enqueue_ids([writer.generated_ids("")[-1]])
    context = RunContext(suite, tokenizer=qwen_tokenizer, writers={"fake": writer})
    first = run_suite(suite, tmp_path / "run", quiet=True, context=context)
    [failed] = first.summary["failed_jobs"]
    assert (failed["config"], failed["seeds"]) == ("expanded", [1]) and "empty" in failed["error"]
    assert first.summary["per_idea"]["expanded"]["fox"]["vendi"] is None  # one image: no figure
    assert "Failed jobs" in (tmp_path / "run" / "report.html").read_text()

    again = run_suite(suite, tmp_path / "run", resume=True, quiet=True, context=context)
    assert again.ran == 1 and again.summary["failed_jobs"] == []
    assert len(images_of(tmp_path / "run")) == 4


def test_one_run_at_a_time_per_folder(tmp_path, run):
    from zit_agent.errors import UserError
    from zit_agent.evals.runner import RunFolder

    suite = Suite.model_validate(sketch_suite())
    holder = RunFolder(tmp_path / "run")
    holder.claim(suite, resume=False)  # as another run of the suite has it
    with holder.lock(), pytest.raises(UserError, match="another zit eval"):
        run(suite, tmp_path / "run")
    assert run(suite, tmp_path / "run", resume=True).ran == 4  # the lock went with its holder


def test_models_load_once_per_run(tmp_path, qwen_tokenizer, monkeypatch):
    from zit_agent.backends import writers as writers_module

    loads = []

    def load_writer(spec, **options):
        loads.append(spec)
        return FakeWriter(qwen_tokenizer)

    monkeypatch.setattr(writers_module, "load_writer", load_writer)
    data = sketch_suite(
        writer="gguf:some.gguf",
        configs={"expanded": {"strategy": "expanded"}, "think": {"strategy": "think"}},
        baseline="expanded",
    )
    suite = Suite.model_validate(data)
    context = RunContext(suite, tokenizer=qwen_tokenizer)
    run_suite(suite, tmp_path / "run", quiet=True, context=context)  # 2 ideas x 2 configs x 2 seeds
    assert loads == ["gguf:some.gguf"]
    assert context.backend is context.backend and context.embedder is context.embedder


def test_raw_keys_do_not_depend_on_the_suite_writer():
    plain = plan(Suite.model_validate(sketch_suite()))
    with_writer = plan(Suite.model_validate(sketch_suite(writer="gguf:other.gguf")))
    assert [j.key for j in plain] == [j.key for j in with_writer]


def test_a_suite_takes_max_tokens_from_zit_toml_as_zit_generate_does(
    tmp_path, qwen_tokenizer, monkeypatch, zit_home
):
    from zit_agent.settings import load_settings

    cfg = tmp_path / "zit.toml"
    cfg.write_text("[render]\nmax_tokens = 700\n")
    monkeypatch.setenv("ZIT_CONFIG", str(cfg))
    suite = Suite.model_validate(
        sketch_suite(
            configs={"raw": {"strategy": "raw"}, "agent": {"strategy": "agent"}},
            ideas=[{"id": "fox", "text": "a red fox in the snow"}],
        )
    )
    context = RunContext(suite, tokenizer=qwen_tokenizer, settings=load_settings())
    run_suite(suite, tmp_path / "run", quiet=True, context=context)
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    assert {(r["config"], r["sequence"]["max_tokens"]) for r in records} == {
        ("raw", 700),
        ("agent", 700),
    }
    # A config's own budget still wins.
    own = Suite.model_validate(sketch_suite(configs={"raw": {"strategy": "raw", "max_tokens": 64}}))
    assert (
        RunContext(own, tokenizer=qwen_tokenizer, settings=load_settings()).max_tokens(
            own.configs["raw"]
        )
        == 64
    )


class _UnsaidVocabulary(FakeWriter):
    """A writer that does not report its vocabulary (as one that sends only text, over HTTP)."""

    @property
    def fingerprint(self):
        return None


def test_a_config_takes_a_writer_of_another_vocabulary_only_with_retokenize(
    tmp_path, qwen_tokenizer
):
    from zit_agent.errors import UserError

    def suite_of(**config):
        configs = {
            "raw": {"strategy": "raw"},
            "expanded": {"strategy": "expanded", **config},
            "agent": {"strategy": "agent", "max_attempts": 1, **config},
        }
        ideas = sketch_suite()["ideas"][:1]
        return Suite.model_validate(sketch_suite(writer="other:x", configs=configs, ideas=ideas))

    def run(suite, out):
        writer = _UnsaidVocabulary(qwen_tokenizer)
        context = RunContext(suite, tokenizer=qwen_tokenizer, writers={"other:x": writer})
        run_suite(suite, out, quiet=True, context=context)

    with pytest.raises(UserError, match="does not report its vocabulary"):
        run(suite_of(), tmp_path / "refused")
    run(suite_of(retokenize=True), tmp_path / "run")
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    written = [r for r in records if r["config"] == "expanded"]
    assert len(written) == 2 and all(r["writer"]["retokenized"] for r in written)
    assert {r["config"] for r in records} == {"raw", "expanded", "agent"}
