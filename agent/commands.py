"""Chat commands: what a person can send a session, typed. The CLI, the web page and the HTTP API
parse or build these; a turn resumes the graph with one as data, and the state holds it typed.

    text          refine the current description with these words
    /vary         fresh values on the axes that repeat
    /vary subtle|strong [N], /pick N [S], /unpick     refine from an image (image-to-image)
    /shorter      a shorter description (the escape ladder's `shorter` step)
    /undo         back one turn
    /seed N, /size WxH, /layer N, /lora PATH:S     change one render setting, render again
    /show, /tokens, /history, /help, /quit         answered by the front end, not the graph
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from zit_agent.defaults import LIMITS, RENDER
from zit_agent.errors import UserError

_HELP_HEAD = "text          refine the current description with what you type"
_HELP_TAIL = """\
/undo         back one turn (images stay on disk)
/seed N       render again with seeds from N
/size WxH     render again at this size (multiples of 16)
/layer N      render again with encoder hidden layer N (Z-Image: -2)
/lora PATH:S  render again with a .safetensors LoRA at strength S (-2..2)
/control PATH render again with this control map (needs a ControlNet; /control none: off)
/pick N [S]   image N of the last turn becomes the start: later text changes it (strength S)
/unpick       render from noise again
/vary subtle [N]  variations of image N (default: the picked image, else 1); picks it
/vary strong [N]  the same with more change
/show         the chat sequence of the current description
/tokens       its token ids
/history      the turns so far and their images
/help         this list
/quit         leave (the session stays; resume it with the same session name)"""


def help_text() -> str:
    """The chat commands, one a line; the lever commands come from the lever registry."""
    from zit_agent.agent.levers import registered

    levers = [f"/{s.name:<12} {s.summary}" for s in registered().values() if s.command]
    return "\n".join([_HELP_HEAD, *levers, _HELP_TAIL])


class _Command(BaseModel):
    raw: str = ""  # what the person typed (shown in the turn list)


class Text(_Command):
    kind: Literal["text"] = "text"
    text: str = Field(min_length=1)


class Escape(_Command):
    """Take one lever of the escape ladder now (`/vary`, `/shorter`: the levers registered with a
    chat command, `agent/levers.py`)."""

    kind: Literal["escape"] = "escape"
    lever: str


class Undo(_Command):
    kind: Literal["undo"] = "undo"


class Seed(_Command):
    kind: Literal["seed"] = "seed"
    seed: int = Field(ge=0, le=LIMITS.max_seed)


class Size(_Command):
    kind: Literal["size"] = "size"
    width: int
    height: int


class Layer(_Command):
    kind: Literal["layer"] = "layer"
    layer: int


class Lora(_Command):
    kind: Literal["lora"] = "lora"
    path: str
    strength: float = 1.0


class Control(_Command):
    kind: Literal["control"] = "control"
    path: str | None  # None: no control map


class Pick(_Command):
    """`/pick N [S]` (index from 1), or `/unpick` (index None)."""

    kind: Literal["pick"] = "pick"
    index: int | None = Field(None, ge=1)
    strength: float | None = Field(None, gt=0.0, le=1.0)


class VaryImage(_Command):
    """`/vary subtle|strong [N]`: variations of image N (None: the picked one, else the first)."""

    kind: Literal["vary_image"] = "vary_image"
    level: Literal["subtle", "strong"]
    strength: float
    index: int | None = Field(None, ge=1)


class Local(_Command):
    """Answered by the front end from the session's state; the graph never sees it."""

    kind: Literal["show", "tokens", "history", "help", "quit"]


GraphCommand = Annotated[
    Text | Escape | Undo | Seed | Size | Layer | Lora | Control | Pick | VaryImage,
    Field(discriminator="kind"),
]
SETTINGS = ("seed", "size", "layer", "lora")  # commands that change one render setting
_GRAPH = TypeAdapter(GraphCommand)


def as_command(data: dict) -> BaseModel:
    """A graph command from its stored data."""
    lever = forced_lever(data)
    if lever is not None:  # sessions before the lever registry stored {"kind": "vary"}
        return Escape(lever=lever, raw=data.get("raw", ""))
    return _GRAPH.validate_python(data)


def forced_lever(data: dict[str, Any] | None) -> str | None:
    """The lever a stored command asks for, or None (not an escape command)."""
    from zit_agent.agent.levers import command_names

    if not data:
        return None
    if data.get("kind") == "escape":
        return data.get("lever")
    return data.get("kind") if data.get("kind") in command_names() else None


def parse_command(text: str) -> BaseModel:
    """The person's input as a command; a `UserError` names what is wrong with it. Nothing is
    sent to a session until its input parses."""
    from zit_agent.agent.levers import command_names
    from zit_agent.sequence import check_utf8

    raw = check_utf8(text).strip()
    if not raw:
        raise UserError("empty message", hint="type what to change, or /help")
    if not raw.startswith("/"):
        return Text(text=raw, raw=raw)
    name, _, arg = raw[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    if name in ("show", "tokens", "history", "help", "quit"):
        return Local(kind=name, raw=raw)
    if name == "vary" and arg:  # `/vary subtle|strong [N]`: image-to-image, not the lever
        return _vary(arg, raw)
    if name == "pick":
        return _pick(arg, raw)
    if name == "unpick":
        return Pick(index=None, raw=raw)
    if name in command_names():
        return Escape(lever=name, raw=raw)
    if name == "undo":
        return Undo(raw=raw)
    if name == "seed":
        seed = _int(arg, "/seed N")
        if not 0 <= seed <= LIMITS.max_seed:
            raise UserError(f"seed {seed} is out of range", hint=f"use 0..{LIMITS.max_seed}")
        return Seed(seed=seed, raw=raw)
    if name == "layer":
        from zit_agent.options import run_options

        layer = _int(arg, "/layer N")
        run_options(layer=layer)  # the option's bounds: /layer 99999 is refused here
        return Layer(layer=layer, raw=raw)
    if name == "size":
        return _size(arg, raw)
    if name == "lora":
        return _lora(arg, raw)
    if name == "control":
        return _control(arg, raw)
    raise UserError(f"unknown command /{name}", hint="type /help for the commands")


def _vary(arg: str, raw: str) -> VaryImage:
    words = arg.split()
    level = words[0].lower()
    if level not in ("subtle", "strong") or len(words) > 2:
        raise UserError(f"bad /vary {arg!r}", hint="/vary, /vary subtle [N] or /vary strong [N]")
    index = _index(words[1], "/vary subtle N") if len(words) == 2 else None
    strength = RENDER.vary_subtle if level == "subtle" else RENDER.vary_strong
    return VaryImage(level=level, strength=strength, index=index, raw=raw)


def _pick(arg: str, raw: str) -> Pick:
    from zit_agent.backends.refine import check_strength

    words = arg.split()
    if not words or len(words) > 2:
        raise UserError("/pick needs an image number", hint="/pick 2, or /pick 2 0.5")
    strength = None
    if len(words) == 2:
        try:
            strength = float(words[1])
        except ValueError:
            raise UserError(f"bad strength {words[1]!r}", hint="/pick N 0.5") from None
        check_strength(strength)
    return Pick(index=_index(words[0], "/pick N"), strength=strength, raw=raw)


def _index(arg: str, usage: str) -> int:
    index = _int(arg, usage)
    if index < 1:
        raise UserError(f"image {index}: images count from 1", hint=usage.replace("N", "1"))
    return index


def _int(arg: str, usage: str) -> int:
    try:
        return int(arg)
    except ValueError:
        raise UserError(
            f"{usage} needs a whole number, got {arg!r}",
            hint=f"for example {usage.replace('N', '42')}",
        ) from None


def _size(arg: str, raw: str) -> Size:
    """`/size WxH` within the sides any run takes; the session's backend checks the rest (its
    grid) before the turn is sent (`ChatSession`)."""
    from zit_agent.agent.run import parse_size

    width, height = parse_size(arg)
    for side, value in (("width", width), ("height", height)):
        if not LIMITS.min_side <= value <= LIMITS.max_side:
            raise UserError(
                f"{side} {value} is out of range",
                hint=f"use {LIMITS.min_side}..{LIMITS.max_side}",
            )
    return Size(width=width, height=height, raw=raw)


def _lora(arg: str, raw: str) -> Lora:
    from zit_agent.agent.run import parse_lora

    if not arg:
        raise UserError("/lora needs a file", hint="/lora PATH.safetensors:STRENGTH")
    path, strength = parse_lora(arg)
    return Lora(path=str(Path(path).expanduser().resolve()), strength=strength, raw=raw)


def _control(arg: str, raw: str) -> Control:
    from zit_agent.backends.controlnet import check_control

    if not arg:
        raise UserError("/control needs a control map", hint="/control PATH.png, or /control none")
    if arg.lower() == "none":
        return Control(path=None, raw=raw)
    path = str(Path(arg).expanduser().resolve())
    check_control(path, RENDER.control_scale, "none")
    return Control(path=path, raw=raw)
