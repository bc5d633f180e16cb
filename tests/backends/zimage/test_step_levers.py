"""Step levers on the tiny Z-Image: an early prompt for the first steps, step-gated LoRAs."""

from __future__ import annotations

import numpy as np
import pytest

from zit_agent.backends.base import NoiseSettings, StepGate
from zit_agent.errors import UserError
from zit_agent.sequence import empty_prompt_ids

STEPS = 4


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.int16))


@pytest.fixture(scope="module")
def options(small_options):
    return small_options.model_copy(update={"steps": STEPS})


@pytest.fixture(scope="module")
def plain(backend, plain_ids, options):
    return [r.image for r in backend.render(plain_ids, [7, 8], options)]


def render(backend, ids, options, seeds=(7, 8), **update):
    return backend.render(ids, list(seeds), options.model_copy(update=update))


# -- early prompt --------------------------------------------------------------------------------
def test_zero_early_steps_is_the_plain_image(backend, plain_ids, options, plain, qwen_tokenizer):
    empty = empty_prompt_ids(qwen_tokenizer)
    rendered = render(backend, plain_ids, options, early_ids=empty, early_steps=0)
    assert all(same(r.image, p) for r, p in zip(rendered, plain, strict=True))
    assert "early_steps" not in rendered[0].record  # a plain record stays as it was


def test_an_empty_early_prompt_changes_the_image_reproducibly(
    backend, plain_ids, options, plain, qwen_tokenizer
):
    empty = empty_prompt_ids(qwen_tokenizer)
    first = render(backend, plain_ids, options, early_ids=empty, early_steps=2)
    again = render(backend, plain_ids, options, early_ids=empty, early_steps=2)
    assert all(same(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not any(same(r.image, p) for r, p in zip(first, plain, strict=True))
    record = first[0].record
    assert record["early_steps"] == 2 and record["early_prompt"] == ""
    # One early step differs from two: the switch happens where it is asked for.
    one = render(backend, plain_ids, options, early_ids=empty, early_steps=1)
    assert not same(one[0].image, first[0].image)


def test_early_prompt_with_noise_keeps_the_noise_after_the_switch(
    backend, plain_ids, options, qwen_tokenizer
):
    noise = NoiseSettings(strength=2.0, steps_share=0.75)  # steps 0-2 noised
    empty = empty_prompt_ids(qwen_tokenizer)
    noisy = render(backend, plain_ids, options, noise=noise)[0].image
    both = render(backend, plain_ids, options, noise=noise, early_ids=empty, early_steps=1)[0]
    early = render(backend, plain_ids, options, early_ids=empty, early_steps=1)[0]
    assert not same(both.image, noisy) and not same(both.image, early.image)
    assert both.record["noise"]["strength"] == 2.0 and both.record["early_steps"] == 1


@pytest.mark.parametrize("early", [STEPS, STEPS + 3])
def test_early_steps_must_leave_a_step(backend, plain_ids, options, qwen_tokenizer, early):
    with pytest.raises(UserError, match="leave no step"):
        render(backend, plain_ids, options, early_ids=[1, 2], early_steps=early)


# -- step-gated LoRAs ----------------------------------------------------------------------------
def gated(lora_file, gate, strength=1.0):
    return {"lora": str(lora_file), "lora_strength": strength, "lora_gates": [gate]}


def test_a_gate_over_every_step_is_the_ungated_lora(backend, plain_ids, options, lora_file):
    ungated = render(backend, plain_ids, options, lora=str(lora_file))
    for gate in (StepGate(start=0, end=STEPS), StepGate(start=0.0, end=1.0, fraction=True)):
        rendered = render(backend, plain_ids, options, **gated(lora_file, gate))
        assert all(same(a.image, b.image) for a, b in zip(rendered, ungated, strict=True))
        assert rendered[0].record["lora_gates"] == [gate.model_dump()]


def test_an_empty_gate_is_the_render_without_the_lora(
    backend, plain_ids, options, plain, lora_file
):
    rendered = render(backend, plain_ids, options, **gated(lora_file, StepGate(start=2, end=2)))
    assert all(same(r.image, p) for r, p in zip(rendered, plain, strict=True))
    assert rendered[0].record["lora"].endswith(lora_file.name)  # asked for, and recorded


def test_a_partial_gate_is_between_and_reproducible(backend, plain_ids, options, plain, lora_file):
    ungated = render(backend, plain_ids, options, lora=str(lora_file))[0].image
    early = StepGate(start=0, end=2)
    first = render(backend, plain_ids, options, **gated(lora_file, early))[0].image
    again = render(backend, plain_ids, options, **gated(lora_file, early))[0].image
    assert same(first, again)
    assert not same(first, plain[0]) and not same(first, ungated)
    # The fraction form of the same steps gives the same image.
    half = StepGate(start=0.0, end=0.5, fraction=True)
    assert same(render(backend, plain_ids, options, **gated(lora_file, half))[0].image, first)
    # A later render without a LoRA is the plain image again (the weights were reset).
    assert same(render(backend, plain_ids, options)[0].image, plain[0])


@pytest.mark.parametrize(
    "gate",
    [
        StepGate(start=0, end=STEPS + 1),
        StepGate(start=3, end=2),
        StepGate(start=0.0, end=1.5, fraction=True),
        StepGate(start=0.5, end=2),
    ],
)
def test_a_gate_outside_the_schedule_is_a_user_error(backend, plain_ids, options, lora_file, gate):
    with pytest.raises(UserError, match="outside the schedule"):
        render(backend, plain_ids, options, **gated(lora_file, gate))


# -- a LoKr (ai-toolkit layout: diffusers converts `.lokr_` keys on load) ------------------------
@pytest.fixture(scope="module")
def lokr_file(tmp_path_factory):
    """A random LoKr on the tiny DiT's attention: delta W = kron(w1, w2), w1 4x4, w2 8x8."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(5)
    state = {}
    for layer in ("layers.0", "layers.1"):
        for proj in ("to_q", "to_k", "to_v"):
            key = f"diffusion_model.{layer}.attention.{proj}"
            state[f"{key}.lokr_w1"] = torch.randn(4, 4, generator=gen) * 0.5
            state[f"{key}.lokr_w2"] = torch.randn(8, 8, generator=gen) * 0.5
    path = tmp_path_factory.mktemp("lokr") / "diverse_lokr.safetensors"
    save_file(state, str(path))
    return path


def test_a_gated_lokr_loads_and_its_gates_hold(backend, plain_ids, options, plain, lokr_file):
    ungated = render(backend, plain_ids, options, lora=str(lokr_file))
    assert not same(ungated[0].image, plain[0])  # the LoKr changes the image
    every = render(backend, plain_ids, options, **gated(lokr_file, StepGate(start=0, end=STEPS)))
    assert all(same(a.image, b.image) for a, b in zip(every, ungated, strict=True))
    none = render(backend, plain_ids, options, **gated(lokr_file, StepGate(start=0, end=0)))
    assert all(same(r.image, p) for r, p in zip(none, plain, strict=True))
    first = render(backend, plain_ids, options, **gated(lokr_file, StepGate(start=0, end=1)))
    assert not same(first[0].image, plain[0]) and not same(first[0].image, ungated[0].image)
