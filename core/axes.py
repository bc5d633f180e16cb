"""Rut axes: which choices a description states (shot size, camera angle, lighting, ...).

The vocabulary lives in `prompts/axes.yaml`. `read_axes` finds the values a description states by
whole-word phrase matching (longest phrase first, so "extreme close-up" is not also a "close-up").
`summarize` compares a set of descriptions: the axes none of them states, and the axes all of them
state with the same value; those are the axes a rut runs along and what the writer should vary.
`pick_values` chooses fresh values for an axis, avoiding recently used ones.

This is a keyword reader, not a parser, meant for the short, concrete descriptions the writer
produces. It knows one piece of grammar: a phrase negated within its clause ("not a close-up",
"rather than a wide shot", "no dramatic lighting") is not stated.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from functools import cache

from pydantic import BaseModel, Field

from zit_agent.errors import UserError


class Axis(BaseModel):
    name: str
    about: str
    person: bool = False
    values: dict[str, list[str]]  # value -> the phrases that state it (the value itself included)

    @property
    def value_names(self) -> list[str]:
        return list(self.values)


class AxisSummary(BaseModel):
    """What a set of descriptions has in common, axis by axis."""

    unstated: list[str] = Field(default_factory=list, description="Axes no description states.")
    repeated: dict[str, str] = Field(
        default_factory=dict, description="Axes every description states with the same value."
    )
    stated: list[dict[str, str]] = Field(
        default_factory=list, description="read_axes of each description."
    )

    @property
    def to_vary(self) -> list[str]:
        """Repeated axes first (the rut is explicit there), then unstated ones."""
        return list(self.repeated) + [a for a in self.unstated if a not in self.repeated]


@cache
def _vocabulary() -> tuple[dict[str, Axis], tuple[str, ...]]:
    import yaml

    from zit_agent.prompts import data_path

    data = yaml.safe_load(data_path("axes.yaml").read_text(encoding="utf-8"))
    axes = {}
    for name, spec in data["axes"].items():
        values = {v: _unique([v, *(phrases or [])]) for v, phrases in spec["values"].items()}
        axes[name] = Axis(
            name=name, about=spec["about"], person=spec.get("person", False), values=values
        )
    return axes, tuple(data.get("people", []))


def _unique(phrases: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(p.lower() for p in phrases))


def load_axes() -> dict[str, Axis]:
    """All axes, in the order of the data file."""
    return _vocabulary()[0]


def axis_names() -> list[str]:
    return list(load_axes())


def get_axis(name: str) -> Axis:
    axes = load_axes()
    if name not in axes:
        raise UserError(f"unknown axis {name!r}", hint=f"use one of {', '.join(axes)}")
    return axes[name]


def values(axis: str) -> list[str]:
    """The value names of `axis`, in the data file's order."""
    return get_axis(axis).value_names


@cache
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first: at one position the regex takes the first alternative that matches.
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@cache
def _phrase_index(axis_name: str) -> tuple[re.Pattern[str], dict[str, str]]:
    axis = load_axes()[axis_name]
    owner = {p: value for value, phrases in axis.values.items() for p in phrases}
    return _pattern(tuple(owner)), owner


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2010", "-").replace("\u2011", "-")


NEGATORS = frozenset(
    {"not", "no", "never", "without", "nor", "instead", "rather", "avoid", "avoiding"}
)
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\n]")


def _negated(text: str, start: int) -> bool:
    """Whether one of the three words before `start`, in the same clause, negates it."""
    clause = _CLAUSE_BREAK.split(text[max(0, start - 40) : start])[-1]
    return any(word in NEGATORS for word in re.findall(r"[a-z']+", clause.lower())[-3:])


def stated_values(text: str, axis: str) -> list[str]:
    """Every value of `axis` that `text` states, in order of first mention."""
    pattern, owner = _phrase_index(get_axis(axis).name)
    text = _normalise(text)
    found = (
        owner[m.group(0).lower()] for m in pattern.finditer(text) if not _negated(text, m.start())
    )
    return list(dict.fromkeys(found))


def read_axes(text: str) -> dict[str, str]:
    """axis -> the value `text` states on it (the first one mentioned), for the axes it states."""
    found = {}
    for name in load_axes():
        stated = stated_values(text, name)
        if stated:
            found[name] = stated[0]
    return found


def shows_people(text: str, stated: dict[str, str] | None = None) -> bool:
    """Whether the description shows people (the person axes only matter then)."""
    stated = read_axes(text) if stated is None else stated
    if stated.get("count") == "none":
        return False
    axes = load_axes()
    if any(axes[a].person for a in stated):
        return True
    return bool(_pattern(_vocabulary()[1]).search(_normalise(text)))


def summarize(texts: list[str]) -> AxisSummary:
    """The axes a set of descriptions leaves unstated, and those it states identically.

    Person axes count only when some description shows people.
    """
    stated = [read_axes(t) for t in texts]
    people = any(shows_people(t, s) for t, s in zip(texts, stated, strict=True))
    relevant = [a.name for a in load_axes().values() if people or not a.person]
    unstated = [a for a in relevant if not any(a in s for s in stated)]
    repeated: dict[str, str] = {}
    if len(texts) >= 2:
        for axis in relevant:
            seen = {s.get(axis) for s in stated}
            if len(seen) == 1 and (value := seen.pop()) is not None:
                repeated[axis] = value
    return AxisSummary(unstated=unstated, repeated=repeated, stated=stated)


def pick_values(axis: str, *, avoid: Iterable[str] = (), k: int = 1, seed: int = 0) -> list[str]:
    """`k` values of `axis` not in `avoid` (recently used), in a seeded random order.

    When fewer than `k` fresh values are left, the rest come from the avoided ones, oldest first
    (`avoid` is ordered oldest to newest).
    """
    all_values = values(axis)
    avoid = [v for v in avoid if v in all_values]
    fresh = [v for v in all_values if v not in avoid]
    random.Random(f"{axis}:{seed}").shuffle(fresh)
    reused = list(dict.fromkeys(avoid))
    return (fresh + reused)[:k]


def missing(text: str, wanted: dict[str, str]) -> dict[str, str]:
    """The wanted axis values that `text` does not state (axis -> wanted value)."""
    for axis, value in wanted.items():
        if value not in values(axis):
            raise UserError(
                f"unknown value {value!r} for axis {axis!r}",
                hint=f"use one of {', '.join(values(axis))}",
            )
    return {axis: value for axis, value in wanted.items() if value not in stated_values(text, axis)}
