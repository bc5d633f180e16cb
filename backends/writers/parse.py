"""Splitting a writer's generated ids into a think part and an answer part, without going through
text.

Qwen3 writes `<think>\\n{plan}\\n</think>\\n\\n{answer}<|im_end|>`. The split happens on ids, so
the answer's ids are exactly the ids the model generated (byte tokens that are not valid UTF-8 on
their own included). Cases and their outcomes:

| case                                                | outcome                                   |
|-----------------------------------------------------|-------------------------------------------|
| end-of-turn id (`<|im_end|>`, `<|endoftext|>`) last | clean: dropped                            |
| `<think>` first (a thinking model opened it itself) | clean: dropped                            |
| `</think>` present                                  | clean: think before it, answer after it   |
| whitespace-only ids at the edges of a part          | clean: dropped (the template's separators)|
| `<|im_start|>` inside content (a new turn begins)   | clean: the content ends before it (note)  |
| other control or added ids inside content           | clean: those ids are dropped (note)       |
| no `</think>`, think not opened                     | clean: everything is the answer           |
| no `</think>`, think opened, stopped                | clean: everything is the answer (note)    |
| no `</think>`, think opened, cut by the length limit| retry: the plan used up max-new-tokens    |
| answer cut by the length limit                      | clean: the cut answer is kept (note)      |
| empty answer                                        | retry                                     |

"retry" raises `DraftProblem(retryable=True)`; `agent.drafting` retries with another seed and turns
a last failure into a clear error.

A writer of another vocabulary (a *foreign* writer: Llama, Mistral, Gemma, SmolLM...) has no Qwen3
ids to keep, so its output is split as text (`draft_from_text`): the generated ids are cut at the
first control id of its own vocabulary (a new turn, a tool call...), decoded, and the text is split
by the same table with `<think>` and `</think>` as strings (a model that never writes them gives
all of its text as the answer). `agent.drafting` then re-tokenizes the parts with the encoder's
Qwen3 tokenizer (`--retokenize`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from zit_agent.backends.base import Draft, FinishReason, TextIds, WriterStats
from zit_agent.errors import DraftFailed


class DraftProblem(DraftFailed):
    """Generated ids that cannot become a draft. `retryable`: another seed may well succeed."""

    def __init__(self, message: str, hint: str | None = None, *, retryable: bool = False):
        super().__init__(message, hint)
        self.retryable = retryable


@dataclass(frozen=True)
class SpecialIds:
    """The ids parsing needs, read from the writer's own vocabulary."""

    im_start: int
    im_end: int
    endoftext: int
    think_open: int
    think_close: int
    base_vocab_size: int  # ids from here on are control or added tokens

    @classmethod
    def lookup(cls, token_id: Callable[[str], int], base_vocab_size: int) -> SpecialIds:
        return cls(
            im_start=token_id("<|im_start|>"),
            im_end=token_id("<|im_end|>"),
            endoftext=token_id("<|endoftext|>"),
            think_open=token_id("<think>"),
            think_close=token_id("</think>"),
            base_vocab_size=base_vocab_size,
        )

    @property
    def stop_ids(self) -> frozenset[int]:
        return frozenset((self.im_end, self.endoftext))


@dataclass
class SplitIds:
    think: list[int]
    answer: list[int]
    notes: list[str] = field(default_factory=list)


def split_generated(
    ids: list[int],
    special: SpecialIds,
    decode: Callable[[list[int]], str],
    *,
    finish_reason: FinishReason,
    think_opened: bool = False,
) -> SplitIds:
    """Split `ids` (as generated, maybe ending with an end-of-turn id) into think and answer ids.

    `think_opened`: the prompt already ended with `<think>\\n`, so generation starts inside the
    think part. `decode` turns ids into text (to recognise whitespace-only tokens).
    """
    notes: list[str] = []
    body = list(ids)
    if body and body[-1] in special.stop_ids:
        body.pop()
    if body and body[0] == special.think_open:
        body, think_opened = body[1:], True
    if special.think_close in body:
        at = body.index(special.think_close)
        think, answer = body[:at], body[at + 1 :]
    else:
        _unclosed(think_opened, finish_reason, len(ids), notes)
        think, answer = [], body
    think = _clean(think, special, "think", notes)
    answer = _clean(answer, special, "answer", notes)
    think, answer = _trim(think, decode), _trim(answer, decode)
    _check_answer(bool(answer), finish_reason, len(ids), notes)
    return SplitIds(think=think, answer=answer, notes=notes)


def _unclosed(think_opened: bool, finish_reason: str, tokens: int, notes: list[str]) -> None:
    """No `</think>`: a plan that ran out of tokens is a retryable problem; an open plan that
    stopped is taken as the answer, and noted."""
    if think_opened and finish_reason == "length":
        raise DraftProblem(
            f"the writer used all {tokens} new tokens on its plan and wrote no description",
            hint="raise {max_new_tokens}",
            retryable=True,
        )
    if think_opened:
        notes.append("the plan was never closed with </think>: all of it is taken as answer")


def _check_answer(found: bool, finish_reason: str, tokens: int, notes: list[str]) -> None:
    """An empty answer is a retryable problem; a cut one is noted."""
    if not found:
        raise DraftProblem(
            "the writer produced an empty description",
            hint="try another {seed} or a higher {temperature}",
            retryable=True,
        )
    if finish_reason == "length":
        notes.append(f"the description was cut at max-new-tokens ({tokens} tokens)")


def _clean(ids: list[int], special: SpecialIds, part: str, notes: list[str]) -> list[int]:
    """Content ids only: cut at a new turn, drop other control and added ids."""
    if special.im_start in ids:
        at = ids.index(special.im_start)
        notes.append(f"the {part} started a new turn; {len(ids) - at} ids after it dropped")
        ids = ids[:at]
    kept = [i for i in ids if 0 <= i < special.base_vocab_size]
    if len(kept) != len(ids):
        dropped = sorted({i for i in ids if not 0 <= i < special.base_vocab_size})
        notes.append(f"control or added ids {dropped} dropped from the {part}")
    return kept


def _trim(ids: list[int], decode: Callable[[list[int]], str]) -> list[int]:
    """Drop whitespace-only ids at both ends (the separators around `</think>` and after it)."""
    start, end = 0, len(ids)
    while start < end and _blank(decode, ids[start]):
        start += 1
    while end > start and _blank(decode, ids[end - 1]):
        end -= 1
    return ids[start:end]


def _blank(decode: Callable[[list[int]], str], token: int) -> bool:
    text = decode([token])
    return text != "" and text.isspace()


def draft_from_ids(
    model: str,
    generated: list[int],
    special: SpecialIds,
    decode: Callable[[list[int]], str],
    *,
    finish_reason: FinishReason,
    think_opened: bool,
    prompt_tokens: int,
    seconds: float,
) -> Draft:
    """A `Draft` of `generated`: split, decoded for display, with its stats."""
    split = split_generated(
        generated, special, decode, finish_reason=finish_reason, think_opened=think_opened
    )
    return Draft(
        model=model,
        generated_ids=list(generated),
        think=TextIds(ids=split.think, text=decode(split.think)),
        answer=TextIds(ids=split.answer, text=decode(split.answer)),
        stats=_stats(len(generated), prompt_tokens, seconds, finish_reason),
        notes=split.notes,
    )


def _stats(
    new_tokens: int, prompt_tokens: int, seconds: float, finish_reason: FinishReason
) -> WriterStats:
    return WriterStats(
        prompt_tokens=prompt_tokens, new_tokens=new_tokens, seconds=seconds,
        tokens_per_s=new_tokens / seconds if seconds > 0 else 0.0, finish_reason=finish_reason,
    )  # fmt: skip


# -- writers of another vocabulary ----------------------------------------------------------------
THINK_OPEN_TEXT, THINK_CLOSE_TEXT = "<think>", "</think>"


@dataclass(frozen=True)
class ForeignIds:
    """What splitting needs from a vocabulary that is not Qwen3's: where generation stops (its
    end-of-generation ids) and which ids are control tokens (never text)."""

    stop_ids: frozenset[int]
    control_ids: frozenset[int]


@dataclass
class SplitText:
    think: str
    answer: str
    notes: list[str] = field(default_factory=list)


def split_text(
    text: str, *, finish_reason: FinishReason, think_opened: bool = False, new_tokens: int = 0
) -> SplitText:
    """Split generated text into think and answer by the module's table, on the strings `<think>`
    and `</think>`; whitespace at the edges of each part is dropped, and so are think tags left
    inside a part (noted). `new_tokens`: how many ids the text came from (for messages)."""
    notes: list[str] = []
    body = text.lstrip()
    if body.startswith(THINK_OPEN_TEXT):
        body, think_opened = body[len(THINK_OPEN_TEXT) :], True
    if THINK_CLOSE_TEXT in body:
        think, _, answer = body.partition(THINK_CLOSE_TEXT)
    else:
        _unclosed(think_opened, finish_reason, new_tokens, notes)
        think, answer = "", body
    think, answer = _untagged(think, "think", notes), _untagged(answer, "answer", notes)
    _check_answer(bool(answer), finish_reason, new_tokens, notes)
    return SplitText(think=think, answer=answer, notes=notes)


def _untagged(text: str, part: str, notes: list[str]) -> str:
    """`text` stripped, without the think tags a model may write again inside a part."""
    tags = [tag for tag in (THINK_OPEN_TEXT, THINK_CLOSE_TEXT) if tag in text]
    for tag in tags:
        text = text.replace(tag, "")
    if tags:
        notes.append(f"{' and '.join(tags)} dropped from the {part}")
    return text.strip()


def draft_from_text(
    model: str,
    generated: list[int],
    ids: ForeignIds,
    decode: Callable[[list[int]], str],
    encode: Callable[[str], list[int]],
    *,
    finish_reason: FinishReason,
    think_opened: bool,
    prompt_tokens: int,
    seconds: float,
) -> Draft:
    """A `Draft` of a foreign writer's `generated` ids, split as text (see the module's notes).

    `decode` turns the writer's ids into text, `encode` text into its own ids (plain text, no
    control ids): the draft's think and answer ids are in the writer's vocabulary, for the record;
    only their text can reach the encoder (re-tokenized by `agent.drafting.for_encoder`)."""
    notes: list[str] = []
    body = list(generated)
    if body and body[-1] in ids.stop_ids:
        body.pop()
    control = next((at for at, i in enumerate(body) if i in ids.control_ids), None)
    if control is not None:
        notes.append(
            f"the writer wrote control id {body[control]} (its turn ended there); "
            f"{len(body) - control} ids from it dropped"
        )
        body = body[:control]
    split = split_text(
        decode(body),
        finish_reason=finish_reason,
        think_opened=think_opened,
        new_tokens=len(generated),
    )
    return Draft(
        model=model,
        generated_ids=list(generated),
        think=TextIds(ids=encode(split.think) if split.think else [], text=split.think),
        answer=TextIds(ids=encode(split.answer), text=split.answer),
        stats=_stats(len(generated), prompt_tokens, seconds, finish_reason),
        notes=notes + split.notes,
    )
