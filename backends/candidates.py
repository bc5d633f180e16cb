"""Candidates on early previews for `ZImageBackend` (group inference, FACTS.md section 10).

Render M seeds for K steps, preview each from the flow model's x0 prediction at step K, let the
caller choose which to keep (it embeds the previews and compares them with each other and the
history), and finish only those from their step-K latents. Steps spent: M*K + n*(S-K), against
n*S for n plain images.

- The preview: x0 = x_K - sigma_K * v, with v the Euler velocity of step K-1
  ((x_K - x_{K-1}) / (sigma_K - sigma_{K-1})). The x0 latent is average-pooled to at most
  `RENDER.preview_side` / 8 latent pixels a side and decoded by the model's own VAE (at 1024x1024:
  a 32x32 latent, a 256-pixel preview, 1/16 of a full decode). Enough to judge a composition.
- Finishing: the pipeline is called again with the step-K latents and the schedule's sigmas from
  step K on (the same float32 values), so with batches of one a kept image is the image its seed
  gives rendered in full, pixel for pixel. In larger batches the rows can differ by an 8-bit level
  from a lone render (CPU and GPU kernels change with the batch shape; FACTS.md section 10).
- Only the `euler` sampler: the others carry state across steps (multistep history, per-seed step
  noise) that a second pipeline call would restart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zit_agent.backends.base import CandidateRender, RenderedImage, RenderOptions
from zit_agent.defaults import RENDER
from zit_agent.errors import ResourceExhausted, UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from zit_agent.backends.zimage import ZImageBackend

PREVIEW = "x0 prediction at the preview step, pooled to {side} px and decoded by the VAE"


def check_candidates(options: RenderOptions, count: int, keep: int, preview_step: int) -> None:
    """M candidates, n kept, preview step K: n <= M, 1 <= K < steps, the euler sampler, no
    control map."""
    if count < keep:
        raise UserError(
            f"{count} candidates cannot give {keep} images",
            hint=f"ask for at least {keep} candidates, or fewer images (-n)",
        )
    if options.sampler != "euler":
        raise UserError(
            f"candidates need the euler sampler, not {options.sampler}",
            hint="leave out {sampler} (it carries state across steps that finishing restarts)",
        )
    if options.control_image:
        raise UserError("candidates and a control map do not mix", hint="leave out {control}")
    if not 1 <= preview_step < options.steps:
        raise UserError(
            f"preview step {preview_step} is outside 1..{options.steps - 1} "
            f"({options.steps} steps)",
            hint="preview after 1-2 steps (Turbo sets the layout there)",
        )


def render_candidates(
    backend: ZImageBackend,
    token_ids: list[int],
    seeds: list[int],
    options: RenderOptions,
    preview_step: int,
    choose: Callable[[list[Image.Image]], list[int]],
) -> CandidateRender:
    from zit_agent.backends.zimage import _chunks

    check_candidates(options, len(seeds), 1, preview_step)
    shift, sigmas, embeds, negative, encoded = backend._prepare(token_ids, seeds, options)
    own_scheduler = backend.pipe.scheduler
    latents: list[Any] = []
    x0: list[Any] = []
    try:  # the pipeline gets its own scheduler back, whatever fails (a LoRA that does not fit)
        sampler = backend._use_sampler(options.sampler, shift.value)
        loras = backend._use_loras(options)
        start = time.perf_counter()
        for chunk in _chunks(seeds, backend.max_batch):
            at_k, preview = _preview(
                backend, embeds, negative, chunk, options, sigmas, preview_step
            )
            latents += list(at_k)
            x0 += list(preview)
        previews = decode_previews(backend.pipe, x0, backend.device)
        preview_s = time.perf_counter() - start
        keep = list(choose(previews))
        start = time.perf_counter()
        finished: list[Any] = []
        for chunk in _chunks(keep, backend.max_batch):
            finished += _finish(
                backend, embeds, negative, [seeds[i] for i in chunk],
                [latents[i] for i in chunk], options, sigmas, preview_step,
            )  # fmt: skip
        finish_s = time.perf_counter() - start
    finally:
        backend.pipe.scheduler = own_scheduler
    base = backend._record(token_ids, options, sampler.name, shift, sigmas, loras)
    per_image = (preview_s + finish_s) / max(1, len(keep))
    timings = {
        **encoded,
        "render_s": round(per_image, 4),
        "preview_s": round(preview_s, 4),
        "finish_s": round(finish_s, 4),
    }
    kept = [
        RenderedImage(
            image=img, seed=seeds[i], record={**base, "seed": seeds[i], "timings": timings}
        )
        for i, img in zip(keep, finished, strict=True)
    ]
    steps = len(seeds) * preview_step + len(keep) * (options.steps - preview_step)
    return CandidateRender(
        kept=kept,
        kept_index=keep,
        previews=previews,
        steps=steps,
        preview=PREVIEW.format(side=RENDER.preview_side),
    )


def _kwargs(backend: ZImageBackend, positive, negative, seeds, options, sigmas, callback, latents):
    import torch

    from zit_agent.backends.progress import step_callback

    steps = len(sigmas) - 1
    return {
        "prompt_embeds": positive,
        "negative_prompt_embeds": [negative] * len(seeds) if negative is not None else None,
        "height": options.height,
        "width": options.width,
        "num_inference_steps": steps,
        "sigmas": list(sigmas),
        "guidance_scale": options.guidance,
        "cfg_normalization": options.cfg_normalization,
        "generator": [torch.Generator(device="cpu").manual_seed(s) for s in seeds],
        "latents": latents,
        "output_type": "latent",
        "callback_on_step_end": step_callback(callback, steps),
    }


def _preview(backend, embeds, negative, seeds, options, sigmas, step: int):
    """The step-`step` latents of `seeds` and their x0 predictions (float32, one row each)."""
    import torch

    pipe = backend.pipe
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    # The pipeline's own initial noise (the same call it makes), so the step before the preview
    # is known even when it is the first.
    initial = pipe.prepare_latents(
        len(seeds), pipe.transformer.in_channels, options.height, options.width,
        torch.float32, backend.device, generators,
    )  # fmt: skip
    positive, hooks = backend._step_hooks(embeds, len(seeds), options)
    seen = {"before": initial}

    def capture(pipe_, index: int, timestep, kwargs: dict) -> dict:
        out = hooks(pipe_, index, timestep, kwargs)
        if index == step - 2:
            seen["before"] = kwargs["latents"].clone()
        if index == step - 1:
            seen["at"] = kwargs["latents"].clone()
            pipe_._interrupt = True  # the pipeline skips the remaining steps
        return out

    kwargs = _kwargs(backend, positive, negative, seeds, options, sigmas, capture, initial)
    _call(pipe, kwargs)
    at, before = seen["at"], seen["before"]
    low, high = sigmas[step], sigmas[step - 1]
    velocity = (at - before) / (low - high)
    return at, at - low * velocity


def _finish(backend, embeds, negative, seeds, latents, options, sigmas, step: int):
    """The kept candidates denoised from their step-`step` latents to the end; PIL images."""
    import torch

    pipe = backend.pipe
    positive, hooks = backend._step_hooks(embeds, len(seeds), options, offset=step)
    kwargs = _kwargs(
        backend, positive, negative, seeds, options, sigmas[step:], hooks, torch.stack(latents)
    )
    kwargs["output_type"] = "pil"
    return _call(pipe, kwargs).images


def _call(pipe, kwargs: dict[str, Any]):
    import torch

    try:
        return pipe(**kwargs)
    except torch.OutOfMemoryError:
        raise ResourceExhausted(
            f"out of device memory for a batch of {len(kwargs['prompt_embeds'])} candidates",
            hint="use {batch} 1 or fewer {candidates}",
        ) from None


def decode_previews(pipe, x0: list[torch.Tensor], device, side: int = RENDER.preview_side):
    """x0 latents -> small PIL previews: average-pooled to at most `side` / 8 latent pixels a side,
    then the VAE's decode."""
    import torch
    import torch.nn.functional as F

    latents = torch.stack(x0)
    factor = max(1, math.ceil(max(latents.shape[-2:]) * pipe.vae_scale_factor / side))
    if factor > 1:
        latents = F.avg_pool2d(latents, factor, ceil_mode=True)
    vae = pipe.vae
    latents = latents.to(device=device, dtype=vae.dtype)
    latents = latents / vae.config.scaling_factor + vae.config.shift_factor
    with torch.inference_mode():
        images = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(images, output_type="pil")
