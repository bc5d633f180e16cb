"""The axis reader: which values a description states, and what a set of descriptions shares."""

from __future__ import annotations

import pytest

from zit_agent import axes
from zit_agent.errors import UserError


def test_reads_the_values_a_description_states():
    text = "An extreme close-up of an elderly Korean woman laughing at dawn, low angle, warm tones"
    assert axes.read_axes(text) == {
        "shot_size": "extreme close-up",
        "camera_angle": "low angle",
        "time_of_day": "dawn",
        "palette": "warm",
        "subject_age": "elderly",
        "gender_presentation": "feminine",
        "ethnicity": "east asian",
        "expression": "laughing",
    }


def test_longer_phrases_win_and_words_match_whole():
    assert axes.read_axes("early morning")["time_of_day"] == "dawn"  # not "morning"
    assert axes.read_axes("a medium close-up")["shot_size"] == "medium close-up"
    assert "gender_presentation" not in axes.read_axes("a snowman")  # "man" inside a word
    assert axes.read_axes("seen from a bird\u2019s-eye view")["camera_angle"] == "bird's-eye view"


def test_a_description_without_choices_states_nothing():
    assert axes.read_axes("a cat") == {}


def test_stated_values_lists_every_value_in_order():
    assert axes.stated_values("a close-up, then a wide shot", "shot_size") == [
        "close-up",
        "wide shot",
    ]


def test_summary_names_unstated_and_repeated_axes():
    texts = ["a close-up of a woman in a forest", "a close-up of a woman on a beach"]
    summary = axes.summarize(texts)
    assert summary.repeated == {"shot_size": "close-up", "gender_presentation": "feminine"}
    assert "setting" not in summary.repeated and "setting" not in summary.unstated
    assert "camera_angle" in summary.unstated and "pose" in summary.unstated
    assert summary.to_vary[:2] == ["shot_size", "gender_presentation"]


def test_person_axes_count_only_when_people_are_shown():
    summary = axes.summarize(["a red apple on a table", "a green apple on a table"])
    assert "camera_angle" in summary.unstated
    assert not {"pose", "expression", "ethnicity", "hair"} & set(summary.unstated)
    assert "pose" in axes.summarize(["a portrait of a dancer"]).unstated
    assert not axes.shows_people("an empty street at night, no people")


def test_pick_values_avoids_recent_values_and_is_seeded():
    recent = ["medium shot", "close-up"]
    picked = axes.pick_values("shot_size", avoid=recent, k=3, seed=1)
    assert len(picked) == 3 and not set(picked) & set(recent)
    assert picked == axes.pick_values("shot_size", avoid=recent, k=3, seed=1)
    everything = axes.values("shot_size")
    # With every value used, the oldest used comes back first.
    assert axes.pick_values("shot_size", avoid=everything, k=1) == [everything[0]]


def test_missing_reports_wanted_values_the_text_does_not_state():
    text = "a wide shot of a fisherman, low angle"
    wanted = {"shot_size": "wide shot", "camera_angle": "high angle", "count": "two"}
    assert axes.missing(text, wanted) == {"camera_angle": "high angle", "count": "two"}


def test_unknown_axes_and_values_are_user_errors():
    with pytest.raises(UserError, match="unknown axis"):
        axes.values("mood")
    with pytest.raises(UserError, match="unknown value"):
        axes.missing("x", {"shot_size": "huge"})


def test_vocabulary_covers_the_axes_and_no_phrase_is_ambiguous():
    loaded = axes.load_axes()
    assert {"shot_size", "camera_angle", "lens", "framing", "lighting", "time_of_day", "setting",
            "palette", "subject_age", "gender_presentation", "ethnicity", "hair", "clothing",
            "pose", "expression", "count"} == set(loaded)  # fmt: skip
    for axis in loaded.values():
        assert len(axis.values) >= 3, axis.name
        phrases = [p for ps in axis.values.values() for p in ps]
        duplicated = {p for p in phrases if phrases.count(p) > 1}
        assert not duplicated, (axis.name, duplicated)


def test_negated_phrases_are_not_stated():
    from zit_agent.axes import read_axes, stated_values

    assert "shot_size" not in read_axes("a portrait of a sailor, not a close-up")
    assert stated_values("a wide shot rather than a close-up", "shot_size") == ["wide shot"]
    assert stated_values("a close-up, not a wide shot", "shot_size") == ["close-up"]
    # A negation in another clause does not reach the phrase.
    assert stated_values("no hat, close-up of her face", "shot_size") == ["close-up"]
