"""The rut detector on synthetic image sets (hash embedder) and on plain vectors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from zit_agent.agent.ruts import (
    Thresholds,
    duplicate_clusters,
    judge,
    similarity_matrix,
    thresholds_for,
    vendi_score,
)
from zit_agent.backends.embedders import HashEmbedder

HASH = thresholds_for("hash")


def layout(shapes: list[tuple[float, float, float]], seed: int, jitter: float) -> Image.Image:
    """Discs at (x, y, radius) in frame shares, each moved by up to `jitter`, colours varied."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (128, 128), tuple(int(c) for c in rng.integers(150, 190, 3)))
    draw = ImageDraw.Draw(image)
    for x, y, r in shapes:
        x, y = x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter)
        colour = tuple(int(c) for c in rng.integers(0, 80, 3))
        draw.ellipse([128 * (x - r), 128 * (y - r), 128 * (x + r), 128 * (y + r)], fill=colour)
    return image


def random_layout(seed: int) -> list[tuple[float, float, float]]:
    rng = np.random.default_rng(1000 + seed)
    return [tuple(rng.uniform([0.1, 0.1, 0.08], [0.9, 0.9, 0.3])) for _ in range(3)]


@pytest.fixture(scope="module")
def one_layout_jittered() -> np.ndarray:
    shapes = [(0.5, 0.4, 0.2), (0.3, 0.8, 0.1)]
    return HashEmbedder().embed([layout(shapes, seed, jitter=0.015) for seed in range(8)])


@pytest.fixture(scope="module")
def different_layouts() -> np.ndarray:
    return HashEmbedder().embed([layout(random_layout(s), s, jitter=0) for s in range(8)])


def test_one_layout_with_small_jitter_is_a_rut(one_layout_jittered):
    report = judge(one_layout_jittered, embedder="hash", thresholds=HASH)
    assert report.verdict == "rut" and report.reading == "rut"
    assert report.mean_similarity >= HASH.rut
    assert report.vendi < 2.5  # about two different images' worth out of eight
    assert report.embedder == "hash" and report.thresholds == HASH


def test_clearly_different_layouts_are_ok(different_layouts):
    report = judge(different_layouts, embedder="hash", thresholds=HASH)
    assert report.verdict == "ok"
    assert report.mean_similarity < HASH.warn
    assert report.vendi > 4.0
    assert report.near_duplicate_rate == 0.0 and report.clusters == []


def test_vendi_score_at_its_limits():
    identical = np.tile([[0.6, 0.8]], (5, 1))
    assert vendi_score(similarity_matrix(identical)) == pytest.approx(1.0)
    assert vendi_score(similarity_matrix(np.eye(6))) == pytest.approx(6.0)
    two_pairs = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    assert vendi_score(similarity_matrix(two_pairs)) == pytest.approx(2.0)


def test_newest_max_similarity_and_clusters():
    vectors = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.0, 0.6, 0.8]])
    report = judge(vectors, embedder="test", thresholds=HASH, labels=list("abcd"))
    assert report.max_similarity == pytest.approx(0.8)
    sim = similarity_matrix(np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0.6, 0.8], [0.6, 0.8]]))
    assert duplicate_clusters(sim, 0.99) == [[0, 1], [3, 4]]


def test_near_duplicates_are_named_by_label(one_layout_jittered, different_layouts):
    vectors = np.concatenate([different_layouts[:4], one_layout_jittered[[0, 0]]])
    labels = [f"img{i}.png" for i in range(6)]
    report = judge(vectors, embedder="hash", thresholds=HASH, labels=labels)
    assert report.clusters == [["img4.png", "img5.png"]]
    assert report.near_duplicate_rate == pytest.approx(2 / 6)


def test_only_the_window_is_judged(one_layout_jittered, different_layouts):
    vectors = np.concatenate([different_layouts, one_layout_jittered[:4]])
    assert judge(vectors, embedder="hash", thresholds=HASH, window=4).verdict == "rut"
    assert judge(vectors, embedder="hash", thresholds=HASH, window=12).verdict == "ok"
    assert judge(vectors, embedder="hash", thresholds=HASH, window=4).count == 4


def test_thresholds_decide_the_reading(one_layout_jittered):
    mean = judge(one_layout_jittered, embedder="hash", thresholds=HASH).mean_similarity
    warn_only = Thresholds(warn=mean - 0.01, rut=min(1.0, mean + 0.01), duplicate=0.99)
    assert judge(one_layout_jittered, embedder="hash", thresholds=warn_only).verdict == "warn"
    strict = Thresholds(warn=0.999, rut=1.0, duplicate=1.0)
    assert judge(one_layout_jittered, embedder="hash", thresholds=strict).verdict == "ok"


def test_two_consecutive_readings_option(one_layout_jittered, different_layouts):
    twice = HASH.model_copy(update={"consecutive": 2})
    first = judge(one_layout_jittered, embedder="hash", thresholds=twice)
    assert (first.reading, first.verdict, first.streak) == ("rut", "warn", 1)
    second = judge(one_layout_jittered, embedder="hash", thresholds=twice, previous=first)
    assert (second.verdict, second.streak) == ("rut", 2)
    broken = judge(different_layouts, embedder="hash", thresholds=twice, previous=second)
    again = judge(one_layout_jittered, embedder="hash", thresholds=twice, previous=broken)
    assert (broken.streak, again.verdict) == (0, "warn")


def test_wider_window_flags_a_near_duplicate_of_another_idea(different_layouts):
    window = different_layouts[:4]
    other_ideas = np.concatenate([different_layouts[4:], window[-1:]])
    report = judge(
        window, embedder="hash", thresholds=HASH, wider=other_ideas, wider_labels=list("vwxyz")
    )
    assert report.verdict == "warn" and report.wider.closest == "z"
    assert "wider window" in report.reason


def test_report_names_axes_to_vary_when_texts_are_known(one_layout_jittered):
    texts = [f"a close-up of a woman, take {i}" for i in range(8)]
    report = judge(one_layout_jittered, embedder="hash", thresholds=HASH, texts=texts)
    assert report.axes.repeated == {"shot_size": "close-up", "gender_presentation": "feminine"}
    assert report.axes_to_vary[0] == "shot_size" and "camera_angle" in report.axes_to_vary


def test_small_windows_and_bad_input():
    assert judge(np.ones((1, 3)) / np.sqrt(3), embedder="x", thresholds=HASH).verdict == "ok"
    with pytest.raises(ValueError, match="labels"):
        judge(np.eye(3), embedder="x", thresholds=HASH, labels=["a"])
    with pytest.raises(ValidationError):
        Thresholds(warn=0.9, rut=0.8, duplicate=0.95)


def test_report_round_trips_as_json(one_layout_jittered):
    report = judge(one_layout_jittered, embedder="hash", thresholds=HASH)
    assert type(report).model_validate_json(report.model_dump_json()) == report
