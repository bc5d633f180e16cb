"""The composition levers of the escape ladder (issue 25), registered in `agent/levers.py`:

- `candidates`: preview many seeds after a step or two and finish the n most different from each
  other and from the history (`agent.candidates`); M = max(`RENDER.candidates`, 2n).
- `early`: condition the first `RENDER.early_steps` steps on the empty prompt (the template with
  no text), the rest on the real sequence; taken again, one early step more.
- `adapter`: turn on the diversity adapter the request names (`--adapter PATH:S@A-B`, a LoRA or
  LoKr), gated to its steps (default the first quarter of the schedule).

All three change the render, not the sequence: the same description, a different layout. And the
render-option plumbing the agent needs for them: the early prompt's ids and the LoRA gates from
the knobs, and a shot rendered as candidates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from zit_agent.agent.state import Lever
from zit_agent.defaults import RENDER

if TYPE_CHECKING:
    from zit_agent.agent.levers import Applied
    from zit_agent.agent.nodes import AgentContext
    from zit_agent.agent.state import AgentState, RenderKnobs, Shot
    from zit_agent.backends.base import RenderedImage, RenderOptions
    from zit_agent.backends.tokenizer import QwenTokenizer

DEFAULT_ADAPTER_GATE = {"start": 0.0, "end": 0.25, "fraction": True}
CANDIDATE_SEED_STRIDE = 10_000  # candidate seeds of attempt k start k strides past the shot's


# -- the levers ----------------------------------------------------------------------------------
def candidates_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    knobs = state.knobs
    count = max(knobs.candidates * 2, RENDER.candidates, 2 * max(1, state.n))
    step = min(knobs.preview_step, ctx.base_options.steps - 1)
    new = knobs.model_copy(update={"candidates": count, "preview_step": max(1, step)})
    shots = [
        shot.model_copy(
            update={"seeds": [s + CANDIDATE_SEED_STRIDE * number for s in shot.seeds], "images": []}
        )
        for shot in state.shots
    ]
    detail = f"{count} candidates previewed at step {new.preview_step}, the most different kept"
    values = {"candidates": count, "preview_step": new.preview_step}
    return {"knobs": new, "shots": shots}, [Lever(name="candidates", detail=detail, values=values)]


def early_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    knobs = state.knobs
    top = max(0, ctx.base_options.steps - 1)
    steps = RENDER.early_steps if knobs.early_prompt is None else knobs.early_steps + 1
    steps = min(steps, top)
    prompt = "" if knobs.early_prompt is None else knobs.early_prompt
    new = knobs.model_copy(update={"early_prompt": prompt, "early_steps": steps})
    shown = repr(prompt) if prompt else "the empty prompt"
    detail = f"the first {steps} step(s) conditioned on {shown}, then the description"
    lever = Lever(name="early", detail=detail, values={"prompt": prompt, "steps": steps})
    return {"knobs": new}, [lever]


def adapter_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    knobs = state.knobs
    if knobs.adapter is None or knobs.adapter_on:
        why = "no diversity adapter given (--adapter)" if knobs.adapter is None else "already on"
        return {}, [Lever(name="adapter", detail=f"skipped: {why}", values={})]
    path, strength, gate = knobs.adapter
    new = knobs.model_copy(update={"adapter_on": True})
    detail = f"diversity adapter {path} at {strength} on steps {_gate_text(gate)}"
    values = {"path": path, "strength": strength, "gate": gate}
    return {"knobs": new}, [Lever(name="adapter", detail=detail, values=values)]


def _gate_text(gate: dict[str, Any]) -> str:
    from zit_agent.backends.base import StepGate

    return "@" + StepGate(**gate).text()


def adapter_knob(spec: str | None) -> list[Any] | None:
    """`--adapter PATH:STRENGTH@START-END` -> the knob [path, strength, gate] (checked)."""
    if not spec:
        return None
    from zit_agent.agent.run import parse_lora_spec

    path, strength, gate = parse_lora_spec(spec)
    return [path, strength, gate.model_dump() if gate else dict(DEFAULT_ADAPTER_GATE)]


# -- render options from the knobs ---------------------------------------------------------------
def step_lever_options(
    base: RenderOptions, knobs: RenderKnobs, tokenizer: QwenTokenizer, max_tokens: int
) -> dict[str, Any]:
    """The `RenderOptions` changes the knobs make: the early prompt's ids, the LoRA gates, the
    diversity adapter stacked on top."""
    from zit_agent.backends.base import StepGate

    update: dict[str, Any] = {"early_steps": 0, "early_ids": None}
    if knobs.early_prompt is not None and knobs.early_steps > 0:
        update |= {
            "early_steps": knobs.early_steps,
            "early_ids": early_ids(knobs.early_prompt, tokenizer, max_tokens),
        }
    extras = list(base.extra_loras)
    gates: list[StepGate | None] = []
    if knobs.lora:
        first = StepGate(**knobs.lora_gate) if knobs.lora_gate else None
        rest = list(base.lora_gates[1:]) + [None] * (len(extras) - len(base.lora_gates[1:]))
        gates = [first, *rest[: len(extras)]]
    if knobs.adapter is not None and knobs.adapter_on:
        path, strength, gate = knobs.adapter
        if knobs.lora:
            extras.append((path, strength))
            gates.append(StepGate(**gate))
        else:  # the adapter is the only LoRA
            update |= {"lora": path, "lora_strength": strength}
            gates = [StepGate(**gate)]
    update["extra_loras"] = extras
    update["lora_gates"] = gates if any(g is not None for g in gates) else []
    return update


def early_ids(prompt: str, tokenizer: QwenTokenizer, max_tokens: int) -> list[int]:
    """An early prompt's plain sequence; an empty prompt is the template with no user text."""
    from zit_agent.sequence import ChatSequence, assemble, empty_prompt_ids

    if not prompt.strip():
        return empty_prompt_ids(tokenizer)
    return assemble(ChatSequence.plain(prompt.strip()), tokenizer, max_tokens=max_tokens).ids


# -- a shot as candidates ------------------------------------------------------------------------
def render_candidate_shot(
    ctx: AgentContext, state: AgentState, shot: Shot, options: RenderOptions
) -> tuple[list[RenderedImage], dict[str, Any]]:
    """The shot's share of the M candidates previewed (seeds from its first), its n (= its seed
    count) most different finished; the kept images and the report."""
    from zit_agent.agent.candidates import render_with_candidates
    from zit_agent.backends.embedders import HashEmbedder

    knobs = state.knobs
    keep = max(1, len(shot.seeds))
    # The candidates are shared out over the shots (one shot per image after `vary`); each shot's
    # seeds step by the shot count, so no two shots preview the same seed.
    total = sum(max(1, len(s.seeds)) for s in state.shots) or 1
    count = max(keep, math.ceil(knobs.candidates * keep / total))
    stride = max(1, len(state.shots))
    seeds = [shot.seeds[0] + i * stride for i in range(count)]
    embedder = ctx.embedder or HashEmbedder()
    kept, report = render_with_candidates(
        ctx.backend, embedder, ctx.store, shot.sequence_ids, seeds, options, keep=keep,
        preview_step=knobs.preview_step,
    )  # fmt: skip
    return kept, report.model_dump()
