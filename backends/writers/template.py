"""The writer's prompt ids, rendered from the model's own chat template without trusting content.

The template (Jinja, as shipped in the GGUF or tokenizer_config.json) is rendered with a sentinel
in place of each message's content. The rendered text is then split at the sentinels: the
template's own text is tokenized with control tokens recognised (`<|im_start|>` becomes 151644),
the messages' text with them off, so an idea containing `<|im_start|>` stays plain text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from zit_agent.backends.base import Draft, Message, Sampling
from zit_agent.backends.writers.parse import SpecialIds, draft_from_ids
from zit_agent.errors import UserError

THINK_OPEN = "<think>\n"
_SENTINEL = "\x00ZIT-CONTENT-{}\x00"
_SENTINEL_RE = re.compile("\x00ZIT-CONTENT-(\\d+)\x00")


@dataclass(frozen=True)
class Piece:
    text: str
    trusted: bool  # template text: control tokens in it are parsed


@dataclass(frozen=True)
class Prompt:
    pieces: list[Piece]
    think_opened: bool  # the prompt ends inside a think block

    def ids(
        self, encode_trusted: Callable[[str], list[int]], encode_plain: Callable[[str], list[int]]
    ) -> list[int]:
        out: list[int] = []
        for piece in self.pieces:
            out += (encode_trusted if piece.trusted else encode_plain)(piece.text)
        return out


def render_prompt(template: str | None, messages: list[Message], *, open_think: bool) -> Prompt:
    """The prompt for `messages` with the assistant header open (and `<think>\\n` after it when
    `open_think`, unless the template already opens a think block itself)."""
    if not template:
        raise UserError(
            "the writer model has no chat template",
            hint="use a Qwen3 instruct or thinking model (its GGUF or folder carries the template)",
        )
    text = _render(template, messages)
    if open_think and not text.endswith(THINK_OPEN):
        text += THINK_OPEN
    pieces: list[Piece] = []
    at = 0
    for match in _SENTINEL_RE.finditer(text):
        pieces.append(Piece(text[at : match.start()], trusted=True))
        pieces.append(Piece(messages[int(match.group(1))].content.strip(), trusted=False))
        at = match.end()
    pieces.append(Piece(text[at:], trusted=True))
    return Prompt([p for p in pieces if p.text], think_opened=text.endswith(THINK_OPEN))


def _render(template: str, messages: list[Message]) -> str:
    from jinja2 import TemplateError

    stand_ins = [{"role": m.role, "content": _SENTINEL.format(i)} for i, m in enumerate(messages)]
    try:
        return _compiled(template).render(
            messages=stand_ins, add_generation_prompt=True, tools=None
        )
    except TemplateError as err:
        raise UserError(f"the writer's chat template failed: {err}") from None


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled once (compiling Qwen3's takes about 30 ms), in the sandboxed
    environment transformers uses for chat templates."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


class ChatTemplateWriter:
    """`Writer.write` as both real writers do it: the model's chat template -> prompt ids ->
    generated ids -> a `Draft` parsed from the ids. Subclasses give `prompt`, `prompt_ids`,
    `generate`, `decode` and `special`, and may refuse a request in `check_room`."""

    name: str
    special: SpecialIds

    def write(self, messages: list[Message], sampling: Sampling, seed: int) -> Draft:
        prompt = self.prompt(messages)
        prompt_ids = self.prompt_ids(prompt)
        self.check_room(len(prompt_ids), sampling.max_new_tokens)
        start = time.perf_counter()
        generated, finish = self.generate(prompt_ids, sampling, seed)
        seconds = time.perf_counter() - start
        return draft_from_ids(
            self.name,
            generated,
            self.special,
            self.decode,
            finish_reason=finish,
            think_opened=prompt.think_opened,
            prompt_tokens=len(prompt_ids),
            seconds=seconds,
        )

    def check_room(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Raise a UserError when the request cannot fit (default: anything fits)."""

    def prompt(self, messages: list[Message]) -> Prompt:
        raise NotImplementedError

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        raise NotImplementedError

    def generate(
        self, prompt_ids: list[int], sampling: Sampling, seed: int
    ) -> tuple[list[int], str]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError
