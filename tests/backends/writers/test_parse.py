"""Splitting generated ids into think and answer, on hand-made id lists (every documented case)."""

from __future__ import annotations

import pytest

from zit_agent.backends.writers.parse import DraftProblem, SpecialIds, split_generated

THINK, END_THINK, IM_START, IM_END, EOT, TOOL_CALL = 151667, 151668, 151644, 151645, 151643, 151657
NL, NLNL = 198, 271


@pytest.fixture(scope="module")
def special(qwen_tokenizer):
    return SpecialIds.lookup(qwen_tokenizer.token_id, qwen_tokenizer.base_vocab_size)


@pytest.fixture(scope="module")
def split(special, qwen_tokenizer):
    def run(ids, finish="stop", think_opened=False):
        return split_generated(
            ids, special, qwen_tokenizer.decode, finish_reason=finish, think_opened=think_opened
        )

    return run


@pytest.fixture(scope="module")
def enc(qwen_tokenizer):
    return qwen_tokenizer.encode_text


def test_special_ids_are_read_from_the_vocabulary(special):
    assert (special.think_close, special.im_end, special.endoftext) == (END_THINK, IM_END, EOT)
    assert special.base_vocab_size == 151643


def test_full_thinking_answer_splits_and_drops_separators(split, enc):
    plan, answer = enc("keep the fox"), enc("A red fox in snow.")
    out = split([THINK, NL, *plan, NL, END_THINK, NLNL, *answer, IM_END])
    assert out.think == plan and out.answer == answer and out.notes == []


def test_think_opened_by_the_prompt(split, enc):
    plan, answer = enc("plan"), enc("A fox.")
    out = split([*plan, NL, END_THINK, NLNL, *answer, EOT], think_opened=True)
    assert out.think == plan and out.answer == answer


def test_no_think_block_means_all_answer(split, enc):
    answer = enc("A fox on a hill.")
    out = split([*answer, IM_END])
    assert out.think == [] and out.answer == answer and out.notes == []


def test_unclosed_plan_that_stopped_becomes_the_answer(split, enc):
    text = enc("A fox on a hill.")
    out = split([NL, *text, IM_END], think_opened=True)
    assert out.answer == text and "never closed" in out.notes[0]


def test_plan_cut_by_the_length_limit_is_retryable(split, enc):
    with pytest.raises(DraftProblem, match="max-new-tokens|new tokens") as info:
        split([THINK, NL, *enc("thinking and thinking")], finish="length")
    assert info.value.retryable


@pytest.mark.parametrize(
    "ids", [[IM_END], [THINK, NL, 64, NL, END_THINK, NLNL, IM_END], [NL, NLNL, EOT]]
)
def test_empty_answer_is_retryable(split, ids):
    with pytest.raises(DraftProblem, match="empty description") as info:
        split(ids)
    assert info.value.retryable


def test_answer_cut_by_the_length_limit_is_kept_with_a_note(split, enc):
    answer = enc("A fox on a hill under")
    out = split(answer, finish="length")
    assert out.answer == answer and "cut at max-new-tokens" in out.notes[0]


def test_new_turn_inside_the_answer_ends_it(split, enc):
    answer = enc("A fox.")
    out = split([*answer, IM_START, 872, NL, *enc("more"), IM_END])
    assert out.answer == answer and "new turn" in out.notes[0]


def test_stray_control_and_added_ids_never_reach_the_content(split, enc, special):
    plan, answer = enc("plan"), enc("A fox.")
    ids = [THINK, NL, *plan, EOT, NL, END_THINK, NLNL, answer[0], THINK, TOOL_CALL, *answer[1:]]
    out = split([*ids, IM_END])
    assert out.think == plan and out.answer == answer
    assert all(i < special.base_vocab_size for i in out.think + out.answer)
    assert len(out.notes) == 2


def test_merged_newline_token_stays_in_the_think_ids(split, enc):
    plan = enc("Keep the fox.\n")  # ".\n" is one token: it is content, not a separator
    out = split([THINK, NL, *plan, END_THINK, NLNL, *enc("A fox."), IM_END])
    assert out.think == plan


# -- text of a writer of another vocabulary (`split_text`) ---------------------------------------
@pytest.mark.parametrize(
    "text, think_opened, think, answer",
    [
        ("<think>\nkeep the fox\n</think>\n\nA red fox in snow.", False, "keep the fox", "A red fox in snow."),
        ("keep the fox</think>A red fox.", True, "keep the fox", "A red fox."),
        ("\n\nA red fox in snow.\n", False, "", "A red fox in snow."),  # never thinks
        ("plan</think>A fox <think>in</think> snow", False, "plan", "A fox in snow"),
    ],
)  # fmt: skip
def test_text_splits_like_ids(text, think_opened, think, answer):
    from zit_agent.backends.writers.parse import split_text

    out = split_text(text, finish_reason="stop", think_opened=think_opened)
    assert (out.think, out.answer) == (think, answer)


def test_text_plan_left_open_is_the_answer_or_a_retry():
    from zit_agent.backends.writers.parse import split_text

    out = split_text("A red fox.", finish_reason="stop", think_opened=True)
    assert out.answer == "A red fox." and "never closed" in out.notes[0]
    with pytest.raises(DraftProblem, match="12 new tokens on its plan") as info:
        split_text("a plan that", finish_reason="length", think_opened=True, new_tokens=12)
    assert info.value.retryable
    with pytest.raises(DraftProblem, match="empty description"):
        split_text("<think>plan</think>\n\n", finish_reason="stop")
    cut = split_text("A red", finish_reason="length", new_tokens=2)
    assert cut.answer == "A red" and "cut at max-new-tokens (2 tokens)" in cut.notes[0]
