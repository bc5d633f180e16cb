"""Z-Image chat sequences and their exact token ids.

A `ChatSequence` is what Z-Image's text encoder reads: Qwen3 chat turns. The ids are assembled by
splicing the template's fixed ids with each segment's ids, so a writer's generated ids reach the
encoder verbatim (never decoded and re-tokenized), and text typed by a person is tokenized with
special-token parsing off.

Layout, as Qwen3's chat template renders it:

    <|im_start|>{role}\\n{content}<|im_end|>\\n             system and user turns, closed assistant turns
    <|im_start|>assistant\\n<think>\\n{think}\\n</think>\\n\\n{content}     an assistant turn with a think part
    <|im_start|>assistant\\n                               the open header after a final user turn

Shapes:
- `plain`: user = prompt, open assistant header. Id for id what diffusers' `encode_prompt` feeds
  Z-Image for the same prompt.
- `think`: user = idea, assistant = think part + content.
- `answer`: user = idea, assistant = content, no think part.

User and system text is kept exactly as typed, surrounding whitespace included: Qwen3's template
does not strip it, so neither do diffusers and ComfyUI. It is tokenized together with the header's
newline, because a leading newline merges with it ("\\n\\n" is one token); the ids then equal
tokenizing the whole template string. Think and assistant text (a writer's) is stripped, as the
template strips newlines around think parts.

The token budget (512 by default, as diffusers) is never exceeded and never cut silently; see
`assemble`. It may go up to Z-Image's caption ceiling (1504 tokens; `check_token_budget`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

from pydantic import BaseModel, Field, model_validator

from zit_agent.defaults import LIMITS, RENDER
from zit_agent.errors import UserError

log = logging.getLogger("zit.sequence")

Role = Literal["system", "user", "assistant"]
Part = Literal["system", "user", "think", "assistant"]
Overflow = Literal["cut", "error"]
SHAPES = ("plain", "think", "answer")

# Budget cuts take from these parts in this order (see `assemble`).
CUT_ORDER: tuple[Part, ...] = ("think", "assistant", "user")


class Tokenizer(Protocol):
    """What assembly needs from a tokenizer (`backends.tokenizer.QwenTokenizer` has it)."""

    @property
    def base_vocab_size(self) -> int: ...

    def encode_text(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_id(self, token: str) -> int: ...


class Segment(BaseModel):
    """One part of a turn: text, and the ids a writer generated for it when there are any.

    When `ids` is set it is used verbatim and `text` is only for display.
    """

    text: str = ""
    ids: list[int] | None = None

    @overload
    @classmethod
    def of(cls, value: str | Segment) -> Segment: ...
    @overload
    @classmethod
    def of(cls, value: None) -> None: ...
    @classmethod
    def of(cls, value: str | Segment | None) -> Segment | None:
        if value is None or isinstance(value, Segment):
            return value
        return cls(text=value)


class Turn(BaseModel):
    role: Role
    content: Segment = Field(default_factory=Segment)
    think: Segment | None = None

    @model_validator(mode="after")
    def _think_only_for_assistant(self) -> Turn:
        if self.think is not None and self.role != "assistant":
            raise ValueError(f"a {self.role} turn cannot have a think part")
        return self


class ChatSequence(BaseModel):
    """Turns of a Qwen3 conversation as Z-Image's encoder reads them.

    After a final user turn the open assistant header is always added (as diffusers does). A final
    assistant turn stays open unless `close_last`, which ends it with `<|im_end|>\\n`.
    `drop_earlier_think` applies Qwen3's rule: think parts of assistant turns before the last user
    turn are left out.
    """

    turns: list[Turn]
    close_last: bool = False
    drop_earlier_think: bool = True
    shape: str | None = None

    @model_validator(mode="after")
    def _check_turns(self) -> ChatSequence:
        if not any(t.role == "user" for t in self.turns):
            raise ValueError("a chat sequence needs at least one user turn")
        if any(t.role == "system" for t in self.turns[1:]):
            raise ValueError("a system turn can only come first")
        return self

    # -- the named shapes --------------------------------------------------------------------------
    @classmethod
    def plain(cls, prompt: str | Segment, system: str | None = None) -> ChatSequence:
        return cls(
            turns=_head(system) + [Turn(role="user", content=Segment.of(prompt))], shape="plain"
        )

    @classmethod
    def think(
        cls,
        idea: str | Segment,
        think: str | Segment,
        answer: str | Segment = "",
        *,
        system: str | None = None,
        close: bool = False,
    ) -> ChatSequence:
        assistant = Turn(role="assistant", content=Segment.of(answer), think=Segment.of(think))
        user = Turn(role="user", content=Segment.of(idea))
        return cls(turns=_head(system) + [user, assistant], close_last=close, shape="think")

    @classmethod
    def answer(
        cls,
        idea: str | Segment,
        answer: str | Segment,
        *,
        system: str | None = None,
        close: bool = False,
    ) -> ChatSequence:
        assistant = Turn(role="assistant", content=Segment.of(answer))
        user = Turn(role="user", content=Segment.of(idea))
        return cls(turns=_head(system) + [user, assistant], close_last=close, shape="answer")

    @classmethod
    def of_shape(
        cls,
        shape: str,
        idea: str | Segment,
        *,
        think: str | Segment | None = None,
        answer: str | Segment | None = None,
        system: str | None = None,
        close: bool = False,
    ) -> ChatSequence:
        """Build a named shape. For `plain` the prompt is `answer` when given (a writer's
        rewrite), else the idea."""
        if shape == "plain":
            return cls.plain(answer if answer is not None else idea, system=system)
        if shape == "think":
            return cls.think(idea, think or "", answer or "", system=system, close=close)
        if shape == "answer":
            return cls.answer(idea, answer or "", system=system, close=close)
        raise UserError(f"unknown sequence shape {shape!r}", hint=f"use one of {', '.join(SHAPES)}")


def _head(system: str | None) -> list[Turn]:
    return [Turn(role="system", content=Segment(text=system))] if system is not None else []


# -- assembly ------------------------------------------------------------------------------------
class Span(BaseModel):
    """Where a segment's ids sit in the assembled sequence (`ids[start:end]`)."""

    part: Part
    turn: int
    start: int
    end: int


class Cut(BaseModel):
    """Tokens removed from the tail of one segment to fit the budget."""

    part: Part
    turn: int
    removed: int
    kept: int


class Assembled(BaseModel):
    """The ids Z-Image's encoder will read, and how they came about."""

    ids: list[int]
    text: str
    budget: int
    spans: list[Span]
    cut: list[Cut] | None = None
    shape: str | None = None

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass
class _Piece:
    part: Part | None  # None: fixed template ids
    turn: int
    ids: list[int]
    from_writer: bool = False


def assemble(
    seq: ChatSequence,
    tokenizer: Tokenizer,
    *,
    max_tokens: int = RENDER.max_tokens,
    overflow: Overflow = "cut",
) -> Assembled:
    """Token ids of `seq`, at most `max_tokens` long.

    Over budget with `overflow="cut"`, tokens are removed from the tails of segments in the order of
    `CUT_ORDER`: think parts first (a think part cut to nothing is left out with its tags), then
    assistant content, then user text (which keeps at least one token); older turns before newer
    ones. System text and the template's fixed ids are never cut, so the sequence always keeps its
    closing ids. What was cut is reported in `Assembled.cut`. When cutting cannot reach the budget,
    or with `overflow="error"`, a `UserError` says by how much the sequence is over.
    """
    fixed = _FixedIds(tokenizer)
    pieces = _pieces(seq, tokenizer, fixed)
    total = sum(len(p.ids) for p in pieces)
    cuts: list[Cut] = []
    if total > max_tokens:
        if overflow == "error":
            raise UserError(
                f"the chat sequence has {total} tokens, over the budget of {max_tokens}",
                hint="shorten the text or raise {max_tokens}",
            )
        pieces, cuts = _cut_to_budget(pieces, total - max_tokens, max_tokens, fixed.newline)
    ids: list[int] = []
    spans: list[Span] = []
    for piece in pieces:
        if piece.part is not None:
            spans.append(
                Span(
                    part=piece.part, turn=piece.turn, start=len(ids), end=len(ids) + len(piece.ids)
                )
            )
        ids.extend(piece.ids)
    return Assembled(
        ids=ids,
        text=tokenizer.decode(ids),
        budget=max_tokens,
        spans=spans,
        cut=cuts or None,
        shape=seq.shape,
    )


def check_token_budget(budget: int, ceiling: int = LIMITS.token_ceiling) -> int:
    """`budget` if a sequence may be that long: at least `LIMITS.min_tokens`, at most `ceiling`
    (the DiT's caption positions; without a model loaded, Z-Image's). Past the length Z-Image was
    trained with (512) it warns."""
    if budget < LIMITS.min_tokens:
        raise UserError(
            f"a token budget of {budget} is too small", hint=f"use {LIMITS.min_tokens} or more"
        )
    if budget > ceiling:
        raise UserError(
            f"a token budget of {budget} is past the ceiling of {ceiling} tokens "
            "(the caption positions of Z-Image's DiT)",
            hint=f"use {ceiling} or fewer",
        )
    if budget > LIMITS.warn_tokens:
        log.warning(
            "a token budget of %d is past the %d tokens Z-Image was trained with: long prompts "
            "may be followed less well",
            budget,
            LIMITS.warn_tokens,
        )
    return budget


def empty_prompt_ids(tokenizer: Tokenizer) -> list[int]:
    """The plain sequence of an empty prompt: what diffusers encodes for `negative_prompt=None`
    (`assemble` refuses empty user text, so this one is built here)."""
    fixed = _FixedIds(tokenizer)
    return [*fixed.header("user"), fixed.im_end, fixed.newline, *fixed.header("assistant")]


def _pieces(seq: ChatSequence, tok: Tokenizer, fixed: _FixedIds) -> list[_Piece]:
    _check_user_text(seq)
    last_user = max(i for i, t in enumerate(seq.turns) if t.role == "user")
    pieces: list[_Piece] = []
    for i, turn in enumerate(seq.turns):
        is_last = i == len(seq.turns) - 1
        if turn.role != "assistant" and turn.content.ids is None:
            pieces += _typed_turn(turn.role, i, turn.content.text, tok, fixed)
            pieces.append(_Piece(None, i, [fixed.im_end, fixed.newline]))
            continue
        pieces.append(_Piece(None, i, fixed.header(turn.role)))
        if (
            turn.role == "assistant"
            and turn.think is not None
            and not (seq.drop_earlier_think and i < last_user)
        ):
            think = _segment_piece("think", i, turn.think, tok, text_suffix="\n")
            if think.ids and think.ids[-1] == fixed.newline:  # a lone "\n" belongs to the template
                think.ids.pop()
            if think.ids:
                pieces.append(_Piece(None, i, [fixed.think_open, fixed.newline]))
                pieces.append(think)
                pieces.append(_Piece(None, i, fixed.think_end(tok, think.ids)))
            else:  # Qwen3's own empty think block: <think>\n\n</think>\n\n
                pieces.append(_Piece(None, i, fixed.empty_think))
        pieces.append(_segment_piece(turn.role, i, turn.content, tok))
        open_end = turn.role == "assistant" and is_last and not seq.close_last
        if not open_end:
            pieces.append(_Piece(None, i, [fixed.im_end, fixed.newline]))
    if seq.turns[-1].role != "assistant":
        pieces.append(_Piece(None, len(seq.turns), fixed.header("assistant")))
    return pieces


def readable_text(ids: list[int], tokenizer: Tokenizer) -> str:
    """What a sequence describes, for people and other tools, without chat markup: the content of
    its last user or assistant turn that has some (an assistant turn's after its think part).

    Turns are found by their control ids, so user text that spells out `<|im_start|>` stays text.
    """
    fixed = _FixedIds(tokenizer)
    role_of = {role_ids[0]: role for role, role_ids in fixed._roles.items()}
    starts = [i for i, token in enumerate(ids) if token == fixed.im_start]
    text = ""
    ends = [*starts[1:], len(ids)] if starts else []  # ids without <|im_start|>: no turn
    for start, end in zip(starts, ends, strict=True):
        role, body = role_of.get(ids[start + 1]) if start + 1 < end else None, ids[start + 2 : end]
        if fixed.im_end in body:
            body = body[: body.index(fixed.im_end)]
        if role == "assistant" and fixed.think_close in body:
            body = body[body.index(fixed.think_close) + 1 :]
        content = tokenizer.decode(body).strip()
        if content and role in ("user", "assistant"):
            text = content
    return text


def _typed_turn(role: Role, turn: int, text: str, tok: Tokenizer, fixed: _FixedIds) -> list[_Piece]:
    """The header and the ids of a system or user text typed by a person, kept as typed.

    The text is tokenized with the header's newline in front: when it starts with a newline the
    two merge into one token, which then opens the segment (the header keeps `<|im_start|>role`).
    """
    ids = tok.encode_text("\n" + text)
    header = fixed.header(role)
    if ids[0] == fixed.newline:
        return [_Piece(None, turn, header), _Piece(role, turn, ids[1:])]
    return [_Piece(None, turn, header[:-1]), _Piece(role, turn, ids)]


def _segment_piece(
    part: Part, turn: int, seg: Segment, tok: Tokenizer, text_suffix: str = ""
) -> _Piece:
    """`text_suffix` is tokenized with the text: before `</think>` the template's newline can merge
    with the text's last characters (".\n" is one token), so it must be tokenized together."""
    if seg.ids is None:
        text = seg.text.strip()
        return _Piece(part, turn, tok.encode_text(text + text_suffix if text else ""))
    bad = [i for i in seg.ids if not 0 <= i < tok.base_vocab_size]
    if bad:
        raise UserError(
            f"the {part} ids of turn {turn} contain control, added or out-of-vocabulary ids {bad[:5]}",
            hint="only template positions may hold control ids; clean the writer's output first",
        )
    return _Piece(part, turn, list(seg.ids), from_writer=True)


def _check_user_text(seq: ChatSequence) -> None:
    for i, turn in enumerate(seq.turns):
        seg = turn.content
        empty = not seg.ids if seg.ids is not None else not seg.text.strip()
        if turn.role == "user" and empty:
            raise UserError(
                f"the user text of turn {i} is empty",
                hint="give an idea with some words in it",
            )


def _cut_to_budget(
    pieces: list[_Piece], excess: int, budget: int, newline: int
) -> tuple[list[_Piece], list[Cut]]:
    cuts: list[Cut] = []
    for part in CUT_ORDER:
        for piece in [p for p in pieces if p.part == part]:
            if excess <= 0:
                break
            floor = 1 if part == "user" else 0
            take = min(excess, len(piece.ids) - floor)
            if take <= 0:
                continue
            piece.ids = piece.ids[: len(piece.ids) - take]
            excess -= take
            if part == "think":
                excess -= _after_think_cut(pieces, piece, newline)
            cuts.append(Cut(part=part, turn=piece.turn, removed=take, kept=len(piece.ids)))
    if excess > 0:
        need = budget + excess
        raise UserError(
            f"the chat sequence needs at least {need} tokens after cutting, over the budget of {budget}",
            hint="shorten the system text or raise {max_tokens}",
        )
    return [p for p in pieces if p.ids or p.part in ("user", "assistant", "system")], cuts


def _after_think_cut(pieces: list[_Piece], think: _Piece, newline: int) -> int:
    """Fix the fixed ids around a cut think part; returns how many ids that freed (or, negative,
    added). An emptied think part loses its tags; a shortened one lost its trailing newline (the
    cut removed the last token), so `</think>` gets its own newline back."""
    at = pieces.index(think)
    before, after = pieces[at - 1], pieces[at + 1]
    if not think.ids:
        freed = len(before.ids) + len(after.ids)
        before.ids, after.ids = [], []
        return freed
    if after.ids[0] != newline:
        after.ids = [newline, *after.ids]
        return -1
    return 0


class _FixedIds:
    """The template's own ids, read from the tokenizer."""

    def __init__(self, tok: Tokenizer):
        self.im_start = tok.token_id("<|im_start|>")
        self.im_end = tok.token_id("<|im_end|>")
        self.think_open = tok.token_id("<think>")
        self.think_close = tok.token_id("</think>")
        self.newline = _single(tok, "\n")
        self.blank_line = _single(tok, "\n\n")
        self._roles = {role: tok.encode_text(role) for role in ("system", "user", "assistant")}

    @property
    def empty_think(self) -> list[int]:
        return [self.think_open, self.blank_line, self.think_close, self.blank_line]

    def think_end(self, tok: Tokenizer, think_ids: list[int]) -> list[int]:
        """`\n</think>\n\n`, without the newline when the think ids already end with one."""
        ends_with_newline = bool(think_ids) and tok.decode(think_ids[-1:]).endswith("\n")
        newline = [] if ends_with_newline else [self.newline]
        return [*newline, self.think_close, self.blank_line]

    def header(self, role: Role) -> list[int]:
        return [self.im_start, *self._roles[role], self.newline]


def _single(tok: Tokenizer, text: str) -> int:
    ids = tok.encode_text(text)
    if len(ids) != 1:
        raise UserError(
            f"tokenizer encodes {text!r} as {len(ids)} ids, expected 1: not a Qwen3 tokenizer"
        )
    return ids[0]


def described_text(decoded: str) -> str:
    """The description inside a decoded Z-Image chat sequence: the user turns and the final
    assistant content. System turns and think parts (plans, not descriptions) are left out."""
    parts = []
    for turn in decoded.split("<|im_start|>"):
        role, _, content = turn.partition("\n")
        content = content.split("<|im_end|>")[0]
        if role == "assistant":
            content = content.split("</think>")[-1] if "<think>" in content else content
        if role in ("user", "assistant"):
            parts.append(content.strip())
    return "\n".join(p for p in parts if p) if parts else decoded


def check_utf8(text: str) -> str:
    """`text`, or a one-line error where it holds bytes that were not UTF-8 (Python keeps them as
    lone surrogates when it decodes arguments and pipes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start : err.end].encode("utf-8", "surrogateescape")
        raise UserError(
            f"the text is not valid UTF-8 (byte {bad.hex()} at character {err.start})",
            hint="give the text in UTF-8",
        ) from None
    return text


def sequence_of_parts(
    idea: str,
    *,
    system: str | None = None,
    think: str | None = None,
    assistant: str | None = None,
    close: bool = False,
) -> ChatSequence:
    """The sequence `zit tokens` (and the server's tokens route) builds: the plain shape, or
    `think` with think text, or `answer` with assistant text only."""
    shape = "think" if think is not None else "answer" if assistant is not None else "plain"
    if close and shape == "plain":
        raise UserError("{close} needs {think} or {assistant}", hint="the plain shape ends open")
    if not check_utf8(idea).strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    return ChatSequence.of_shape(
        shape, idea, think=think, answer=assistant, system=system, close=close
    )


def assembled_json(result: Assembled, tokenizer_source: str) -> dict[str, Any]:
    """`zit tokens --json` (and the server's tokens answer) for an assembled sequence."""
    return {
        "token_ids": result.ids,
        "text": result.text,
        "count": result.count,
        "budget": result.budget,
        "shape": result.shape or "plain",
        "cut": [c.model_dump() for c in result.cut] if result.cut else None,
        "spans": [s.model_dump() for s in result.spans],
        "tokenizer": tokenizer_source,
    }
