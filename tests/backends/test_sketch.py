"""The sketch stand-in renderer: deterministic, a built-in rut when axes are unstated, visible
differences when they are stated (as the hash embedder and the rut detector see them)."""

from __future__ import annotations

import numpy as np
import pytest

from zit_agent.agent.ruts import judge, thresholds_for
from zit_agent.axes import axis_names, values
from zit_agent.backends.base import ImageBackend, RenderOptions
from zit_agent.backends.embedders import HashEmbedder
from zit_agent.backends.tiny.sketch import SketchBackend
from zit_agent.errors import UserError
from zit_agent.sequence import ChatSequence, assemble, described_text

SMALL = RenderOptions(width=192, height=160)


@pytest.fixture(scope="module")
def sketch(qwen_tokenizer) -> SketchBackend:
    return SketchBackend(qwen_tokenizer)


def ids(tok, text: str, answer: str | None = None) -> list[int]:
    seq = ChatSequence.plain(text) if answer is None else ChatSequence.answer(text, answer)
    return assemble(seq, tok).ids


def verdict(images) -> str:
    vectors = HashEmbedder().embed(images)
    return judge(vectors, embedder="hash", thresholds=thresholds_for("hash")).verdict


def test_is_an_image_backend_with_the_requested_size(sketch, qwen_tokenizer):
    assert isinstance(sketch, ImageBackend)
    [out] = sketch.render(ids(qwen_tokenizer, "a cat"), [3], SMALL)
    assert out.image.size == (192, 160) and out.image.mode == "RGB"
    assert out.seed == 3 and out.record["stand_in"] is True


def test_same_seed_same_image(sketch, qwen_tokenizer):
    token_ids = ids(qwen_tokenizer, "a wide shot of two people on a beach at golden hour")
    first, second = (sketch.render(token_ids, [7], SMALL)[0].image for _ in range(2))
    assert first.tobytes() == second.tobytes()


def test_unstated_axes_are_a_rut_across_seeds(sketch, qwen_tokenizer):
    renders = sketch.render(ids(qwen_tokenizer, "a portrait of a woman"), list(range(6)), SMALL)
    images = [r.image for r in renders]
    assert images[0].tobytes() != images[1].tobytes()  # the seed still jitters
    assert verdict(images) == "rut"


def test_stated_shot_sizes_and_angles_are_not_a_rut(sketch, qwen_tokenizer):
    prompts = [
        "an extreme close-up of a woman, low angle",
        "a wide shot of a woman, high angle",
        "a full shot of two people, bird's-eye view",
        "a medium shot of three people, dutch angle",
        "an extreme wide shot of a crowd at night",
        "a woman on the left third, worm's-eye view",
    ]
    images = [
        sketch.render(ids(qwen_tokenizer, p), [i], SMALL)[0].image for i, p in enumerate(prompts)
    ]
    assert verdict(images) == "ok"


def test_stated_palettes_alone_are_not_a_rut(sketch, qwen_tokenizer):
    palettes = [
        "warm tones",
        "cool tones",
        "pastel",
        "monochrome",
        "earth tones",
        "teal and orange",
    ]
    prompts = [f"a medium shot of a woman on a beach, {p}" for p in palettes]
    images = [sketch.render(ids(qwen_tokenizer, p), [0], SMALL)[0].image for p in prompts]
    assert verdict(images) == "ok"


@pytest.mark.parametrize(
    "axis_phrases",
    [
        ["a close-up of a man", "a wide shot of a man"],
        ["a man, low angle", "a man, bird's-eye view"],
        ["one man alone", "a crowd of people"],
        ["a man at noon, vibrant", "a man at night, monochrome"],
        ["a man, warm tones", "a man, cool tones"],
        ["a man in a forest", "a man on a city street"],
    ],
)
def test_each_stated_axis_changes_the_picture(sketch, qwen_tokenizer, axis_phrases):
    a, b = (sketch.render(ids(qwen_tokenizer, p), [0], SMALL)[0].image for p in axis_phrases)
    vectors = HashEmbedder().embed([a, b])
    assert float(vectors[0] @ vectors[1]) < thresholds_for("hash").rut


def test_reads_the_answer_and_user_turns_but_not_the_plan(sketch, qwen_tokenizer):
    seq = ChatSequence.think("a man", "maybe a close-up?", "a wide shot of a man at night")
    [out] = sketch.render(assemble(seq, qwen_tokenizer).ids, [0], SMALL)
    assert out.record["axes"]["shot_size"] == "wide shot"
    assert out.record["axes"]["time_of_day"] == "night"
    decoded = qwen_tokenizer.decode(assemble(seq, qwen_tokenizer).ids)
    assert "close-up" not in described_text(decoded)


def test_no_token_ids_is_a_user_error(sketch):
    with pytest.raises(UserError):
        sketch.render([], [0], SMALL)


def test_from_pretrained_uses_the_shipped_tokenizer():
    backend = SketchBackend.from_pretrained()
    token_ids = backend.tokenizer.encode_text("a cat")
    assert np.asarray(backend.render(token_ids, [0], SMALL)[0].image).std() > 0


@pytest.mark.parametrize("axis", axis_names())
def test_every_value_of_every_axis_draws(axis):
    from zit_agent.backends.tiny.sketch import Scene, draw_scene

    defaults = Scene.from_text("").values
    for value in values(axis):
        for angle in ("eye level", "bird's-eye view", "dutch angle"):
            scene = Scene({**defaults, "camera_angle": angle, axis: value})
            assert draw_scene(scene, 0, 48, 40).size == (48, 40)
