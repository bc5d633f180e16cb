"""Sigma schedules by ComfyUI's names, and the shift: against ComfyUI's algorithms as ComfyUI
writes them (torch, float32), against diffusers' own schedule, and the values in docs/sampling.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zit_agent.backends.schedules import (
    SCHEDULERS,
    diffusers_mu,
    notes_mu,
    parse_shift,
    resolve_shift,
    sigma_schedule,
)
from zit_agent.defaults import AUTO_SHIFT
from zit_agent.errors import UserError

# 8 steps at shift 3, as docs/sampling.md lists them (ComfyUI 0.3.x / RES4LYF 1.1.0 algorithms).
COMFY_8_STEPS_SHIFT_3 = {
    "simple": (1.0, 0.954545, 0.9, 0.833333, 0.75, 0.642857, 0.5, 0.3, 0.0),
    "sgm_uniform": (1.0, 0.954694, 0.900359, 0.833998, 0.751121, 0.644686, 0.502985, 0.305009, 0.0),
    "normal": (1.0, 0.947542, 0.882788, 0.800837, 0.693793, 0.548046, 0.337972, 0.008929, 0.0),
    "beta": (1.0, 0.980249, 0.933535, 0.859522, 0.750749, 0.596386, 0.392171, 0.155914, 0.0),
    "bong_tangent": (1.0, 0.971344, 0.929423, 0.862888, 0.7443, 0.5, 0.213122, 0.069646, 0.0),
}


# -- ComfyUI's schedulers, transcribed from comfy/samplers.py and comfy/model_sampling.py --------
class ComfyFlowSampling:
    """ModelSamplingDiscreteFlow as ComfyUI sets it up for Z-Image (multiplier 1.0)."""

    def __init__(self, shift: float, multiplier: float = 1.0):
        self.shift, self.multiplier = shift, multiplier
        self.sigmas = self.sigma((torch.arange(1, 1001, 1) / 1000) * multiplier)

    def sigma(self, timestep):
        t = timestep / self.multiplier
        return t if self.shift == 1.0 else self.shift * t / (1 + (self.shift - 1) * t)

    def timestep(self, sigma):
        return sigma * self.multiplier


def comfy_simple(ms, steps):
    stride = len(ms.sigmas) / steps
    return [float(ms.sigmas[-(1 + int(x * stride))]) for x in range(steps)] + [0.0]


def comfy_normal(ms, steps, sgm=False):
    start, end = ms.timestep(ms.sigmas[-1]), ms.timestep(ms.sigmas[0])
    append_zero = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps, append_zero = steps + 1, False
        timesteps = torch.linspace(float(start), float(end), steps)
    sigmas = [float(ms.sigma(t)) for t in timesteps]
    return sigmas + [0.0] if append_zero else sigmas


def comfy_beta(ms, steps, alpha=0.6, beta=0.6):
    import scipy.stats

    total = len(ms.sigmas) - 1
    ts = np.rint(
        scipy.stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), alpha, beta) * total
    )
    sigmas, last = [], -1
    for t in ts:
        if t != last:
            sigmas.append(float(ms.sigmas[int(t)]))
        last = t
    return sigmas + [0.0]


def res4lyf_bong_tangent(steps, start=1.0, middle=0.5, end=0.0, pivot=0.6, slope=0.2):
    """RES4LYF sigmas.py `bong_tangent_scheduler` with its defaults (pivots and slopes equal)."""

    def stage(n, slope, pivot, start, end):
        f = lambda x: ((2 / math.pi) * math.atan(-slope * (x - pivot)) + 1) / 2  # noqa: E731
        smax, smin = f(0), f(n - 1)
        return [(f(x) - smin) / (smax - smin) * (start - end) + end for x in range(n)]

    steps += 2
    midpoint = int((steps * pivot + steps * pivot) / 2)
    pivot_1 = pivot_2 = int(steps * pivot)
    slope = slope / (steps / 40)
    stage_2_len = steps - midpoint
    stage_1_len = steps - stage_2_len
    first = stage(stage_1_len, slope, pivot_1, start, middle)[:-1]
    second = stage(stage_2_len, slope, pivot_2 - stage_1_len, middle, end)
    return torch.tensor(first + second).tolist()


def comfy_schedule(name, steps, shift):
    ms = ComfyFlowSampling(shift)
    return {
        "simple": lambda: comfy_simple(ms, steps),
        "sgm_uniform": lambda: comfy_normal(ms, steps, sgm=True),
        "normal": lambda: comfy_normal(ms, steps),
        "beta": lambda: comfy_beta(ms, steps),
        "bong_tangent": lambda: res4lyf_bong_tangent(steps),
    }[name]()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize(("steps", "shift"), [(8, 3.0), (4, 3.0), (20, 6.0), (9, 1.0), (30, 1.8)])
def test_each_scheduler_computes_comfyuis_sigmas(name, steps, shift):
    ours = sigma_schedule(name, steps, shift)
    theirs = comfy_schedule(name, steps, shift)
    assert len(ours) == len(theirs)
    # `simple` is diffusers' schedule (even flow times); ComfyUI picks the same times from its
    # 1000-entry table, exactly when the steps divide 1000 and to within a table step otherwise.
    table_step = 0 if name != "simple" or 1000 % steps == 0 else 1e-3 * shift
    assert np.allclose(ours, theirs, rtol=0, atol=1e-6 + table_step), (ours, theirs)


@pytest.mark.parametrize("steps", [3, 8, 9, 28])
def test_simple_is_diffusers_own_z_image_schedule(steps):
    """The default renders exactly what diffusers' Z-Image pipeline renders, at any step count."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

    scheduler = FlowMatchEulerDiscreteScheduler(shift=6.0, use_dynamic_shifting=False)
    scheduler.set_timesteps(sigmas=get_default_z_image_sigmas(steps))
    assert list(sigma_schedule("simple", steps, 6.0)) == scheduler.sigmas.tolist()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_eight_steps_at_shift_3_are_the_documented_sigmas(name):
    ours = sigma_schedule(name, 8, 3.0)
    assert len(ours) == 9 and ours[-1] == 0.0
    assert np.allclose(ours, COMFY_8_STEPS_SHIFT_3[name], rtol=0, atol=1e-4)
    assert all(a > b for a, b in zip(ours, ours[1:], strict=False))  # strictly falling


def test_simple_is_diffusers_own_turbo_schedule():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

    def diffusers_sigmas(steps):
        reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
        reference.set_timesteps(sigmas=get_default_z_image_sigmas(steps))
        return reference.sigmas.tolist()

    for steps in (2, 4, 8):
        assert list(sigma_schedule("simple", steps, 3.0)) == diffusers_sigmas(steps)
    # Where 1/steps is not a binary fraction, the two grids round differently (one float32 ulp).
    assert np.allclose(sigma_schedule("simple", 10, 3.0), diffusers_sigmas(10), rtol=0, atol=1e-6)
    # FACTS.md section 1: Turbo's 8-step sigmas.
    published = (1, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3, 0)
    assert np.allclose(sigma_schedule("simple", 8, 3.0), published, atol=1e-4)


def test_bong_tangent_ignores_the_shift_and_the_others_follow_it():
    assert sigma_schedule("bong_tangent", 8, 3.0) == sigma_schedule("bong_tangent", 8, 6.0)
    for name in ("simple", "sgm_uniform", "normal", "beta"):
        assert sigma_schedule(name, 8, 6.0)[1] > sigma_schedule(name, 8, 3.0)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("karras", 8, 3.0), "unknown scheduler 'karras'"),
        (("simple", 0, 3.0), "below 1"),
        (("simple", 8, 0.0), "not positive"),
        (("bong_tangent", 1, 3.0), "bong_tangent needs 2 or more steps"),
    ],
)
def test_bad_schedules_are_user_errors(args, message):
    with pytest.raises(UserError, match=message):
        sigma_schedule(*args)


# -- shift -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (None, None),
        (3, 3.0),
        ("2.5", 2.5),
        ("auto", f"auto:{AUTO_SHIFT.formula}"),
        ("AUTO:notes", "auto:notes"),
        ("auto:diffusers", "auto:diffusers"),
    ],
)
def test_shift_values_parse(given, parsed):
    assert parse_shift(given) == parsed


@pytest.mark.parametrize("bad", ["x", "-1", 0, float("nan"), "auto:karras", True])
def test_bad_shifts_are_user_errors_that_list_the_choices(bad):
    with pytest.raises(UserError) as err:
        parse_shift(bad)
    assert "auto:notes" in err.value.one_line()


def test_auto_diffusers_is_calculate_shift_exponentiated_with_the_parameters_recorded():
    from diffusers.pipelines.z_image.pipeline_z_image import calculate_shift

    config = {"base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5}
    for width, height in ((512, 512), (1024, 1024), (1344, 768), (2048, 2048)):
        choice = resolve_shift("auto", width, height, config)
        seq_len = (width // 16) * (height // 16)
        mu = calculate_shift(seq_len, 256, 4096, 0.5, AUTO_SHIFT.max_shift)
        assert choice.source == "auto"
        assert choice.value == pytest.approx(math.exp(mu))
        assert choice.auto == {
            "formula": "diffusers",
            "image_seq_len": seq_len,
            "base_seq_len": 256,
            "max_seq_len": 4096,
            "base_shift": 0.5,
            "max_shift": AUTO_SHIFT.max_shift,
            "mu": pytest.approx(mu),
        }


def test_the_notes_formula_is_the_literal_one_and_meets_diffusers_only_at_1024():
    params = {"base_seq_len": 256, "max_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    for side in (384, 512, 768, 1024, 1536, 2048):
        n = side * side / 256
        literal = (0.5 - 1.15) / (256 - side * side / 256) * 3840 + 0.5
        assert notes_mu(int(n), **params) == pytest.approx(literal)
        same = math.isclose(literal, diffusers_mu(int(n), **params), rel_tol=1e-9)
        assert same == (side == 1024), side


def test_the_notes_formula_refuses_sizes_at_its_pole():
    with pytest.raises(UserError, match="larger than 256x256"):
        resolve_shift("auto:notes", 256, 256, {})
    with pytest.raises(UserError, match="larger than 256x256"):
        resolve_shift("auto:notes", 64, 64, {})


def test_static_and_model_shifts():
    assert resolve_shift(None, 64, 64, {"shift": 3.0}).value == 3.0
    assert resolve_shift(None, 64, 64, {"shift": 3.0}).source == "model"
    choice = resolve_shift(4.5, 64, 64, {"shift": 3.0})
    assert (choice.value, choice.source, choice.auto) == (4.5, "static", None)
