"""ZImageBackend against diffusers' own prompt path for text as people type it, and on a pipeline
that diffusers has already used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.backends.zimage.conftest import SMALL
from zit_agent.sequence import ChatSequence, assemble

FILE_LIKE_PROMPTS = ["a cat on a windowsill\n", "  a dog on a beach  ", "\na fox\n\n"]


def diffusers_image(pipe, prompt: str, seed: int, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    args = {"height": SMALL["height"], "width": SMALL["width"], "guidance_scale": 0.0}
    return pipe(
        prompt=prompt, num_inference_steps=SMALL["steps"], generator=generator, **args | kwargs
    ).images[0]


@pytest.fixture()
def used_pipe(tiny_zimage_dir):
    """A fresh pipeline on which diffusers has rendered once (its tokenizer now pads to 512)."""
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline.from_pretrained(tiny_zimage_dir)
    pipe.set_progress_bar_config(disable=True)
    diffusers_image(pipe, "warm up", 0)
    return pipe


@pytest.mark.parametrize("prompt", FILE_LIKE_PROMPTS)
def test_text_with_surrounding_whitespace_renders_as_diffusers_does(
    backend, raw_pipe, qwen_tokenizer, small_options, prompt
):
    ids = assemble(ChatSequence.plain(prompt), qwen_tokenizer).ids
    mine = backend.render(ids, [5], small_options)[0].image
    theirs = diffusers_image(raw_pipe, prompt, 5)
    assert np.array_equal(np.asarray(mine), np.asarray(theirs))


def test_backend_on_a_pipeline_diffusers_has_used(used_pipe, small_options):
    from zit_agent.backends.zimage import ZImageBackend

    backend = ZImageBackend(used_pipe)
    assert backend.tokenizer.encode_text("a cat") == [64, 8251]
    ids = assemble(ChatSequence.plain("a cat"), backend.tokenizer).ids
    assert len(ids) == 10
    # CFG without a negative builds the empty prompt's ids from the tokenizer.
    options = small_options.model_copy(update={"guidance": 3.0})
    mine = backend.render(ids, [2], options)[0].image
    theirs = diffusers_image(used_pipe, "a cat", 2, guidance_scale=3.0)
    assert np.array_equal(np.asarray(mine), np.asarray(theirs))
    # The pipeline's own tokenizer is left as diffusers set it.
    assert used_pipe.tokenizer("a cat", padding="max_length", max_length=16).input_ids[-1] == 151643
