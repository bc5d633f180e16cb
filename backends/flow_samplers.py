"""ComfyUI's samplers for flow models, as diffusers schedulers (`SchedulerMixin`).

`ZImagePipeline` calls `set_timesteps(sigmas=..., mu=...)` once and then `step(v, t, x)` per step,
where `v` is the velocity the DiT predicts (noise minus image). These schedulers take the sigma
schedule as given (already shifted: see `backends/schedules.py`; `mu` is ignored; with only
`num_inference_steps`, the `simple` schedule at their shift) and apply
k-diffusion's update rules as ComfyUI runs them on a flow model, where the denoised estimate is
`x0 = x - sigma * v`:

- `FlowEuler`: x + (sigma_next - sigma) * v (diffusers' flow Euler, bit for bit).
- `FlowEulerAncestral`: ComfyUI's `euler_ancestral` for flow models (eta 1): step down past
  sigma_next, rescale, and add fresh noise back up to it.
- `FlowErSde`: ER-SDE-Solver-3 (ComfyUI's `er_sde`): up to third order, noise added each step.
- `FlowDpmpp2m`: DPM-Solver++(2M), second-order multistep in log-sigma.
- `FlowResMultistep`: ComfyUI's `res_multistep` (RES second-order multistep, deterministic).
- `FlowLcm`: ComfyUI's `lcm`: jump to x0, re-noise to sigma_next.

Stochastic samplers draw their noise from the image seed: `set_noise_seeds(seeds)`, one seed per
batch row, gives each row its own CPU generator seeded with seed + 1 (as ComfyUI's CPU noise
sampler offsets it, so the step noise never repeats the initial latent noise). The same seed
gives the same image whatever else is in the batch. Without seeds, torch's global generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from zit_agent.backends.schedules import ER_SDE_FIRST_OFFSET, sigma_schedule, time_snr_shift

NOISE_SEED_OFFSET = 1
ER_SDE_POINTS = 200  # ComfyUI's integration points for the stage 2 and 3 coefficients


def step_noise_seed(seed: int) -> int:
    """The seed of an image's step noise (torch seeds are 64-bit)."""
    return (seed + NOISE_SEED_OFFSET) % 2**64


class FlowSampler(SchedulerMixin, ConfigMixin):
    """The shared part: the schedule, the step counter, per-row noise. Subclasses write `update`.

    `shift` is the shift the schedule was made with (er_sde's first sigma depends on it)."""

    order = 1
    _compatibles: list = []
    stochastic = False

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, shift: float = 3.0):
        self.sigmas: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self.num_inference_steps: int | None = None
        self._noise_seeds: list[int] | None = None
        self._generators: list[torch.Generator] | None = None
        self._step_index: int | None = None
        self._begin_index: int | None = None

    # -- the diffusers scheduler interface -----------------------------------------------------
    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        if sigmas is None:  # used on its own: Turbo's schedule at this sampler's shift
            if num_inference_steps is None:
                raise ValueError("give `sigmas` or `num_inference_steps`")
            sigmas = sigma_schedule("simple", num_inference_steps, self.config.shift)
        values = [float(s) for s in sigmas]
        if values[-1] != 0:
            values.append(0.0)
        sigma_tensor = torch.tensor(self.adjust(values), dtype=torch.float32)
        self.s = [float(s) for s in sigma_tensor]  # the float32 values, as Python floats
        self.sigmas = sigma_tensor.to(device)
        self.timesteps = self.sigmas[:-1] * self.config.num_train_timesteps
        self.num_inference_steps = len(self.s) - 1
        self._step_index, self._begin_index = None, None
        self._generators = (
            [torch.Generator("cpu").manual_seed(step_noise_seed(s)) for s in self._noise_seeds]
            if self._noise_seeds is not None
            else None
        )
        self.prepare()

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index

    @property
    def step_index(self) -> int | None:
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_noise_seeds(self, seeds: list[int] | None) -> None:
        """One seed per batch row for the next `set_timesteps` (None: the global generator)."""
        self._noise_seeds = list(seeds) if seeds is not None else None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
        **_: object,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        if self._step_index is None:
            self._step_index = self._begin_index or 0
        i = self._step_index
        x = sample.to(torch.float32)
        v = model_output.to(torch.float32)
        x = self.update(i, x, x - self.s[i] * v, v)
        self._step_index += 1
        return SchedulerOutput(prev_sample=x) if return_dict else (x,)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def scale_noise(
        self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Flow matching's forward process at the step the image-to-image and inpainting
        pipelines start from (or, between steps, the current one): `sigma * noise +
        (1 - sigma) * sample`, as diffusers' `FlowMatchEulerDiscreteScheduler.scale_noise`."""
        sigmas = self.sigmas.to(device=sample.device, dtype=sample.dtype)
        timestep = torch.as_tensor(timestep).flatten()
        if self.step_index is not None:  # between steps (inpainting re-noises the init)
            index = self.step_index
        elif self.begin_index is not None:  # before the first step (the init's noising)
            index = self.begin_index
        else:
            distance = (self.timesteps.to(timestep.device) - timestep[0]).abs()
            index = int(torch.argmin(distance))
        sigma = sigmas[[index] * timestep.shape[0]].flatten()
        while len(sigma.shape) < len(sample.shape):
            sigma = sigma.unsqueeze(-1)
        return sigma * noise + (1.0 - sigma) * sample

    # -- for subclasses ------------------------------------------------------------------------
    def adjust(self, sigmas: list[float]) -> list[float]:
        """The schedule the sampler runs on (er_sde moves the first sigma off 1)."""
        return sigmas

    def prepare(self) -> None:
        """Per-run state and coefficients, after the schedule is set."""

    def update(self, i: int, x: torch.Tensor, denoised: torch.Tensor, v: torch.Tensor):
        raise NotImplementedError

    def noise_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like `x`, row b from seed b's generator."""
        if self._generators is None:
            return torch.randn(x.shape, dtype=torch.float32).to(x.device)
        if len(self._generators) != x.shape[0]:
            raise ValueError(f"{len(self._generators)} noise seeds for a batch of {x.shape[0]}")
        rows = [
            torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in self._generators
        ]
        return torch.stack(rows).to(x.device)


class FlowEuler(FlowSampler):
    def update(self, i, x, denoised, v):
        dt = self.sigmas[i + 1] - self.sigmas[i]  # float32, as diffusers computes it
        return x + dt.to(x.device) * v


class FlowEulerAncestral(FlowSampler):
    """ComfyUI's `sample_euler_ancestral_RF` with eta = 1, s_noise = 1."""

    stochastic = True
    eta = 1.0

    def update(self, i, x, denoised, v):
        sigma, sigma_next = self.s[i], self.s[i + 1]
        if sigma_next == 0:
            return denoised
        sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * self.eta)
        alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
        renoise = math.sqrt(sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2)
        ratio = sigma_down / sigma
        x = ratio * x + (1 - ratio) * denoised
        return (alpha_next / alpha_down) * x + renoise * self.noise_like(x)


class FlowErSde(FlowSampler):
    """ComfyUI's `sample_er_sde` (ER-SDE-Solver-3, max stage 3, s_noise 1) for flow models,
    where lambda = sigma / alpha = sigma / (1 - sigma)."""

    stochastic = True
    max_stage = 3

    def adjust(self, sigmas):
        if sigmas[0] >= 1:
            sigmas = [time_snr_shift(self.config.shift, 1.0 - ER_SDE_FIRST_OFFSET), *sigmas[1:]]
        return sigmas

    def prepare(self):
        self.lambdas = [s / (1 - s) for s in self.s]
        self.old_denoised = self.old_denoised_d = None

    @staticmethod
    def noise_scaler(x):
        """ER-SDE's default noise scaler; `x` a float or a numpy array."""
        return x * (np.exp(x**0.3) + 10.0)

    def update(self, i, x, denoised, v):
        sigma_next = self.s[i + 1]
        if sigma_next == 0:
            result = denoised
        else:
            lam_s, lam_t = self.lambdas[i], self.lambdas[i + 1]
            alpha_s, alpha_t = 1 - self.s[i], 1 - sigma_next
            r = float(self.noise_scaler(lam_t) / self.noise_scaler(lam_s))
            result = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            stage = min(self.max_stage, i + 1)
            if stage >= 2:
                dt = lam_t - lam_s
                step = -dt / ER_SDE_POINTS
                points = lam_t + np.arange(ER_SDE_POINTS) * step
                scaled = self.noise_scaler(points)
                s = float(np.sum(1 / scaled) * step)
                denoised_d = (denoised - self.old_denoised) / (lam_s - self.lambdas[i - 1])
                scale_t = float(self.noise_scaler(lam_t))
                result = result + alpha_t * (dt + s * scale_t) * denoised_d
                if stage >= 3:
                    s_u = float(np.sum((points - lam_s) / scaled) * step)
                    half_gap = (lam_s - self.lambdas[i - 2]) / 2
                    denoised_u = (denoised_d - self.old_denoised_d) / half_gap
                    result = result + alpha_t * (dt**2 / 2 + s_u * scale_t) * denoised_u
                self.old_denoised_d = denoised_d
            spread = math.sqrt(max(lam_t**2 - lam_s**2 * r**2, 0.0))  # ComfyUI: NaN -> 0
            result = result + alpha_t * spread * self.noise_like(x)
        self.old_denoised = denoised
        return result


class FlowDpmpp2m(FlowSampler):
    """DPM-Solver++(2M) (ComfyUI's `sample_dpmpp_2m`), t = -log(sigma)."""

    def prepare(self):
        self.old_denoised = None

    def update(self, i, x, denoised, v):
        sigma, sigma_next = self.s[i], self.s[i + 1]
        if sigma_next == 0:
            result = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            if self.old_denoised is not None:
                r = (math.log(self.s[i - 1]) - math.log(sigma)) / h
                mix = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * self.old_denoised
            else:
                mix = denoised
            result = (sigma_next / sigma) * x - math.expm1(-h) * mix
        self.old_denoised = denoised
        return result


class FlowResMultistep(FlowSampler):
    """ComfyUI's `sample_res_multistep` (eta 0): Euler first and last, then the RES
    second-order multistep update (arXiv 2308.02157)."""

    def prepare(self):
        self.old_denoised = None

    def update(self, i, x, denoised, v):
        sigma, sigma_next = self.s[i], self.s[i + 1]
        if sigma_next == 0 or self.old_denoised is None:
            result = x + (x - denoised) / sigma * (sigma_next - sigma)
        else:
            t, t_next, t_prev = -math.log(sigma), -math.log(sigma_next), -math.log(self.s[i - 1])
            h = t_next - t
            c2 = (t_prev - t) / h
            phi1 = math.expm1(-h) / -h
            phi2 = (phi1 - 1) / -h
            b1, b2 = phi1 - phi2 / c2, phi2 / c2
            result = math.exp(-h) * x + h * (b1 * denoised + b2 * self.old_denoised)
        self.old_denoised = denoised
        return result


class FlowLcm(FlowSampler):
    """ComfyUI's `sample_lcm`: the denoised estimate, re-noised to sigma_next."""

    stochastic = True

    def update(self, i, x, denoised, v):
        sigma_next = self.s[i + 1]
        if sigma_next == 0:
            return denoised
        return sigma_next * self.noise_like(x) + (1 - sigma_next) * denoised


class FlowUniPC(UniPCMultistepScheduler):
    """diffusers' UniPC in flow mode on a given schedule (built with flow_shift 1: the schedule is
    already shifted). UniPC appends the final 0 itself and wants a numpy array."""

    scale_noise = FlowSampler.scale_noise  # image-to-image and inpainting start here

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
        if sigmas is not None:
            values = np.asarray(sigmas, dtype=np.float64)
            sigmas = values[:-1] if values[-1] == 0 else values
        return super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu)
