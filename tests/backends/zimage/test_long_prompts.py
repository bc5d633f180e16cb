"""Sequences past diffusers' 512-token default: up to the ceiling the DiT's config allows."""

from __future__ import annotations

import pytest
import torch

from tests.backends.zimage.conftest import SMALL
from zit_agent.backends.zimage import caption_ceiling
from zit_agent.defaults import LIMITS
from zit_agent.errors import UserError
from zit_agent.sequence import ChatSequence, assemble, check_token_budget


def sequence_of(qwen_tokenizer, count: int) -> list[int]:
    """A plain sequence of exactly `count` ids (the user text cut to fit)."""
    seq = ChatSequence.plain("a lighthouse on a cliff, " * 400)
    ids = assemble(seq, qwen_tokenizer, max_tokens=count).ids
    assert len(ids) == count
    return ids


def test_the_ceiling_is_read_from_the_loaded_transformer(backend):
    assert backend.pipe.transformer.config.axes_lens[0] == 1536  # Z-Image's own caption axis
    assert backend.token_ceiling == LIMITS.token_ceiling == 1504
    assert caption_ceiling(1024) == 992


def test_the_ceiling_is_where_diffusers_itself_stops(raw_pipe):
    """1504 caption rows render in the bare pipeline; 1505 fail inside diffusers (FACTS.md 9)."""
    hidden = raw_pipe.text_encoder.config.hidden_size

    def run(rows: int):
        embeds = torch.randn(rows, hidden, generator=torch.Generator().manual_seed(0))
        return raw_pipe(
            prompt_embeds=[embeds],
            guidance_scale=0.0,
            num_inference_steps=1,
            output_type="latent",
            **SMALL_SIZE,
        )

    assert run(1504).images.shape[0] == 1
    with pytest.raises(IndexError):
        run(1505)


SMALL_SIZE = {"height": SMALL["height"], "width": SMALL["width"]}


def test_a_900_token_sequence_renders_with_a_warning(
    backend, qwen_tokenizer, small_options, caplog
):
    ids = sequence_of(qwen_tokenizer, 900)
    with caplog.at_level("WARNING", logger="zit.zimage"):
        rendered = backend.render(ids, [3], small_options)[0]
    assert rendered.record["token_count"] == 900
    assert "past the 512 Z-Image was trained with" in caplog.text
    assert rendered.image.size == (SMALL["width"], SMALL["height"])


def test_the_ceiling_itself_renders(backend, qwen_tokenizer, small_options):
    ids = sequence_of(qwen_tokenizer, 1504)
    options = small_options.model_copy(update={"steps": 1})
    assert backend.render(ids, [3], options)[0].record["token_count"] == 1504


def test_one_past_the_ceiling_is_a_one_line_error_naming_it(backend, qwen_tokenizer, small_options):
    ids = sequence_of(qwen_tokenizer, 1505)
    with pytest.raises(UserError) as err:
        backend.render(ids, [3], small_options)
    message = err.value.one_line()
    assert "1505 tokens" in message and "ceiling of 1504" in message and "\n" not in message


def test_a_long_negative_is_checked_too(backend, plain_ids, qwen_tokenizer, small_options):
    options = small_options.model_copy(
        update={"guidance": 2.0, "negative_ids": sequence_of(qwen_tokenizer, 1600)}
    )
    with pytest.raises(UserError, match="the negative has 1600 tokens"):
        backend.render(plain_ids, [3], options)


@pytest.mark.parametrize(
    ("budget", "message"), [(4096, "past the ceiling of 1504"), (8, "too small")]
)
def test_budgets_outside_the_range_are_user_errors(budget, message):
    with pytest.raises(UserError, match=message):
        check_token_budget(budget)


def test_a_budget_past_512_warns(caplog):
    with caplog.at_level("WARNING", logger="zit.sequence"):
        assert check_token_budget(1504) == 1504
        assert check_token_budget(512) == 512
    assert caplog.text.count("past the 512 tokens") == 1
