"""Samplers by ComfyUI's names, and the scheduler object each one runs as.

`ZImagePipeline` hands its scheduler a sigma schedule (`sigmas=`, from `backends/schedules.py`)
and calls `step` with the DiT's velocity. Each sampler here is such a scheduler, built for the
shift its schedule was made with:

- `euler`: flow-matching Euler, the model's own (default; what Turbo was distilled for).
- `euler_ancestral` (old name `euler_a`): ComfyUI's flow-model Euler ancestral: steps below the
  next sigma and adds fresh noise back. More variety, softer detail.
- `er_sde`: ComfyUI's ER-SDE-Solver-3, a stochastic solver up to third order.
- `dpmpp_2m`: DPM-Solver++(2M), deterministic second-order multistep.
- `res_multistep`: ComfyUI's RES multistep, deterministic second order (ComfyUI's own Z-Image
  Turbo template uses it with `simple`).
- `lcm`: ComfyUI's LCM: predicts the clean latent and re-noises it each step.
- `unipc`: diffusers' UniPC multistep in flow mode (not ComfyUI's `uni_pc`).

The update rules live in `backends/flow_samplers.py` (imported when a sampler is built, so this
module stays light). Stochastic samplers take their noise from the image seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zit_agent.defaults import RENDER
from zit_agent.errors import UserError


@dataclass(frozen=True)
class Sampler:
    name: str
    description: str
    stochastic: bool  # draws fresh noise in its steps (from the image seed)
    build: Callable[[dict[str, Any], float], Any]
    a1111: str  # the name A1111 and the tools that read its `parameters` text use
    aliases: tuple[str, ...] = ()


def _flow(class_name: str) -> Callable[[dict[str, Any], float], Any]:
    def build(config: dict[str, Any], shift: float):
        from zit_agent.backends import flow_samplers

        cls = getattr(flow_samplers, class_name)
        return cls(num_train_timesteps=config.get("num_train_timesteps", 1000), shift=shift)

    return build


def _unipc(config: dict[str, Any], shift: float):
    from zit_agent.backends.flow_samplers import FlowUniPC

    return FlowUniPC(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=1.0,  # the schedule it is given is already shifted
    )


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler(
            "euler",
            "flow-matching Euler, the model's own (default)",
            False,
            _flow("FlowEuler"),
            "Euler",
        ),
        Sampler(
            "euler_ancestral",
            "Euler ancestral for flow models: re-noises each step (more variety)",
            True,
            _flow("FlowEulerAncestral"),
            "Euler a",
            aliases=("euler_a",),
        ),
        Sampler(
            "er_sde",
            "ER-SDE-Solver-3: stochastic, up to third order",
            True,
            _flow("FlowErSde"),
            "ER SDE",
        ),
        Sampler(
            "dpmpp_2m",
            "DPM-Solver++(2M): deterministic multistep",
            False,
            _flow("FlowDpmpp2m"),
            "DPM++ 2M",
        ),
        Sampler(
            "res_multistep",
            "RES multistep: deterministic second order",
            False,
            _flow("FlowResMultistep"),
            "Res Multistep",
        ),
        Sampler(
            "lcm",
            "LCM: jump to the clean latent, re-noise each step",
            True,
            _flow("FlowLcm"),
            "LCM",
        ),
        Sampler("unipc", "diffusers' UniPC multistep in flow mode", False, _unipc, "UniPC"),
    )
}
ALIASES = {alias: s.name for s in SAMPLERS.values() for alias in s.aliases}
DEFAULT_SAMPLER = RENDER.sampler


def get_sampler(name: str) -> Sampler:
    key = name.strip().lower().replace("-", "_")
    try:
        return SAMPLERS[ALIASES.get(key, key)]
    except KeyError:
        raise UserError(
            f"unknown sampler {name!r}", hint=f"use one of {', '.join(SAMPLERS)}"
        ) from None


def make_scheduler(name: str, model_config: dict[str, Any], shift: float):
    """The scheduler object of sampler `name` for a schedule made at `shift`.

    Returns `(scheduler, sampler)`."""
    sampler = get_sampler(name)
    return sampler.build(dict(model_config), float(shift)), sampler
