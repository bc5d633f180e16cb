"""The writer's prompt ids, rendered from the model's own chat template without trusting content.

The template (Jinja, as shipped in the GGUF or tokenizer_config.json) is rendered with a sentinel
in place of each message's content. The rendered text is then split at the sentinels: the
template's own text is tokenized with control tokens recognised (`<|im_start|>` becomes 151644),
the messages' text with them off, so an idea containing `<|im_start|>` stays plain text.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from zit_agent.backends.base import Draft, Message, Sampling, Writer
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
    """The template rendered with a sentinel for each message's content. A template is code from
    the model file: any failure, and rendering past the time or size limit, is a `UserError`."""
    stand_ins = [{"role": m.role, "content": _SENTINEL.format(i)} for i, m in enumerate(messages)]
    token = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    try:
        parts = _compiled(template).generate(
            messages=stand_ins, add_generation_prompt=True, tools=None
        )
        text = _joined(parts)
    except Exception as err:  # noqa: BLE001  (whatever the template's own code raises)
        raise UserError(
            f"the writer's chat template failed: {_describe(err)}",
            hint="the template comes with the writer model: use a model with a working one",
        ) from None
    finally:
        _deadline.reset(token)
    if not _SENTINEL_RE.search(text):
        raise UserError(
            "the writer's chat template rendered none of the messages",
            hint="use a writer model whose chat template writes out each message",
        )
    return text


# A real chat prompt is a few thousand characters and Qwen3's template renders in about a
# millisecond: these limits stop only a template that runs away.
MAX_RENDER_CHARS = 1_000_000
MAX_RENDER_SECONDS = 2.0
_deadline: ContextVar[float] = ContextVar("template_deadline", default=float("inf"))


class RenderLimit(Exception):
    """A template that ran past the time or size limit."""


def _tick() -> None:
    if time.monotonic() > _deadline.get():
        raise RenderLimit(f"rendering took over {MAX_RENDER_SECONDS:g} s (a runaway loop?)")


def _check_size(size: int) -> None:
    if size > MAX_RENDER_CHARS:
        raise RenderLimit(f"rendering made over {MAX_RENDER_CHARS:,} characters")


def _joined(parts: Iterable[str]) -> str:
    """The rendered text, stopped as soon as it grows past the size limit."""
    out, size = [], 0
    for part in parts:
        size += len(part)
        _check_size(size)
        out.append(part)
    return "".join(out)


def _describe(err: Exception) -> str:
    from jinja2 import TemplateError

    if isinstance(err, RecursionError):
        text = "it recurses too deeply"
    elif isinstance(err, (TemplateError, RenderLimit)):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:300]


def _ticking(items: Iterable[Any]) -> Iterator[Any]:
    """A template loop's items, checking the time limit at each (loops nest: 100000 x 100000)."""
    for item in items:
        _tick()
        yield item


def _widths(text: str) -> int:
    """The sum of the numbers written in a format string (`'%999999999d'`, `'{:>99999999}'`):
    a bound on the padding it can make."""
    return sum(int(n) for n in re.findall(r"\d{1,30}", text))


def _result_size(operator: str, left: Any, right: Any) -> int:
    """The size a `*`, `**`, `+` or `%` would produce (characters, items or integer bits), before
    it is computed: `'a' * 300000000` is refused without allocating it."""
    if operator == "%":
        if not isinstance(left, str):
            return 0
        args = right if isinstance(right, tuple | list) else [right]
        return len(left) + _widths(left) + sum(len(str(a)) for a in args if isinstance(a, str))
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**":
        return abs(left).bit_length() * right if ints and right > 0 else 0
    if ints:
        return left.bit_length() + right.bit_length()
    if operator == "*":
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        return len(sized) * count if isinstance(sized, Sized) and isinstance(count, int) else 0
    if isinstance(left, Sized) and isinstance(right, Sized):
        return len(left) + len(right)
    return 0


def _check_arguments(what: str, args: Iterable[Any]) -> None:
    """Refuse a number past the size limit given to a filter or a string method (`center`,
    `indent`, `ljust`, ...): `'x'|center(3000000000)` would allocate 3 GB before any check."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_RENDER_CHARS:
            raise RenderLimit(f"{what}({arg}) is past the limit of {MAX_RENDER_CHARS:,}")


def _limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_arguments(name, [*args, *kwargs.values()])
        return function(*args, **kwargs)

    return limited


STRING_FORMATS = ("format", "format_map")


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled once (compiling Qwen3's takes about 30 ms), in the sandboxed
    environment transformers uses for chat templates, with every loop and call checking the time
    limit and every `*`, `**` and `+` the size limit."""
    from jinja2 import TemplateError, nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class LimitedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context, operator, left, right):
            _tick()
            _check_size(_result_size(operator, left, right))
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's signature)
            _tick()  # macros too: a recursive macro passes here at each call
            method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str):  # 'x'.center(N), '{:>N}'.format(x)
                name = getattr(method, "__name__", "")
                _check_arguments(name, [*args, *kwargs.values()])
                if name in STRING_FORMATS:
                    _check_size(len(owner) + _widths(owner))
            return super().call(__context, __obj, *args, **kwargs)

    def raise_exception(message: str):
        raise TemplateError(message)

    env = LimitedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    env.filters = {name: _limited_filter(name, f) for name, f in env.filters.items()}
    env.filters["zit_ticking"] = _ticking
    tree = env.parse(template)
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "zit_ticking", [], [], None, None, lineno=loop.lineno)
    return env.from_string(tree)


_FOREIGN_COMPILE = threading.Lock()


@contextlib.contextmanager
def templates_left_to_zit() -> Iterator[None]:
    """While loading a GGUF, llama-cpp-python must not compile its chat templates: it compiles
    every template in the file's metadata in a sandbox that folds constants, so a template
    `{{ 10 ** (10 ** 10) }}` computes a ten-billion-digit number at load (a hang no limit can stop,
    the GIL being held). zit never uses llama-cpp-python's chat handlers (`render_prompt` renders
    the template in the limited sandbox above), so the load gets a stand-in formatter."""
    from llama_cpp import llama_chat_format

    class Unused:
        def __init__(self, template: str, *args: Any, **kwargs: Any):
            pass

        def to_chat_handler(self) -> Callable[..., Any]:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise UserError("zit renders chat templates itself (render_prompt)")

            return refuse

    with _FOREIGN_COMPILE:
        original = llama_chat_format.Jinja2ChatFormatter
        llama_chat_format.Jinja2ChatFormatter = Unused
        try:
            yield
        finally:
            llama_chat_format.Jinja2ChatFormatter = original


class ChatTemplateWriter(Writer):
    """`Writer.write` as both real writers do it: the model's chat template -> prompt ids ->
    generated ids -> a `Draft` parsed from the ids. Subclasses give `prompt`, `prompt_ids`,
    `generate`, `decode` and `special`, and may refuse a request in `check_room` (a writer of
    another vocabulary overrides `draft`)."""

    name: str
    special: SpecialIds

    def write(self, messages: list[Message], sampling: Sampling, seed: int) -> Draft:
        prompt = self.prompt(messages)
        prompt_ids = self.prompt_ids(prompt)
        self.check_room(len(prompt_ids), sampling.max_new_tokens)
        start = time.perf_counter()
        generated, finish = self.generate(prompt_ids, sampling, seed)
        seconds = time.perf_counter() - start
        return self.draft(
            generated,
            finish,
            think_opened=prompt.think_opened,
            prompt_tokens=len(prompt_ids),
            seconds=seconds,
        )

    def draft(
        self,
        generated: list[int],
        finish: str,
        *,
        think_opened: bool,
        prompt_tokens: int,
        seconds: float,
    ) -> Draft:
        """The draft of `generated`, split on the ids (a writer of Qwen3's vocabulary)."""
        return draft_from_ids(
            self.name,
            generated,
            self.special,
            self.decode,
            finish_reason=finish,
            think_opened=think_opened,
            prompt_tokens=prompt_tokens,
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
