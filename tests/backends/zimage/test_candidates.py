"""Candidates on early previews (`render_candidates`) on the tiny Z-Image: the kept images are the
images their seeds give rendered in full, and the steps spent are M*K + n*(S-K)."""

from __future__ import annotations

import numpy as np
import pytest

from zit_agent.backends.base import StepGate
from zit_agent.errors import UserError
from zit_agent.sequence import empty_prompt_ids

STEPS = 4


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.int16))


@pytest.fixture(scope="module")
def single(backend):
    """The tiny model in batches of one (what the exactness promise holds)."""
    from zit_agent.backends.zimage import ZImageBackend

    single = ZImageBackend(backend.pipe, max_batch=1, tokenizer=backend.tokenizer)
    single._loras = backend._loras  # the adapters already loaded into the shared pipeline
    return single


@pytest.fixture(scope="module")
def options(small_options):
    return small_options.model_copy(update={"steps": STEPS})


def keep(indices):
    seen = []

    def choose(previews):
        seen.extend(previews)
        return indices

    return choose, seen


@pytest.mark.parametrize("step", [1, 2, 3])
def test_kept_candidates_are_their_full_renders(single, plain_ids, options, step):
    seeds = [30, 31, 32, 33, 34]
    choose, previews = keep([3, 0])
    result = single.render_candidates(plain_ids, seeds, options, step, choose)
    assert [r.seed for r in result.kept] == [33, 30] and result.kept_index == [3, 0]
    assert len(previews) == 5 and previews[0].size == (64, 64)
    assert result.steps == 5 * step + 2 * (STEPS - step)
    for image in result.kept:
        full = single.render(plain_ids, [image.seed], options)[0]
        assert same(image.image, full.image)
        assert image.record["seed"] == image.seed and image.record["steps"] == STEPS


def test_previews_differ_by_seed_and_resemble_their_images(single, plain_ids, options):
    seeds = [40, 41, 42]
    choose, previews = keep([0, 1, 2])
    result = single.render_candidates(plain_ids, seeds, options, STEPS - 1, choose)
    # Late previews are close to their own final image, farther from the others'.
    finals = [np.asarray(r.image.resize(previews[0].size), dtype=np.float32) for r in result.kept]
    grids = [np.asarray(p, dtype=np.float32) for p in previews]
    for i, grid in enumerate(grids):
        own = np.abs(grid - finals[i]).mean()
        others = [np.abs(grid - f).mean() for j, f in enumerate(finals) if j != i]
        assert own < min(others)


def test_step_levers_carry_into_finished_candidates(
    single, plain_ids, options, lora_file, qwen_tokenizer
):
    update = {
        "early_ids": empty_prompt_ids(qwen_tokenizer),
        "early_steps": 1,
        "lora": str(lora_file),
        "lora_gates": [StepGate(start=1, end=3)],
    }
    levered = options.model_copy(update=update)
    result = single.render_candidates(plain_ids, [50, 51], levered, 2, keep([1])[0])
    full = single.render(plain_ids, [51], levered)[0]
    assert same(result.kept[0].image, full.image)
    assert result.kept[0].record["early_steps"] == 1


@pytest.mark.parametrize(
    ("update", "step", "message"),
    [
        ({}, STEPS, "outside 1..3"),
        ({}, 0, "outside 1..3"),
        ({"sampler": "dpmpp_2m"}, 2, "need the euler sampler"),
    ],
)
def test_bad_candidate_settings_are_user_errors(single, plain_ids, options, update, step, message):
    from zit_agent.backends.candidates import check_candidates

    changed = options.model_copy(update=update)
    with pytest.raises(UserError, match=message):
        check_candidates(changed, 4, 2, step)
    with pytest.raises(UserError, match=message):
        single.render_candidates(plain_ids, [1, 2], changed, step, keep([0])[0])


def test_fewer_candidates_than_images_is_a_user_error(options):
    from zit_agent.backends.candidates import check_candidates

    with pytest.raises(UserError, match="3 candidates cannot give 4 images"):
        check_candidates(options, 3, 4, 2)
