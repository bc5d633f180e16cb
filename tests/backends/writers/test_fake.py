"""FakeWriter: queued drafts in order, the idea echoed otherwise, calls recorded."""

from __future__ import annotations

import pytest

from zit_agent.backends.base import Sampling, Writer
from zit_agent.backends.writers.fake import FakeWriter
from zit_agent.backends.writers.messages import build_messages
from zit_agent.backends.writers.parse import DraftProblem


@pytest.fixture
def fake(qwen_tokenizer):
    return FakeWriter(qwen_tokenizer)


def test_is_a_writer_that_replays_then_echoes(fake, qwen_tokenizer):
    assert isinstance(fake, Writer)
    fake.enqueue("A red fox in snow.", think="keep the fox")
    messages = build_messages("Describe.", "a fox", feedback="more snow")
    first = fake.write(messages, Sampling(), seed=3)
    assert first.answer.ids == qwen_tokenizer.encode_text("A red fox in snow.")
    assert first.think.text == "keep the fox" and first.stats.finish_reason == "stop"
    assert first.generated_ids[0] == 151667 and first.generated_ids[-1] == 151645
    second = fake.write(messages, Sampling(temperature=0.1), seed=4)
    assert second.answer.text == "a fox" and second.think.ids == []
    assert [(c.seed, c.sampling.temperature) for c in fake.history] == [(3, 0.7), (4, 0.1)]
    assert fake.history[0].messages == messages


def test_respects_max_new_tokens(fake):
    fake.enqueue("one two three four five six")
    draft = fake.write(build_messages("x", "y"), Sampling(max_new_tokens=3), 0)
    assert draft.stats.finish_reason == "length" and len(draft.generated_ids) == 3
    assert draft.stats.new_tokens == 3 and draft.stats.prompt_tokens > 0


def test_raw_ids_go_through_the_real_parser(fake):
    fake.enqueue_ids([151667, 198, 64, 11])  # a plan cut by the length limit, no answer
    with pytest.raises(DraftProblem, match="plan") as info:
        fake.write(build_messages("x", "y"), Sampling(max_new_tokens=3), 0)
    assert info.value.retryable
