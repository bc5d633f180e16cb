"""The escape ladder: which axes change, novelty memory, the agent stating values itself,
shorter descriptions, render levers in a configurable order, writer-side ruts, and the most
varied set when attempts run out."""

from __future__ import annotations

import pytest

from tests.agent.agent_fixtures import ConstantBackend, initial_state, sketch_context
from zit_agent.agent import escape
from zit_agent.agent.graph import run_agent
from zit_agent.agent.report import summary
from zit_agent.agent.state import Description, RenderKnobs, Shot


def test_axes_to_vary_keep_the_ideas_core_and_put_composition_first():
    named = ["setting", "lens", "lighting", "camera_angle", "shot_size", "framing"]
    chosen = escape.axes_to_vary(named, "a portrait of a woman in a cafe")
    assert chosen == ["shot_size", "camera_angle", "framing"]  # cafe (setting) is the idea's
    assert escape.axes_to_vary([], "a cat")[:2] == ["shot_size", "camera_angle"]
    # In chat the person's words are core too: "at night" keeps the time of day.
    assert "time_of_day" not in escape.axes_to_vary(["time_of_day", "lens"], "a cat at night")


def test_new_values_differ_per_image_and_avoid_recent_ones():
    memory = {"shot_size": ["close-up", "wide shot"]}
    picked = escape.choose_values(["shot_size", "camera_angle"], memory, count=4, seed=3)
    sizes = [p["shot_size"] for p in picked]
    assert len(set(sizes)) == 4
    assert not {"close-up", "wide shot"} & set(sizes)
    assert escape.choose_values(["shot_size"], memory, 4, seed=3) == [
        {"shot_size": s} for s in sizes
    ]  # seeded


def test_the_agent_states_missing_values_after_the_writers_ids(qwen_tokenizer):
    writer_ids = qwen_tokenizer.encode_text("A woman at a table")
    draft = Description(text="A woman at a table", ids=writer_ids, writer="w")
    wanted = {"shot_size": "wide shot", "camera_angle": "low angle"}

    stated = escape.state_axes(draft, wanted, qwen_tokenizer)
    ids = escape.content_ids(stated, qwen_tokenizer)
    assert ids[: len(writer_ids)] == writer_ids  # the writer's ids untouched, first
    assert stated.agent_stated == wanted
    assert (
        qwen_tokenizer.decode(ids)
        == stated.full_text
        == "A woman at a table. Wide shot, low angle."
    )
    assert {k: stated.stated_axes[k] for k in wanted} == wanted

    already = Description(text="A wide shot from a low angle of a woman", writer="w")
    assert escape.state_axes(already, wanted, qwen_tokenizer).agent_phrase == ""


def test_shorter_halves_the_description_and_keeps_the_varied_axes(qwen_tokenizer):
    text = (
        "A woman sits by the window of a small cafe. Rain runs down the glass behind her. "
        "Her coat hangs on the chair and a cup of coffee cools on the marble table. "
        "The street outside is grey and busy with umbrellas."
    )
    desc = escape.state_axes(
        Description(text=text, ids=qwen_tokenizer.encode_text(text), writer="w"),
        {"shot_size": "close-up"},
        qwen_tokenizer,
    )
    shot = Shot(description=desc, sequence_ids=[1, 2], seeds=[7])
    (short,), lever = escape.shorter([shot], qwen_tokenizer)

    assert lever.values["after"] < lever.values["before"] * 0.75
    assert short.description.stated_axes["shot_size"] == "close-up"
    assert short.description.ids == desc.ids[: len(short.description.ids)]  # a verbatim prefix
    assert short.description.text.endswith(".")  # cut at a sentence end
    assert short.sequence_ids == []  # assembled again


def test_render_levers():
    knobs, lever = escape.noise(RenderKnobs(), attempt_number=3)
    assert knobs.noise == escape.NOISE_STRENGTH and knobs.noise_seed == 3 and lever.name == "noise"
    knobs, lever = escape.layer(knobs)
    assert knobs.layer == -3 and lever.values == {"from": -2, "to": -3}
    shots, lever = escape.new_seeds([Shot(description=Description(text="x"), seeds=[1, 2])], 2)
    assert shots[0].seeds == [2001, 2002] and lever.values["seeds"] == [2001, 2002]


def test_writer_ruts_raise_temperature_and_add_an_avoid_list(qwen_tokenizer):
    def desc(text: str) -> Description:
        return Description(text=text, ids=qwen_tokenizer.encode_text(text), writer="w")

    same = [desc("a woman in a cafe, soft window light, warm tones") for _ in range(3)]
    found = escape.writer_rut(same, [], 0.7, "a woman in a cafe", qwen_tokenizer)
    assert found.overlap == 1.0 and found.temperature == pytest.approx(1.0)
    assert {"soft", "window", "light", "warm", "tones"} <= set(found.avoid)
    assert "woman" not in found.avoid  # the idea's own words stay

    varied = [desc("rain on a neon street"), desc("a quiet library at dawn"), desc("desert dunes")]
    assert escape.writer_rut(varied, [], 0.7, "x", qwen_tokenizer) is None
    assert (
        escape.writer_rut(same, [], 1.4, "x", qwen_tokenizer).temperature == escape.MAX_TEMPERATURE
    )


def test_the_ladder_runs_in_the_configured_order_and_returns_the_most_varied_set(
    qwen_tokenizer, tmp_path
):
    backend = ConstantBackend()  # every attempt is a rut
    context = sketch_context(qwen_tokenizer, tmp_path, backend=backend)
    final = run_agent(
        initial_state(ladder=["noise", "layer", "seeds"], max_attempts=4, n=2), context
    )
    result = summary(final)

    assert [lv.name for a in final.attempts[1:] for lv in a.levers] == ["noise", "layer", "seeds"]
    options = [call[2] for call in backend.calls]
    assert options[0].noise is None and options[1].noise.strength == escape.NOISE_STRENGTH
    assert options[1].layer == -2 and options[2].layer == -3
    assert backend.calls[3][1] != backend.calls[0][1]  # new seeds
    assert all(lv.effect.startswith("rut -> rut") for a in final.attempts[1:] for lv in a.levers)
    assert result["exhausted"] and result["attempts"] == 4
    assert "attempts ran out" in result["message"] and "most varied" in result["message"]
    assert result["ruts_detected"] == 1 and result["ruts_escaped"] == 0
    assert result["images"] == final.attempts[final.final_attempt].images


def test_vary_works_without_a_writer(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path)
    final = run_agent(initial_state(ladder=["vary"], n=3), context)

    assert final.final_verdict == "ok"
    texts = [shot.description.full_text for shot in final.attempts[1].shots]
    assert all(t.startswith("a portrait of a woman in a cafe. ") for t in texts)
    assert len(set(texts)) == 3


def test_most_varied_prefers_the_highest_vendi():
    from zit_agent.agent.state import Attempt, Scores

    def attempt(n: int, vendi: float) -> Attempt:
        scores = Scores(verdict="rut", vendi=vendi, mean_similarity=1 / vendi)
        return Attempt(number=n, shots=[], knobs=RenderKnobs(), scores=scores)

    assert escape.most_varied([attempt(1, 1.1), attempt(2, 2.5), attempt(3, 1.9)]) == 1
