"""Rut kinds on analyzer observations (identity, shot, angle beside layout) and the levers they pull.

The agent-logic tests use a scripted analyzer (observations handed in, no model); the real face
models are tested on real photographs in tests/backends/test_analyzers.py.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from tests.agent.agent_fixtures import initial_state, sketch_context
from zit_agent.agent import escape, ruts
from zit_agent.agent.graph import run_agent
from zit_agent.agent.report import run_page, summary
from zit_agent.backends.analyzers import Observation, make_face

SIZE = (400, 400)


def person(index: int) -> list[float]:
    """A descriptor per person: people 1.0 apart (dlib's same-person threshold is 0.6)."""
    vector = np.zeros(128)
    vector[index] = 1.0 / np.sqrt(2)
    return list(vector)


def seen(who: int | None, *, height: int = 100, left: int = 150, nose: float = 0.0) -> Observation:
    """An image with one face (`who`: the person; `height`: the box's height in a 400 px image;
    `nose`: the nose's sideways offset in eye distances, a yaw) or none."""
    faces = []
    if who is not None:
        top = 100
        box = [left, top, left + height, top + height]
        eye_y, cx = top + 0.35 * height, left + height / 2
        e = 0.4 * height
        points = [
            [cx + 0.7 * e, eye_y], [cx + 0.3 * e, eye_y], [cx - 0.7 * e, eye_y],
            [cx - 0.3 * e, eye_y], [cx + nose * e, eye_y + 0.75 * e],
        ]  # fmt: skip
        faces = [make_face(box, 1.5, points, person(who), SIZE)]
    return Observation(analyzer="scripted", width=SIZE[0], height=SIZE[1], faces=faces)


class ScriptedAnalyzer:
    """An analyzer that returns queued observations, one per image, in the order it is asked."""

    name = "scripted"

    def __init__(self, *observations: Observation):
        self.queue = deque(observations)
        self.calls = 0

    def analyze(self, images):
        self.calls += len(images)
        return [self.queue.popleft() for _ in images]


LABELS = [f"img{i}.png" for i in range(4)]


def varied(who: int, i: int) -> Observation:
    """Person `who` in the i-th of four different shot sizes and head turns."""
    return seen(who, height=90 + 40 * i, nose=[0.0, 0.3, -0.3, 1.2][i])


# -- the kinds -----------------------------------------------------------------------------------
def test_one_person_in_every_image_is_an_identity_rut_with_the_faces_clustered():
    kinds = ruts.judge_kinds([seen(0), seen(0), seen(0), seen(1)], LABELS)
    identity = kinds["identity"]
    assert identity.verdict == "rut" and identity.share == 0.75
    assert identity.clusters == [LABELS[:3]]
    assert [f["person"] for f in identity.faces] == [0, 0, 0, 1]


def test_different_people_read_ok_and_no_faces_read_unmeasured():
    assert ruts.judge_kinds([seen(i) for i in range(4)], LABELS)["identity"].verdict == "ok"
    none = ruts.judge_kinds([seen(None)] * 3 + [seen(0)], LABELS)
    assert {k: r.verdict for k, r in none.items()} == dict.fromkeys(
        ruts.MEASURED_KINDS, "unmeasured"
    )


def test_half_the_images_with_one_person_is_a_warning():
    kinds = ruts.judge_kinds([seen(0), seen(0), seen(1), seen(2)], LABELS)
    assert kinds["identity"].verdict == "warn"


def test_shot_bins_by_face_height_and_a_dominant_bin_is_a_rut():
    kinds = ruts.judge_kinds([seen(i, height=h) for i, h in enumerate([240, 140, 90, 20])], LABELS)
    assert kinds["shot"].bins == {
        "extreme close-up": 1, "close-up": 1, "medium close-up": 1, "wide shot": 1,
    }  # fmt: skip
    assert kinds["shot"].verdict == "ok" and kinds["shot"].entropy == pytest.approx(2.0)
    same = ruts.judge_kinds([seen(i, height=90) for i in range(4)], LABELS)["shot"]
    assert same.verdict == "rut" and same.dominant == "medium close-up" and same.entropy == 0.0
    assert same.sub_bins["framing"] == {"centre": 4}


def test_angle_bins_from_the_nose_offset():
    turned = [seen(i, nose=n) for i, n in enumerate([0.0, 0.3, -0.3, 1.2])]
    angle = ruts.judge_kinds(turned, LABELS)["angle"]
    assert angle.sub_bins["yaw"] == {"frontal": 1, "three-quarter": 2, "profile": 1}
    assert angle.verdict == "ok"
    frontal = ruts.judge_kinds([seen(i) for i in range(4)], LABELS)["angle"]
    assert frontal.verdict == "rut" and frontal.dominant == "frontal, eye level"


def test_the_overall_verdict_is_the_worst_measured_kind():
    report = ruts.judge(
        np.eye(4, dtype=np.float32), embedder="hash", thresholds=ruts.thresholds_for("hash")
    )
    assert report.verdict == "ok"
    stuck = ruts.with_kinds(report, ruts.judge_kinds([seen(0)] * 4, LABELS))
    assert stuck.verdict == "rut" and stuck.kinds["layout"].verdict == "ok"
    assert stuck.reason.startswith("identity rut: one person in 4 of 4")
    unmeasured = ruts.with_kinds(report, ruts.unmeasured_kinds("no dlib", 4))
    assert unmeasured.verdict == "ok" and unmeasured.kinds["shot"].verdict == "unmeasured"


def test_the_wider_window_names_a_person_seen_for_another_idea():
    kinds = ruts.judge_kinds(
        [seen(1), seen(2), seen(3), seen(0)], LABELS, wider=[seen(4), seen(0)],
        wider_labels=["other/a.png", "other/b.png"],
    )  # fmt: skip
    assert kinds["identity"].verdict == "warn" and kinds["identity"].wider == "other/b.png"


# -- levers by kind ------------------------------------------------------------------------------
def test_kind_plan_varies_person_axes_and_avoids_the_measured_bins():
    kinds = {
        k: r.model_dump() for k, r in ruts.judge_kinds([seen(0, height=90)] * 4, LABELS).items()
    }
    plan = escape.kind_plan(kinds, "a portrait of a woman in a cafe")
    assert plan.kinds == ["identity", "shot", "angle"]
    assert "gender_presentation" not in plan.axes  # the idea states it: its core stays
    assert plan.axes[:3] == ["subject_age", "ethnicity", "hair"]
    assert plan.avoid == {
        "shot_size": ["medium close-up"], "framing": ["centered"], "camera_angle": ["eye level"],
    }  # fmt: skip
    assert "different person" in plan.feedback and "4 of 4" in plan.feedback


@pytest.fixture()
def no_layout_ruts(monkeypatch):
    """Let only the measured kinds decide: the layout thresholds can never be reached."""
    unreachable = ruts.Thresholds(warn=1.0, rut=1.0, duplicate=1.0)
    monkeypatch.setattr(ruts, "thresholds_for", lambda family: unreachable)


@pytest.fixture()
def fake_writer(qwen_tokenizer):
    from zit_agent.backends.writers.fake import FakeWriter

    return FakeWriter(qwen_tokenizer)


@pytest.mark.usefixtures("no_layout_ruts")
def test_an_identity_rut_escapes_with_a_person_lever_and_the_report_says_it_moved(
    qwen_tokenizer, fake_writer, tmp_path
):
    # The first attempt shows one person four times, the next four different people (shot sizes
    # and head turns vary throughout: only identity is stuck).
    first_set = [varied(0, i) for i in range(4)]
    analyzer = ScriptedAnalyzer(*first_set, *[varied(i + 1, i) for i in range(4)])
    context = sketch_context(qwen_tokenizer, tmp_path, writer=fake_writer)
    context.analyzer = analyzer
    final = run_agent(initial_state(max_attempts=3), context)

    first, second = final.attempts
    assert first.scores.kinds["identity"]["verdict"] == "rut"
    assert first.scores.kinds["layout"]["verdict"] == "ok" and first.scores.verdict == "rut"
    vary = next(lever for lever in second.levers if lever.name == "vary")
    assert vary.values["kinds"] == ["identity"]
    assert set(vary.values["axes"]) <= set(escape.PERSON_AXES)
    # the writer was told to describe a different person
    assert "different person" in fake_writer.history[-1].messages[-1].content
    assert second.scores.kinds["identity"]["verdict"] == "ok" and final.final_verdict == "ok"
    assert "identity rut -> ok (moved" in vary.effect
    per_attempt = summary(final)["per_attempt"]
    assert per_attempt[1]["scores"]["kinds"]["identity"]["verdict"] == "ok"
    # the HTML page shows the kinds and the recurring face, cropped from each image
    page = run_page(final, tmp_path / "index.html")
    assert "Person 1, in 4 images" in page and page.count("class='face'") == 4
    assert "reading (measured)" in page and "as stated, not measured" in page


@pytest.mark.usefixtures("no_layout_ruts")
def test_an_identity_rut_that_stays_says_it_did_not_move(qwen_tokenizer, tmp_path):
    analyzer = ScriptedAnalyzer(*[varied(0, i % 4) for i in range(8)])
    context = sketch_context(qwen_tokenizer, tmp_path)
    context.analyzer = analyzer
    final = run_agent(initial_state(max_attempts=2), context)
    lever = final.attempts[1].levers[0]
    assert "identity rut -> rut (did not move" in lever.effect and final.exhausted


def test_without_an_analyzer_the_kinds_say_why_and_layout_still_judges(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path)
    context.analyzer_note = "face analysis needs dlib: pip install dlib-bin"
    final = run_agent(initial_state(max_attempts=1), context)
    kinds = final.attempts[0].scores.kinds
    assert kinds["layout"]["verdict"] == "rut" == final.attempts[0].scores.verdict
    assert kinds["identity"] == {**kinds["identity"], "verdict": "unmeasured"}
    assert "pip install dlib-bin" in kinds["identity"]["reason"]


def test_observations_are_cached_by_content_hash(tmp_path):
    from PIL import Image

    from zit_agent.agent.history import HistoryStore

    analyzer = ScriptedAnalyzer(seen(0), seen(None))
    with HistoryStore(tmp_path / "history.sqlite") as store:
        first = store.observations(["a", "b", "a"], analyzer, lambda h: Image.new("RGB", (8, 8)))
        again = store.observations(["b", "a"], analyzer, lambda h: 1 / 0)  # nothing is loaded
    assert analyzer.calls == 2 and [len(o.faces) for o in first] == [1, 0, 1]
    assert again == first[1::-1]


@pytest.mark.usefixtures("no_layout_ruts")
def test_a_person_from_another_idea_is_named_through_the_wider_window(qwen_tokenizer, tmp_path):
    analyzer = ScriptedAnalyzer(*[varied(i + 1, i) for i in range(4)],  # idea A: people 1-4
                                *[varied(i + 5, i) for i in range(3)], varied(1, 3))  # fmt: skip
    context = sketch_context(qwen_tokenizer, tmp_path)
    context.analyzer = analyzer
    first = run_agent(initial_state(max_attempts=1), context)
    assert first.attempts[0].scores.kinds["identity"]["verdict"] == "ok"
    other = run_agent(initial_state(idea="a man on a bicycle", run_id="b", max_attempts=1), context)
    identity = other.attempts[0].scores.kinds["identity"]
    assert identity["verdict"] == "warn" and identity["wider"] == first.attempts[0].images[0]
    assert analyzer.calls == 8  # the wider window's images were not analysed again


# -- the lever a kind tries first (issue 25) -----------------------------------------------------
def test_a_stuck_kind_takes_its_first_lever_out_of_ladder_order():
    rut = {"verdict": "rut"}
    ladder = ["shorter", "vary", "candidates", "early"]
    assert escape.choose_lever(ladder, 0, {"identity": rut}, set()) == ("vary", "identity")
    assert escape.choose_lever(ladder, 0, {"shot": rut}, set()) == ("candidates", "shot")
    assert escape.choose_lever(ladder, 0, {"layout": rut}, {"candidates"}) == ("early", "layout")
    # nothing the kind prefers left (or in the ladder), a warning, or no kinds: the ladder's order
    assert escape.choose_lever(ladder, 1, {"angle": rut}, {"candidates", "early"}) == ("vary", None)
    assert escape.choose_lever(["shorter", "seeds"], 0, {"shot": rut}, set()) == ("shorter", None)
    assert escape.choose_lever(ladder, 0, {"shot": {"verdict": "warn"}}, set()) == ("shorter", None)
    assert escape.choose_lever(ladder, 0, {}, set()) == ("shorter", None)


@pytest.mark.usefixtures("no_layout_ruts")
def test_a_shot_rut_tries_candidates_before_the_ladders_first_step(qwen_tokenizer, tmp_path):
    # Four different people, all medium close-ups: only the shot kind is stuck.
    analyzer = ScriptedAnalyzer(*[seen(i, height=90) for i in range(4)] * 20)
    context = sketch_context(qwen_tokenizer, tmp_path)
    context.analyzer = analyzer
    final = run_agent(initial_state(max_attempts=2, ladder=["shorter", "candidates"]), context)
    first, second = final.attempts
    assert first.scores.kinds["shot"]["verdict"] == "rut"
    assert first.scores.kinds["identity"]["verdict"] == "ok"
    lever = second.levers[0]
    assert lever.name == "candidates" and lever.detail.endswith("(first for the shot rut)")


@pytest.mark.usefixtures("no_layout_ruts")
def test_an_identity_rut_varies_the_person_before_the_ladders_first_step(
    qwen_tokenizer, fake_writer, tmp_path
):
    analyzer = ScriptedAnalyzer(
        *[varied(0, i) for i in range(4)], *[varied(i + 1, i) for i in range(4)]
    )
    context = sketch_context(qwen_tokenizer, tmp_path, writer=fake_writer)
    context.analyzer = analyzer
    final = run_agent(initial_state(max_attempts=2, ladder=["shorter", "vary"]), context)
    lever = final.attempts[1].levers[0]
    assert lever.name == "vary" and lever.detail.endswith("(first for the identity rut)")
