"""From an idea to a Z-Image chat sequence through a writer, keeping the writer's ids verbatim.

Steps (`compose`):
1. Check the writer's vocabulary against the encoder tokenizer's (`VocabFingerprint`). Every Qwen3
   shares one vocabulary, so a Qwen3 writer's ids are valid encoder input. Another vocabulary (a
   foreign writer: SmolLM2, Llama, Mistral, Gemma... which writes text with its own chat template)
   is refused, unless `retokenize`: then the draft's think and answer text is re-tokenized with
   the encoder's Qwen3 tokenizer, special-token parsing off (a warning, a note, and `retokenized`
   and the mismatch in the provenance).
2. Write a draft. A retryable problem (an empty description, a plan that used up max-new-tokens)
   is retried with the next seeds; the seed that worked is recorded.
3. Put the draft's ids into the chosen shape (`think`: user = idea, assistant = think + answer;
   `answer`: no think part; `plain`: the answer as the user turn) as `Segment(text, ids)`, so the
   ids are used as generated, and assemble the sequence within the token budget.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from zit_agent import prompts
from zit_agent.backends.base import Draft, Message, Sampling, TextIds, Writer
from zit_agent.backends.tokenizer import QwenTokenizer, VocabFingerprint
from zit_agent.backends.writers.messages import build_messages
from zit_agent.backends.writers.parse import DraftProblem
from zit_agent.defaults import RENDER
from zit_agent.errors import UserError
from zit_agent.sequence import Assembled, ChatSequence, Segment, assemble

log = logging.getLogger("zit.drafting")

RETRY_ATTEMPTS = 3


class WrittenSequence(BaseModel):
    """A draft, the sequence built from it, and how it came about."""

    idea: str
    draft: Draft
    seed: int  # the seed that produced the draft (the requested one unless a retry was needed)
    sequence: ChatSequence
    assembled: Assembled
    provenance: dict[str, Any]


def check_vocabulary(writer: Writer, tokenizer: QwenTokenizer, *, retokenize: bool) -> str | None:
    """None when the writer's ids are valid encoder ids. On a mismatch: the mismatch in words when
    `retokenize` is allowed, else a `UserError`."""
    theirs = writer.fingerprint
    mismatch = (
        f"writer {writer.name} does not report its vocabulary"
        if theirs is None
        else _mismatch(theirs, tokenizer.fingerprint)
    )
    if mismatch is None or retokenize:
        return mismatch
    raise UserError(
        f"writer {writer.name}: its vocabulary does not match the encoder's Qwen3 one: {mismatch}",
        hint="pass {retokenize} to write with it: its text is re-tokenized with the Qwen3 "
        "tokenizer, which is not id-exact; or use a Qwen3 writer",
    )


def _mismatch(theirs: VocabFingerprint, ours: VocabFingerprint) -> str | None:
    """What differs, in words; chat tokens missing or elsewhere are named, not listed as dicts."""
    full = theirs.mismatch(ours)
    if full is None or theirs.specials == ours.specials:
        return full
    missing = [t for t in ours.specials if t not in theirs.specials]
    moved = [
        t for t in ours.specials if theirs.specials.get(t, ours.specials[t]) != ours.specials[t]
    ]
    parts = ([f"no {' or '.join(missing)}"] if missing else []) + (
        [f"{', '.join(moved)} at other ids"] if moved else []
    )
    if not parts:
        return full
    return f"another vocabulary ({theirs.base_vocab_size:,} base tokens; {'; '.join(parts)})"


def write_draft(
    writer: Writer,
    messages: list[Message],
    sampling: Sampling,
    seed: int,
    *,
    attempts: int = RETRY_ATTEMPTS,
) -> tuple[Draft, int]:
    """A draft and the seed that produced it: `seed`, or the next ones after retryable problems."""
    problems: list[str] = []
    for attempt in range(attempts):
        try:
            draft = writer.write(messages, sampling, seed + attempt)
        except DraftProblem as problem:
            if not problem.retryable or attempt == attempts - 1:
                raise
            problems.append(f"seed {seed + attempt}: {problem}")
            continue
        notes = [f"retried after {p}" for p in problems]
        return draft.model_copy(update={"notes": notes + draft.notes}), seed + attempt
    raise AssertionError("unreachable")


def for_encoder(draft: Draft, tokenizer: QwenTokenizer, mismatch: str | None) -> Draft:
    """The draft itself, or (after a vocabulary mismatch) its text re-tokenized for the encoder.

    `encode_text` parses no special or added token: a writer's text that spells `<|im_start|>` or
    `<think>` stays plain text in the sequence (FACTS.md section 3)."""
    if mismatch is None:
        return draft
    log.info("re-tokenizing %s's text for the encoder (%s)", draft.model, mismatch)

    def redo(part: TextIds) -> TextIds:
        return TextIds(ids=tokenizer.encode_text(part.text.strip()), text=part.text)

    note = f"{draft.model}'s text re-tokenized with the encoder's Qwen3 tokenizer: {mismatch}"
    return draft.model_copy(
        update={
            "think": redo(draft.think),
            "answer": redo(draft.answer),
            "retokenized": True,
            "notes": [*draft.notes, note],
        }
    )


def sequence_of(draft: Draft, idea: str, shape: str) -> ChatSequence:
    """The draft's think and answer ids in the named shape, used verbatim."""
    think = Segment(text=draft.think.text, ids=draft.think.ids)
    answer = Segment(text=draft.answer.text, ids=draft.answer.ids)
    return ChatSequence.of_shape(
        shape, idea, think=think if shape == "think" else None, answer=answer
    )


def compose(
    writer: Writer,
    tokenizer: QwenTokenizer,
    messages: list[Message],
    idea: str,
    *,
    shape: str = "think",
    sampling: Sampling | None = None,
    seed: int = 0,
    retokenize: bool = False,
    max_tokens: int = RENDER.max_tokens,
    instruction: prompts.Instruction | None = None,
) -> WrittenSequence:
    """Write a draft for `messages` and build the Z-Image sequence of `idea` from it."""
    sampling = sampling or Sampling()
    ChatSequence.of_shape(shape, idea)  # an unknown shape fails before the writer runs
    mismatch = check_vocabulary(writer, tokenizer, retokenize=retokenize)
    draft, used_seed = write_draft(writer, messages, sampling, seed)
    draft = for_encoder(draft, tokenizer, mismatch)
    sequence = sequence_of(draft, idea, shape)
    assembled = assemble(sequence, tokenizer, max_tokens=max_tokens)
    provenance = draft_provenance(
        writer, instruction, sampling, seed, used_seed, shape, draft, mismatch
    )
    return WrittenSequence(
        idea=idea,
        draft=draft,
        seed=used_seed,
        sequence=sequence,
        assembled=assembled,
        provenance=provenance,
    )


def draft_provenance(
    writer: Writer,
    instruction: prompts.Instruction | None,
    sampling: Sampling,
    seed: int,
    used_seed: int,
    shape: str,
    draft: Draft,
    mismatch: str | None,
) -> dict[str, Any]:
    """The writer record every entry point keeps for a draft."""
    return {
        "writer": writer.name,
        "instruction": instruction.name if instruction else None,
        "instruction_version": instruction.version if instruction else None,
        "sampling": sampling.model_dump(),
        "seed": seed,
        "seed_used": used_seed,
        "shape": shape,
        "retokenized": draft.retokenized,
        "vocabulary_mismatch": mismatch,
        "notes": draft.notes,
        "stats": draft.stats.model_dump(),
    }


def expand_idea(
    writer: Writer,
    tokenizer: QwenTokenizer,
    idea: str,
    *,
    instruction: str = "expand",
    target_words: int | None = None,
    **options: Any,
) -> WrittenSequence:
    """`compose` with the messages of a `prompts/` instruction and the bare idea; `options` as
    for `compose` (shape, sampling, seed, retokenize, max_tokens)."""
    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    chosen = prompts.load(instruction)
    messages = build_messages(chosen.text, idea, target_words=target_words)
    return compose(writer, tokenizer, messages, idea.strip(), instruction=chosen, **options)
