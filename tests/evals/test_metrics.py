"""Metrics on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from zit_agent.backends.embedders import HashEmbedder
from zit_agent.evals.metrics import (
    aggregate,
    attribute_retention,
    bootstrap_interval,
    diversity,
    paired_difference,
)


def test_bootstrap_of_equal_values_is_a_point():
    interval = bootstrap_interval([0.4] * 5)
    assert (interval.mean, interval.low, interval.high, interval.n) == (0.4, 0.4, 0.4, 5)


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    few = bootstrap_interval(list(rng.normal(1.0, 0.5, 10)))
    many = bootstrap_interval(list(rng.normal(1.0, 0.5, 400)))
    assert few.low < few.mean < few.high
    assert many.low < 1.0 < many.high
    assert many.high - many.low < few.high - few.low
    assert bootstrap_interval([]) is None
    assert bootstrap_interval([1.0, 2.0]) == bootstrap_interval([1.0, 2.0])  # seeded


def test_paired_difference_cancels_the_spread_between_ideas():
    baseline = {"a": 0.1, "b": 0.5, "c": 0.9}
    better = {k: v + 0.2 for k, v in baseline.items()}
    diff = paired_difference(better, baseline)
    assert diff.mean == pytest.approx(0.2) and diff.low == pytest.approx(0.2)
    # ideas measured under only one configuration are left out of the pairing
    assert paired_difference({**better, "d": 5.0}, baseline).mean == pytest.approx(0.2)


def test_identical_images_have_no_diversity():
    figures = diversity(np.tile(np.eye(8)[0], (4, 1)), HashEmbedder())
    assert figures["mean_distance"] == pytest.approx(0.0)
    assert figures["vendi"] == pytest.approx(1.0)
    assert figures["near_duplicate_rate"] == 1.0
    assert figures["verdict"] == "rut"


def test_orthogonal_images_are_as_diverse_as_their_count():
    figures = diversity(np.eye(8)[:4], HashEmbedder())
    assert figures["mean_distance"] == pytest.approx(1.0)
    assert figures["vendi"] == pytest.approx(4.0)
    assert figures["near_duplicate_rate"] == 0.0
    assert figures["verdict"] == "ok"


def test_attribute_retention_counts_whole_words():
    locked = ["red fox", "snow", "lantern"]
    assert attribute_retention(locked, "A Red Fox sits in deep snow.") == pytest.approx(2 / 3)
    assert attribute_retention(locked, "a reddish fox on snowy ground") == 0.0
    assert attribute_retention([], "anything") is None


def test_aggregate_gives_intervals_rut_rate_and_paired_differences():
    def figures(distance: float, rut: float) -> dict:
        return {"mean_distance": distance, "rut": rut, "fidelity": 1.0}

    groups = {
        "raw": {"a": figures(0.1, 1.0), "b": figures(0.3, 1.0), "c": figures(0.2, 0.0)},
        "agent": {"a": figures(0.5, 0.0), "b": figures(0.7, 0.0), "c": figures(0.6, 0.0)},
    }
    out = aggregate(groups, baseline="raw")
    assert out["raw"]["rut_rate"]["interval"]["mean"] == pytest.approx(2 / 3)
    assert out["raw"]["mean_distance"]["vs_baseline"] is None
    diff = out["agent"]["mean_distance"]["vs_baseline"]
    assert diff["mean"] == pytest.approx(0.4) and diff["low"] == pytest.approx(0.4)
    assert out["agent"]["rut_rate"]["vs_baseline"]["mean"] == pytest.approx(-2 / 3)
    assert out["agent"]["vendi"]["interval"] is None  # not measured: no interval, no crash
