"""Sigma schedules by ComfyUI's scheduler names, and the shift they are computed with.

A flow model's noise level at training time t (t = 1/1000 ... 1) is the shifted sigma
`shift*t / (1 + (shift-1)*t)`; ComfyUI keeps these 1000 values as the model's sigma table.
Each scheduler picks `steps` sigmas from it (or computes them) and ends the list at 0:

- `simple`: every (1000/steps)-th table entry from the top. Turbo's own schedule (at 8 steps the
  same sigmas as diffusers' `ZImagePipeline` default). The default.
- `sgm_uniform`: flow time t spaced evenly from 1 to the table's smallest sigma over steps + 1
  points, the last dropped: nearly `simple` (ComfyUI's `timestep(sigma)` is `sigma*multiplier`,
  so that end point is a sigma used as a time and shifted once more).
- `normal`: the same spacing over `steps` points, both ends kept: the last step before 0 starts
  at about 0.009, so one of the steps does almost nothing.
- `beta`: table entries at the quantiles of a Beta(0.6, 0.6) distribution (more steps at both
  ends); repeated entries are dropped, so very long schedules can have fewer steps.
- `bong_tangent` (RES4LYF): two arctan stages, 1 -> 0.5 -> 0, pivots at 60% of the steps. It does
  not read the model's sigma table, so the shift does not change it.

Values are float32, computed with the same operations as ComfyUI (and diffusers, for `simple`), so
the recorded sigmas are the ones the sampler used. The shift itself is the model's, a static value,
or `auto`: resolution-dependent (`resolve_shift`). numpy and scipy are imported when used.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from zit_agent.defaults import AUTO_SHIFT, RENDER
from zit_agent.errors import UserError

TABLE_SIZE = 1000  # ComfyUI's flow sigma table: t = i/1000, i = 1..1000
BETA_ALPHA = BETA_BETA = 0.6  # ComfyUI's beta scheduler
BONG_PIVOT, BONG_SLOPE, BONG_MIDDLE = 0.6, 0.2, 0.5  # RES4LYF's bong_tangent defaults
ER_SDE_FIRST_OFFSET = 1e-4  # er_sde starts at percent 1e-4, not sigma 1 (logit(1) is infinite)

SCHEDULERS: dict[str, str] = {
    "simple": "every (1000/steps)-th sigma of the model's table: Turbo's own schedule (default)",
    "sgm_uniform": "t even from 1 to the smallest table sigma, the last dropped: nearly simple",
    "normal": "t even from 1 to the smallest table sigma, both kept: the last step is nearly 0",
    "beta": "the table at Beta(0.6, 0.6) quantiles: more steps near both ends",
    "bong_tangent": "RES4LYF: two arctan stages 1 -> 0.5 -> 0; ignores the shift",
}
DEFAULT_SCHEDULER = RENDER.scheduler
SHIFT_FORMULAS = ("diffusers", "notes")


def get_scheduler(name: str) -> str:
    """The scheduler's canonical name; a `UserError` for an unknown one."""
    key = name.strip().lower().replace("-", "_")
    if key not in SCHEDULERS:
        raise UserError(f"unknown scheduler {name!r}", hint=f"use one of {', '.join(SCHEDULERS)}")
    return key


def sigma_schedule(name: str, steps: int, shift: float) -> tuple[float, ...]:
    """The sigmas of scheduler `name` for `steps` steps at `shift`: steps + 1 values from about 1
    down to 0 (`beta` may drop repeats), each a float32 value."""
    if steps < 1:
        raise UserError(f"steps {steps} is below 1", hint="Turbo uses 8")
    if not shift > 0:
        raise UserError(f"shift {shift} is not positive", hint="use a value such as 3.0")
    return _schedule(get_scheduler(name), int(steps), float(shift))


@functools.lru_cache(maxsize=64)
def _schedule(name: str, steps: int, shift: float) -> tuple[float, ...]:
    import numpy as np

    if name == "bong_tangent":
        values = _bong_tangent(steps)
    elif name in ("normal", "sgm_uniform"):
        values = _normal(steps, shift, sgm=name == "sgm_uniform")
    else:
        values = (
            _simple(shift, steps) if name == "simple" else _beta(flow_sigma_table(shift), steps)
        )
    return tuple(float(v) for v in np.asarray(values, dtype=np.float32))


def time_snr_shift(shift: float, t):
    """The shifted sigma of flow time t, in t's precision (float32 arrays stay float32)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flow_sigma_table(shift: float):
    """ComfyUI's sigma table of a flow model: float32, ascending, index i is t = (i+1)/1000."""
    import numpy as np

    t = np.arange(1, TABLE_SIZE + 1, dtype=np.float32) / np.float32(TABLE_SIZE)
    return time_snr_shift(shift, t)


def _simple(shift: float, steps: int) -> list[float]:
    """Evenly spaced flow times from 1 down to 1/steps, shifted: the schedule diffusers' Z-Image
    pipeline uses (`torch.linspace(1, 1/steps, steps)`, shifted in float32 by the scheduler), so
    the default render equals diffusers' pixel for pixel. ComfyUI's `simple` picks the same times
    from its 1000-entry table: identical whenever `steps` divides 1000 (8 does), otherwise a time
    may differ by up to 1/1000 (its table rounds)."""
    import numpy as np
    import torch

    t = torch.linspace(1.0, 1 / steps, steps).numpy().astype(np.float32)
    return list(time_snr_shift(np.float32(shift), t)) + [0.0]


def _normal(steps: int, shift: float, *, sgm: bool) -> list[float]:
    """ComfyUI's `normal_scheduler` for a flow model: linear in `timestep(sigma) = sigma`
    (Z-Image's multiplier is 1), each point then shifted again by `sigma(t)`."""
    import numpy as np

    table = flow_sigma_table(shift)
    start, end = float(table[-1]), float(table[0])
    append_zero = True
    if sgm:
        ts = np.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(time_snr_shift(shift, np.float32(end))), 0, abs_tol=1e-5):
            steps, append_zero = steps + 1, False
        ts = np.linspace(start, end, steps)
    sigmas = list(time_snr_shift(shift, ts.astype(np.float32)))
    return sigmas + [0.0] if append_zero else sigmas


def _beta(table, steps: int) -> list[float]:
    import numpy as np
    from scipy.stats import beta

    last = len(table) - 1
    quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
    indices = np.rint(beta.ppf(quantiles, BETA_ALPHA, BETA_BETA) * last)
    sigmas, previous = [], -1.0
    for index in indices:
        if index != previous:
            sigmas.append(table[int(index)])
        previous = index
    return sigmas + [0.0]


def _bong_tangent(steps: int) -> list[float]:
    """RES4LYF's `bong_tangent_scheduler` with its defaults (start 1, middle 0.5, end 0)."""
    if steps < 2:
        raise UserError("bong_tangent needs 2 or more steps", hint="use 8 (Turbo) or pick simple")
    points = steps + 2
    midpoint = int((points * BONG_PIVOT + points * BONG_PIVOT) / 2)
    pivot = int(points * BONG_PIVOT)
    slope = BONG_SLOPE / (points / 40)
    second_len = points - midpoint
    first_len = points - second_len
    first = _arctan_stage(first_len, slope, pivot, 1.0, BONG_MIDDLE)
    second = _arctan_stage(second_len, slope, pivot - first_len, BONG_MIDDLE, 0.0)
    return first[:-1] + second


def _arctan_stage(count: int, slope: float, pivot: float, start: float, end: float) -> list[float]:
    """`count` points of a falling arctan curve, scaled to run exactly from `start` to `end`."""

    def curve(x: float) -> float:
        return ((2 / math.pi) * math.atan(-slope * (x - pivot)) + 1) / 2

    top, bottom = curve(0), curve(count - 1)
    return [(curve(x) - bottom) / (top - bottom) * (start - end) + end for x in range(count)]


# -- shift ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShiftChoice:
    """The shift a render uses, and where it came from: `model` (the scheduler config's),
    `static` (given), or `auto` with the formula and its parameters in `auto`."""

    value: float
    source: str
    auto: dict[str, Any] | None = None


def parse_shift(value: Any) -> float | str | None:
    """A shift as given: None (the model's), a positive number (also as text), or "auto" /
    "auto:diffusers" / "auto:notes" (returned with the formula named)."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise UserError(f"shift {value!r} is not a number", hint=_SHIFT_HINT)
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("auto"):
            formula = text.partition(":")[2] or AUTO_SHIFT.formula
            if formula not in SHIFT_FORMULAS:
                raise UserError(f"unknown shift formula {formula!r}", hint=_SHIFT_HINT)
            return f"auto:{formula}"
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"shift {value!r} is not a number", hint=_SHIFT_HINT) from None
    if not isinstance(value, int | float) or not math.isfinite(value) or not value > 0:
        raise UserError(f"shift {value!r} is not a positive number", hint=_SHIFT_HINT)
    return float(value)


_SHIFT_HINT = "use a positive number such as 3.0, auto, auto:diffusers or auto:notes"


def model_shift(config: dict[str, Any]) -> float:
    """The static shift in a flow-matching scheduler config (`shift`, or `flow_shift`)."""
    return float(config.get("shift", config.get("flow_shift", 1.0)))


def resolve_shift(
    spec: Any, width: int, height: int, scheduler_config: dict[str, Any]
) -> ShiftChoice:
    """The shift for a `width` x `height` render: `spec` as `parse_shift` reads it."""
    parsed = parse_shift(spec)
    if parsed is None:
        return ShiftChoice(model_shift(scheduler_config), "model")
    if isinstance(parsed, float):
        return ShiftChoice(parsed, "static")
    formula = parsed.partition(":")[2]
    params = auto_shift_params(scheduler_config)
    seq_len = width * height // 256  # latent patches: 8x VAE, then 2x2 patches
    mu = (diffusers_mu if formula == "diffusers" else notes_mu)(seq_len, **params)
    record = {"formula": formula, "image_seq_len": seq_len, **params, "mu": mu}
    return ShiftChoice(math.exp(mu), "auto", record)


def auto_shift_params(scheduler_config: dict[str, Any]) -> dict[str, Any]:
    """The auto-shift parameters: the model's scheduler config's, else `AUTO_SHIFT`'s."""
    return {
        "base_seq_len": int(scheduler_config.get("base_image_seq_len", AUTO_SHIFT.base_seq_len)),
        "max_seq_len": int(scheduler_config.get("max_image_seq_len", AUTO_SHIFT.max_seq_len)),
        "base_shift": float(scheduler_config.get("base_shift", AUTO_SHIFT.base_shift)),
        "max_shift": float(scheduler_config.get("max_shift", AUTO_SHIFT.max_shift)),
    }


def diffusers_mu(
    seq_len: int, *, base_seq_len: int, max_seq_len: int, base_shift: float, max_shift: float
) -> float:
    """diffusers' `calculate_shift`: mu on the straight line through (base_seq_len, base_shift)
    and (max_seq_len, max_shift)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * slope + base_shift - slope * base_seq_len


def notes_mu(
    seq_len: int, *, base_seq_len: int, max_seq_len: int, base_shift: float, max_shift: float
) -> float:
    """The community formula `(base_shift - max_shift) / (256 - W*H/256) * 3840 + base_shift`
    (256 and 3840 are base_seq_len and max_seq_len - base_seq_len). A hyperbola in W*H: it
    equals diffusers' line only at max_seq_len (1024x1024) and has a pole at base_seq_len."""
    if seq_len <= base_seq_len:
        side = int(math.sqrt(base_seq_len * 256))
        raise UserError(
            f"the notes' shift formula needs images larger than {side}x{side} "
            f"(it divides by {base_seq_len} - W*H/256)",
            hint="use auto:diffusers or a static shift for this size",
        )
    return (base_shift - max_shift) / (base_seq_len - seq_len) * (
        max_seq_len - base_seq_len
    ) + base_shift
