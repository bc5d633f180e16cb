"""Sampler (scheduler) choice by name, and the static shift.

`ZImagePipeline` hands its scheduler a sigma schedule (`sigmas=`) and a `mu`, so only schedulers
whose `set_timesteps` takes both can drive it. Of the flow-matching schedulers diffusers ships,
these do:

- `euler`: `FlowMatchEulerDiscreteScheduler` from the model's own scheduler config (Turbo: static
  shift 3.0). The default, and what Z-Image-Turbo was distilled for.
- `euler_a`: the same with `stochastic_sampling=True`: each step predicts the clean latent and
  re-noises it with fresh noise (ancestral style). More variety, softer detail.
- `lcm`: `FlowMatchLCMScheduler`, the consistency-model sampler (also re-noises at every step).
- `unipc`: `UniPCMultistepScheduler` in flow mode (`use_flow_sigmas`, flow prediction), a
  multistep predictor-corrector.

Flow-matching schedulers that do not accept a sigma schedule (Heun, DPM-Solver, DEIS, SA-Solver)
cannot run inside this pipeline and are not offered. `shift` overrides the static shift of every
sampler; None keeps the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zit_agent.errors import UserError


@dataclass(frozen=True)
class Sampler:
    name: str
    description: str
    stochastic: bool  # draws fresh noise in its steps (from torch's global generator)
    build: Callable[[dict[str, Any], float], Any]
    a1111: str  # the name A1111 and the tools that read its `parameters` text use


def _euler(config: dict[str, Any], shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(config, shift=shift)


def _euler_ancestral(config: dict[str, Any], shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(
        config, shift=shift, stochastic_sampling=True
    )


def _lcm(config: dict[str, Any], shift: float):
    from diffusers import FlowMatchLCMScheduler

    return FlowMatchLCMScheduler.from_config(config, shift=shift)


def _unipc(config: dict[str, Any], shift: float):
    return _flow_unipc_class()(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=shift,
    )


def _flow_unipc_class():
    """UniPC whose `set_timesteps` also takes the sigma list the pipeline passes (UniPC itself
    wants a numpy array there)."""
    import numpy as np
    from diffusers import UniPCMultistepScheduler

    class FlowUniPCMultistepScheduler(UniPCMultistepScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
            sigmas = np.asarray(sigmas, dtype=np.float64) if sigmas is not None else None
            return super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu)

    return FlowUniPCMultistepScheduler


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("euler", "flow-matching Euler, the model's own (default)", False, _euler, "Euler"),
        Sampler(
            "euler_a",
            "flow-matching Euler, stochastic (ancestral style)",
            True,
            _euler_ancestral,
            "Euler a",
        ),
        Sampler(
            "lcm", "flow-matching LCM (consistency sampler, re-noises each step)", True, _lcm, "LCM"
        ),
        Sampler("unipc", "UniPC multistep in flow-matching mode", False, _unipc, "UniPC"),
    )
}
DEFAULT_SAMPLER = "euler"


def get_sampler(name: str) -> Sampler:
    try:
        return SAMPLERS[name.lower().replace("-", "_")]
    except KeyError:
        raise UserError(
            f"unknown sampler {name!r}", hint=f"use one of {', '.join(SAMPLERS)}"
        ) from None


def model_shift(config: dict[str, Any]) -> float:
    """The static shift in a flow-matching scheduler config (`shift`, or `flow_shift`)."""
    return float(config.get("shift", config.get("flow_shift", 1.0)))


def make_scheduler(name: str, model_config: dict[str, Any], shift: float | None = None):
    """A scheduler for sampler `name`, built on the model's own scheduler config.

    Returns `(scheduler, sampler, shift_used)`.
    """
    if shift is not None and not shift > 0:
        raise UserError(f"shift {shift} is not positive", hint="use a value such as 3.0")
    sampler = get_sampler(name)
    used = shift if shift is not None else model_shift(model_config)
    return sampler.build(dict(model_config), used), sampler, used
