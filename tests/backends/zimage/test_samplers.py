"""The samplers inside diffusers' `ZImagePipeline` on the tiny Z-Image, each against a reference
loop written straight from k-diffusion's formulas as ComfyUI runs them on a flow model
(denoised = x - sigma * v), on the same initial latents and the same step noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.backends.zimage.conftest import SMALL
from zit_agent.backends.samplers import SAMPLERS, make_scheduler
from zit_agent.backends.schedules import sigma_schedule

SEEDS = [5, 6]
STEPS = 8
SHIFT = 3.0
LATENT_SHAPE = (16, SMALL["height"] // 8, SMALL["width"] // 8)


# -- the reference: a flow model called the way the pipeline calls the DiT ------------------------
def flow_denoiser(pipe, embeds):
    """x, sigma -> the denoised estimate x - sigma * v (v: minus the DiT's output)."""

    def denoise(x, sigma):
        t = torch.full((x.shape[0],), 1.0 - float(sigma))
        with torch.inference_mode():
            out = pipe.transformer(
                list(x.unsqueeze(2).unbind(0)), t, [embeds] * x.shape[0], return_dict=False
            )[0]
        v = -torch.stack([o.float() for o in out]).squeeze(2)
        return x - float(sigma) * v

    return denoise


def step_noise(seeds):
    """Step noise as the samplers promise it: one generator per image, seeded with seed + 1."""
    gens = [torch.Generator().manual_seed(s + 1) for s in seeds]
    return lambda: torch.stack([torch.randn(LATENT_SHAPE, generator=g) for g in gens])


def ref_euler(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def ref_euler_ancestral(model, x, sigmas, noise, eta=1.0):  # sample_euler_ancestral_RF
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down = sigmas[i + 1] * (1 + (sigmas[i + 1] / sigmas[i] - 1) * eta)
        alpha_ip1, alpha_down = 1 - sigmas[i + 1], 1 - sigma_down
        renoise = (sigmas[i + 1] ** 2 - sigma_down**2 * alpha_ip1**2 / alpha_down**2) ** 0.5
        ratio = sigma_down / sigmas[i]
        x = ratio * x + (1 - ratio) * denoised
        x = (alpha_ip1 / alpha_down) * x + noise() * renoise
    return x


def ref_er_sde(model, x, sigmas, noise, max_stage=3):  # sample_er_sde, ER-SDE noise scaler
    def scaler(v):
        return v * ((v**0.3).exp() + 10.0)

    sigmas = sigmas.clone()
    t = 1.0 - 1e-4  # offset_first_sigma_for_snr: percent_to_sigma(1e-4)
    sigmas[0] = SHIFT * t / (1 + (SHIFT - 1) * t)
    half_log_snr = sigmas.logit().neg()  # sigma_to_half_log_snr for a flow model
    lambdas = half_log_snr.neg().exp()
    points = torch.arange(0, 200.0)
    old, old_d = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = lambdas[i], lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / lam_s, sigmas[i + 1] / lam_t
            r = scaler(lam_t) / scaler(lam_s)
            x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lam_t - lam_s
                step = -dt / 200.0
                pos = lam_t + points * step
                scaled = scaler(pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old) / (lam_s - lambdas[i - 1])
                x = x + alpha_t * (dt + s * scaler(lam_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((pos - lam_s) / scaled) * step
                    denoised_u = (denoised_d - old_d) / ((lam_s - lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt**2) / 2 + s_u * scaler(lam_t)) * denoised_u
                old_d = denoised_d
            x = x + alpha_t * noise() * (lam_t**2 - lam_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
        old = denoised
    return x


def ref_dpmpp_2m(model, x, sigmas, noise):
    def t_of(sigma):
        return sigma.log().neg()

    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised
        else:
            r = (t - t_of(sigmas[i - 1])) / h
            mixed = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * mixed
        old = denoised
    return x


def ref_res_multistep(model, x, sigmas, noise):  # res_multistep with eta = 0
    def t_of(sigma):
        return sigma.log().neg()

    old, old_sigma_down = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down = sigmas[i + 1]  # get_ancestral_step with eta 0
        if sigma_down == 0 or old is None:
            x = x + (x - denoised) / sigmas[i] * (sigma_down - sigmas[i])
        else:
            t, t_old = t_of(sigmas[i]), t_of(old_sigma_down)
            t_next, t_prev = t_of(sigma_down), t_of(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            x = (-h).exp() * x + h * (b1 * denoised + b2 * old)
        old, old_sigma_down = denoised, sigma_down
    return x


def ref_lcm(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i])
        if sigmas[i + 1] > 0:
            x = sigmas[i + 1] * noise() + (1.0 - sigmas[i + 1]) * x
    return x


REFERENCES = {
    "euler": ref_euler,
    "euler_ancestral": ref_euler_ancestral,
    "er_sde": ref_er_sde,
    "dpmpp_2m": ref_dpmpp_2m,
    "res_multistep": ref_res_multistep,
    "lcm": ref_lcm,
}


# -- running ours inside the real pipeline --------------------------------------------------------
@pytest.fixture(scope="module")
def embeds(backend, plain_ids):
    return backend.encode(plain_ids, -2)[0]


@pytest.fixture
def pipe_with(raw_pipe):
    """Run diffusers' pipeline with one of our samplers, putting its own scheduler back after."""
    own = raw_pipe.scheduler

    def run(name, embeds, seeds, scheduler="simple", output_type="latent"):
        sigmas = sigma_schedule(scheduler, STEPS, SHIFT)
        raw_pipe.scheduler, _ = make_scheduler(name, dict(own.config), SHIFT)
        if hasattr(raw_pipe.scheduler, "set_noise_seeds"):
            raw_pipe.scheduler.set_noise_seeds(seeds)
        return raw_pipe(
            prompt_embeds=[embeds] * len(seeds),
            height=SMALL["height"],
            width=SMALL["width"],
            sigmas=list(sigmas),
            guidance_scale=0.0,
            generator=[torch.Generator().manual_seed(s) for s in seeds],
            output_type=output_type,
        ).images

    yield run
    raw_pipe.scheduler = own


def initial_latents(seeds):
    return torch.cat(
        [torch.randn((1, *LATENT_SHAPE), generator=torch.Generator().manual_seed(s)) for s in seeds]
    )


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_sampler_matches_its_reference_loop(pipe_with, raw_pipe, embeds, name):
    ours = pipe_with(name, embeds, SEEDS)
    sigmas = torch.tensor(sigma_schedule("simple", STEPS, SHIFT))
    reference = REFERENCES[name](
        flow_denoiser(raw_pipe, embeds), initial_latents(SEEDS), sigmas, step_noise(SEEDS)
    )
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4), (ours - reference).abs().max()
    assert torch.isfinite(ours).all()


def test_every_sampler_has_a_reference_except_diffusers_unipc():
    assert set(SAMPLERS) - set(REFERENCES) == {"unipc"}


def test_euler_ancestral_with_bong_tangent_matches_its_reference(pipe_with, raw_pipe, embeds):
    """The notes' favourite: Euler ancestral on RES4LYF's bong_tangent schedule."""
    ours = pipe_with("euler_ancestral", embeds, SEEDS, scheduler="bong_tangent")
    sigmas = torch.tensor(sigma_schedule("bong_tangent", STEPS, SHIFT))
    reference = ref_euler_ancestral(
        flow_denoiser(raw_pipe, embeds), initial_latents(SEEDS), sigmas, step_noise(SEEDS)
    )
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_stochastic_step_noise_follows_each_images_seed(pipe_with, embeds):
    together = pipe_with("er_sde", embeds, [5, 6])
    alone = pipe_with("er_sde", embeds, [6])
    assert torch.allclose(together[1], alone[0], atol=1e-5)
    assert not torch.allclose(together[0], together[1], atol=1e-2)


def test_er_sde_starts_just_below_sigma_one(pipe_with, raw_pipe, embeds):
    pipe_with("er_sde", embeds, [1])
    first = float(raw_pipe.scheduler.sigmas[0])
    assert first == pytest.approx(SHIFT * 0.9999 / (1 + (SHIFT - 1) * 0.9999), abs=1e-7)
    assert 1 - first < 1e-4 and math.isfinite(first / (1 - first))


def test_unipc_runs_on_the_given_schedule(pipe_with, raw_pipe, embeds):
    latents = pipe_with("unipc", embeds, [1], scheduler="beta")
    assert torch.isfinite(latents).all()
    expected = np.asarray(sigma_schedule("beta", STEPS, SHIFT)[1:-1])
    assert np.allclose(raw_pipe.scheduler.sigmas[1:-1].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(("sampler", "scheduler"), [("er_sde", "beta"), ("dpmpp_2m", "normal")])
def test_the_backend_renders_what_the_pipeline_renders_with_that_sampler(
    backend, pipe_with, embeds, plain_ids, small_options, sampler, scheduler
):
    options = small_options.model_copy(
        update={"sampler": sampler, "scheduler": scheduler, "steps": STEPS, "shift": SHIFT}
    )
    ours = backend.render(plain_ids, SEEDS, options)
    theirs = pipe_with(sampler, embeds, SEEDS, scheduler=scheduler, output_type="pil")
    for rendered, image in zip(ours, theirs, strict=True):
        assert np.array_equal(np.asarray(rendered.image), np.asarray(image))
