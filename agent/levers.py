"""The escape levers, each registered once: its name, what it changes, whether it needs a new
sequence, whether a person can ask for it in chat, and the function that applies it.

The escape ladder's names (`--ladder`, suites), the chat commands that force a lever (`/vary`,
`/shorter`), the commands' help and the graph's routing are all read from this table; nothing else
lists levers. An installed package adds a lever through the entry-point group `zit_agent.levers`,
the same way writers, image backends and embedders are added (`zit_agent.backends.registry`):

    [project.entry-points."zit_agent.levers"]
    flip = "my_package.levers:FLIP"      # a `LeverSpec` whose name is "flip"

A lever's function takes `(ctx, state, attempt_number)` (the graph's `AgentContext` and
`AgentState`) and returns `(state changes, [Lever records])`: the changes are merged into the
state before the next render, and the records say what was changed (the judge then adds what it
did, `escape.record_effects`). A lever that changes the sequence returns new `shots`; one that
changes the render returns new `knobs`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

from zit_agent.defaults import AGENT
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from zit_agent.agent.nodes import AgentContext
    from zit_agent.agent.state import AgentState, Lever

ENTRY_POINTS = "zit_agent.levers"
Applied = tuple[dict[str, Any], list["Lever"]]
LeverFunction = Callable[["AgentContext", "AgentState", int], Applied]


@dataclass(frozen=True)
class LeverSpec:
    name: str
    summary: str  # one line: what it changes (chat help, docs)
    changes: Literal["sequence", "render", "seeds"]  # what of the next attempt it changes
    apply: str | LeverFunction  # the function, or "module:function" (imported when used)
    command: bool = False  # the person may ask for it in chat as /NAME
    ladder: bool = True  # a step the escape ladder may take (False: applied by another lever)

    @property
    def new_sequence(self) -> bool:
        """Whether the next attempt needs a newly assembled sequence."""
        return self.changes == "sequence"

    def function(self) -> LeverFunction:
        if callable(self.apply):
            return self.apply
        module, _, attribute = self.apply.partition(":")
        return getattr(importlib.import_module(module), attribute)


BUILTINS: tuple[LeverSpec, ...] = (
    LeverSpec(
        "vary", "a new take: fresh values on the axes that repeat (shot, angle, framing, ...)",
        "sequence", "zit_agent.agent.nodes:vary_lever", command=True,
    ),
    LeverSpec(
        "shorter", "a shorter description (short prompts vary more)",
        "sequence", "zit_agent.agent.nodes:shorter_lever", command=True,
    ),
    LeverSpec(
        "noise", "conditioning noise on the text embedding in the first steps",
        "render", "zit_agent.agent.nodes:noise_lever",
    ),
    LeverSpec(
        "layer", "a different text-encoder hidden layer", "render",
        "zit_agent.agent.nodes:layer_lever",
    ),
    LeverSpec("seeds", "new seeds", "seeds", "zit_agent.agent.nodes:seeds_lever"),
    # Composition levers (issue 25, `agent/diversity.py`): cheap, they change the layout only.
    LeverSpec(
        "candidates", "preview many seeds after a step or two, finish the most different",
        "render", "zit_agent.agent.diversity:candidates_lever", command=True,
    ),
    LeverSpec(
        "early", "the first steps on the empty prompt, then the description (a new layout)",
        "render", "zit_agent.agent.diversity:early_lever", command=True,
    ),
    LeverSpec(
        "adapter", "the diversity adapter of --adapter, in the first steps only",
        "render", "zit_agent.agent.diversity:adapter_lever",
    ),
    # Applied by `vary` when the writer repeats itself (higher temperature, an avoid list).
    LeverSpec(
        "writer", "the writer's temperature and avoid list", "sequence",
        "zit_agent.agent.nodes:vary_lever", ladder=False,
    ),
)  # fmt: skip


@cache
def registered() -> dict[str, LeverSpec]:
    """The built-in levers plus those installed packages register (a plugin cannot replace a
    built-in)."""
    found: dict[str, LeverSpec] = {}
    for point in entry_points(group=ENTRY_POINTS):
        spec = point.load()
        if not isinstance(spec, LeverSpec) or spec.name != point.name:
            raise UserError(
                f"the lever entry point {point.name!r} ({point.value}) is not a LeverSpec named "
                f"{point.name!r}",
                hint="point it at a zit_agent.agent.levers.LeverSpec with that name",
            )
        found[spec.name] = spec
    return {**found, **{spec.name: spec for spec in BUILTINS}}


def get(name: str) -> LeverSpec:
    table = registered()
    if name not in table:
        raise UserError(f"unknown lever {name!r}", hint=f"use one of {', '.join(ladder_names())}")
    return table[name]


def ladder_names() -> list[str]:
    """The levers the ladder may take, built-ins in their default order first."""
    steps = [spec.name for spec in registered().values() if spec.ladder]
    return sorted(steps, key=lambda n: (AGENT.ladder.index(n) if n in AGENT.ladder else 99, n))


def command_names() -> list[str]:
    """Levers a person can force in chat (`/NAME`)."""
    return [spec.name for spec in registered().values() if spec.command]


def parse_ladder(text: str | list[str] | None) -> list[str]:
    """A ladder as given (comma-separated text or a list) -> its lever names, each checked;
    None: the default order."""
    if text is None:
        return list(AGENT.ladder)
    steps = text if isinstance(text, list) else [s.strip() for s in text.split(",") if s.strip()]
    known = ladder_names()
    unknown = [s for s in steps if s not in known]
    if not steps or unknown:
        raise UserError(
            f"bad escape ladder {text!r}" + (f": unknown {', '.join(unknown)}" if unknown else ""),
            hint=f"list steps from {', '.join(known)}, comma-separated",
        )
    return list(steps)


def apply(name: str, ctx: AgentContext, state: AgentState, number: int) -> Applied:
    return get(name).function()(ctx, state, number)
