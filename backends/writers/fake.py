"""`FakeWriter`: a scripted writer for tests and agent logic. A fake, not a model.

It generates nothing. Queued drafts (`enqueue`, `enqueue_ids`) come out in order; with an empty
queue it echoes the idea as the answer. Every call is recorded in `history`. Its drafts carry real
Qwen3 ids (the encoder tokenizer's `encode_text`), go through the same id parsing as the real
writers (`backends.writers.parse`), and respect `max_new_tokens`, so agent code sees what a real
writer would hand it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from zit_agent.backends.base import Draft, Message, Sampling, Writer
from zit_agent.backends.tokenizer import QwenTokenizer, VocabFingerprint
from zit_agent.backends.writers.messages import idea_of
from zit_agent.backends.writers.parse import SpecialIds, draft_from_ids


@dataclass(frozen=True)
class FakeCall:
    messages: list[Message]
    sampling: Sampling
    seed: int


class FakeWriter(Writer):
    """A fake `Writer` that replays queued drafts (tests and agent logic only)."""

    def __init__(self, tokenizer: QwenTokenizer, name: str = "fake"):
        self.tokenizer = tokenizer
        self.name = name
        self.history: list[FakeCall] = []
        self._queue: deque[list[int]] = deque()
        self._special = SpecialIds.lookup(tokenizer.token_id, tokenizer.base_vocab_size)

    @property
    def fingerprint(self) -> VocabFingerprint:
        return self.tokenizer.fingerprint

    def enqueue(self, answer: str, think: str = "") -> None:
        """Queue a draft written as Qwen3 writes one: `<think>\\n{think}\\n</think>\\n\\n{answer}`."""
        self._queue.append(self.generated_ids(answer, think))

    def enqueue_ids(self, generated: list[int]) -> None:
        """Queue raw generated ids (to test parsing, odd byte tokens, stray control ids)."""
        self._queue.append(list(generated))

    def generated_ids(self, answer: str, think: str = "") -> list[int]:
        s, enc = self._special, self.tokenizer.encode_text
        head = [s.think_open, *enc(f"\n{think.strip()}\n"), s.think_close, *enc("\n\n")]
        return [*(head if think.strip() else []), *enc(answer.strip()), s.im_end]

    def write(self, messages: list[Message], sampling: Sampling, seed: int) -> Draft:
        start = time.perf_counter()
        self.history.append(FakeCall(list(messages), sampling, seed))
        generated = self._queue.popleft() if self._queue else self.generated_ids(idea_of(messages))
        cut = generated[: sampling.max_new_tokens]
        return draft_from_ids(
            self.name,
            cut,
            self._special,
            self.tokenizer.decode,
            finish_reason="length" if len(cut) < len(generated) else "stop",
            think_opened=False,
            prompt_tokens=sum(len(self.tokenizer.encode_text(m.content)) + 5 for m in messages),
            seconds=time.perf_counter() - start,
        )
