"""The agent graph with the fake writer and the sketch renderer: a rut is detected and escaped
within the attempt limit, the levers are recorded, and with ruts off the idea renders once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.agent_fixtures import IDEA, initial_state, sketch_context
from zit_agent.agent.graph import build_graph, run_agent
from zit_agent.agent.report import summary
from zit_agent.backends.provenance import read_record


@pytest.fixture()
def fake_writer(qwen_tokenizer):
    from zit_agent.backends.writers.fake import FakeWriter

    return FakeWriter(qwen_tokenizer)


def test_the_default_idea_falls_into_a_rut_and_the_agent_escapes(
    qwen_tokenizer, fake_writer, tmp_path
):
    context = sketch_context(qwen_tokenizer, tmp_path, writer=fake_writer)
    final = run_agent(initial_state(shape="think", max_attempts=4), context)
    result = summary(final)

    first, last = final.attempts[0], final.attempts[-1]
    assert first.scores.verdict == "rut"
    assert {"shot_size", "camera_angle"} <= set(first.scores.axes)
    assert result["ruts_detected"] == 1 and result["ruts_escaped"] == 1
    assert result["final_verdict"] == "ok" and not result["exhausted"]
    assert 2 <= result["attempts"] <= 4
    # The lever that got it out is recorded with its effect.
    vary = next(lever for lever in last.levers if lever.name == "vary")
    assert vary.effect.startswith("rut -> ok")
    assert last.scores.mean_similarity < first.scores.mean_similarity
    # Each escaped image states its own values (the fake writer only echoes the idea, so the
    # agent stated them itself) and the images are the final ones returned.
    stated = [shot.description.stated_axes.get("shot_size") for shot in last.shots]
    assert len(set(stated)) == len(stated) == 4
    assert all(shot.description.agent_stated for shot in last.shots)
    assert result["images"] == last.images and all(Path(p).is_file() for p in last.images)


def test_the_writer_is_asked_to_vary_the_named_axes(qwen_tokenizer, fake_writer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path, writer=fake_writer)
    run_agent(initial_state(shape="think", n=2), context)

    systems = [call.messages[0].content for call in fake_writer.history]
    assert systems[0] != systems[1]  # expand first, then vary
    vary_request = fake_writer.history[1].messages[-1].content
    assert "shot size:" in vary_request and "camera angle:" in vary_request


def test_writer_ids_reach_the_sequence_verbatim_and_writer_ruts_push_temperature(
    qwen_tokenizer, fake_writer, tmp_path
):
    answer = "A woman reads by the cafe window, steam rising from a cup."
    fake_writer.enqueue(answer, think="Keep it quiet.")
    context = sketch_context(qwen_tokenizer, tmp_path, writer=fake_writer)
    final = run_agent(initial_state(shape="think", n=2), context)

    ids = fake_writer.tokenizer.encode_text(answer)
    sequence = final.attempts[0].shots[0].sequence_ids
    assert any(sequence[i : i + len(ids)] == ids for i in range(len(sequence)))
    # The fake writer then echoes the idea for every variation: a writer rut.
    escaped = final.attempts[1]
    assert escaped.levers[-1].name == "writer"
    assert final.temperature > 0.7
    assert fake_writer.history[-1].sampling.temperature == pytest.approx(0.7)  # pushed for later


def test_with_ruts_off_the_idea_renders_once(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path)
    final = run_agent(initial_state(ruts=False, n=3), context)
    result = summary(final)

    assert result["attempts"] == 1 and result["final_verdict"] is None
    assert result["ruts_detected"] == 0 and len(result["images"]) == 3
    assert "judge" not in context.on_event.kinds()
    record = read_record(result["images"][0])
    assert record["idea"] == IDEA and record["agent"]["attempt"] == 1


def test_every_image_is_recorded_in_the_history_store(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path)
    final = run_agent(initial_state(n=2), context)

    stored = context.store.images(idea=IDEA)
    assert [row.path for row in stored] == [p for a in final.attempts for p in a.images]
    assert context.store.rut_events(idea=IDEA)  # the rut was logged too


def test_the_graph_is_built_by_a_factory_not_at_import():
    from zit_agent.agent import graph as agent_graph

    assert not any(hasattr(agent_graph, n) for n in ("graph", "app", "compiled"))
    nodes = set(build_graph().nodes)
    assert {"write", "assemble", "render", "embed", "judge", "escape", "finish"} <= nodes


def test_the_novelty_memory_spans_runs_of_the_same_idea(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path)
    first = run_agent(initial_state(n=3, ladder=["vary"], run_id="one"), context)
    second = run_agent(initial_state(n=3, ladder=["vary"], run_id="two"), context)

    def sizes(final) -> set[str]:
        return {shot.description.stated_axes["shot_size"] for shot in final.attempts[1].shots}

    assert len(sizes(first)) == len(sizes(second)) == 3
    assert not sizes(first) & sizes(second)  # the same seeds, yet fresh values
