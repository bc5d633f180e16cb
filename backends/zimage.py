"""`ZImageBackend`: token ids of a whole Z-Image chat sequence in, images with provenance out.

diffusers' `ZImagePipeline` has no token-id input: it wraps a prompt string in the chat template and
encodes it itself (FACTS.md section 2). This backend runs the pipeline's own text encoder on the ids
it is given (`output_hidden_states=True`, hidden layer -2 by default) and passes the result as
`prompt_embeds`, so the ids reach the encoder verbatim and nothing is wrapped twice. For a plain
sequence the images equal `pipe(prompt=idea)` pixel for pixel.

Render steps: 1. check options, resolve the shift, compute the sigma schedule, 2. encode (cached
by ids and layer), 3. sampler and LoRA state, 4. denoise in batches of seeds (the schedule passed
as `sigmas`), 5. attach the provenance record (with the scheduler and the exact sigmas).

Sequences may run past diffusers' 512-token encode default up to `token_ceiling`, the caption
positions of the loaded DiT (1504 for Z-Image); past 512 is past what the model was trained on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.backends.base import (
    CandidateRender,
    ImageBackend,
    NoiseSettings,
    RenderedImage,
    RenderOptions,
)
from zit_agent.backends.hub import check_device, resolve_dir
from zit_agent.backends.provenance import (
    batch_field,
    encode_ids,
    id_fields,
    package_versions,
)
from zit_agent.backends.quiet import quiet_libraries
from zit_agent.backends.samplers import make_scheduler
from zit_agent.backends.schedules import (
    ShiftChoice,
    get_scheduler,
    resolve_shift,
    sigma_schedule,
)
from zit_agent.backends.single_file import PICKLE_SUFFIXES
from zit_agent.backends.tokenizer import QwenTokenizer
from zit_agent.defaults import DEFAULT_VARIANT, LIMITS, RENDER
from zit_agent.errors import ModelNotFoundError, ResourceExhausted, UserError
from zit_agent.sequence import empty_prompt_ids, readable_text

if TYPE_CHECKING:
    import torch
    from diffusers import (
        ZImageControlNetPipeline,
        ZImageImg2ImgPipeline,
        ZImageInpaintPipeline,
        ZImagePipeline,
    )

log = logging.getLogger("zit.zimage")

MAX_SIDE = LIMITS.max_side
WARN_SIDE = LIMITS.warn_side
LORA_STRENGTH_RANGE = LIMITS.lora_strength
SEQ_MULTIPLE = 32  # the DiT pads captions to a multiple of this (diffusers' SEQ_MULTI_OF)
# What a model folder must hold when an all-in-one checkpoint brings the weights.
CONFIG_PATTERNS = ["*.json", "*.txt", "*.jinja", "tokenizer/*"]


class ZImageBackend(ImageBackend):
    """Renders Z-Image chat sequences given as token ids. Build it with `from_pretrained`, or
    hand it a ready `ZImagePipeline` (tests do)."""

    name = "zimage"
    batches = True

    def __init__(
        self,
        pipe: ZImagePipeline,
        *,
        model_id: str = "<memory>",
        model_revision: str | None = None,
        max_batch: int = RENDER.max_batch,
        cache_size: int = 32,
        pad_to: int = RENDER.max_tokens,
        tokenizer: QwenTokenizer | None = None,
        control_pipe: ZImageControlNetPipeline | None = None,
        controlnet_id: str | None = None,
        variant: str = DEFAULT_VARIANT,
        variant_source: str = "default",
        components: dict[str, str] | None = None,
    ):
        """`tokenizer`: the model's Qwen3 tokenizer; when not given, a private copy of
        `pipe.tokenizer` (`from_pretrained` loads it without transformers, which saves about
        165 MB). `control_pipe`: the same components with a ControlNet (`controlnet_pipeline`),
        used for renders with a control image. `variant`: "turbo" or "base" (see
        `backends.variants`). `components`: where parts came from when not the model folder (for
        provenance)."""
        self.pipe = pipe
        self.control_pipe = control_pipe
        self.controlnet_id = controlnet_id
        # The contract's `controlnet`: the ControlNet maps are rendered with, when there is one.
        self.controlnet = controlnet_id if control_pipe is not None else None
        self.variant = variant
        self.variant_source = variant_source
        self.components = components or {}
        self.tokenizer = tokenizer or QwenTokenizer.private_copy(
            pipe.tokenizer.backend_tokenizer, "pipeline"
        )
        self.pad_to = pad_to
        self.model_id = model_id
        self.model_revision = model_revision
        self.max_batch = max(1, max_batch)
        self._cache: OrderedDict[tuple[tuple[int, ...], int], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._scheduler_config = dict(pipe.scheduler.config)
        self._loras: dict[str, str] = {}  # resolved path -> adapter name
        self._adapters: list[str] = []  # the adapters of the current render, in LoRA order
        self._schedulers: dict[tuple[str, float], tuple[Any, Any]] = {}
        self._pad_id = self.tokenizer.token_id("<|endoftext|>")  # Qwen3's pad token
        # Image-to-image and inpainting pipelines over `pipe`'s own modules, built when first used.
        self._refine_pipes: dict[str, ZImageImg2ImgPipeline | ZImageInpaintPipeline] = {}
        # Where the pipeline runs (with CPU offload: the accelerator). Place `pipe` before
        # building the backend; the lookup walks every module, too slow to repeat per render.
        self.device = pipe._execution_device
        pipe.set_progress_bar_config(disable=True)
        if control_pipe is not None:
            control_pipe.set_progress_bar_config(disable=True)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        spec: str | Path,
        *,
        download: bool = False,
        device: str | None = None,
        dtype: str | None = None,
        cpu_offload: bool = False,
        attention: str | None = None,
        compile: bool = False,
        text_encoder: str | None = None,
        vae: str | None = None,
        transformer: str | None = None,
        max_batch: int = RENDER.max_batch,
        checkpoint: str | None = None,
        controlnet: str | None = None,
        variant: str | None = None,
        vae_tiling: bool = False,
    ) -> ZImageBackend:
        """Load a Z-Image diffusers directory or Hugging Face repo id (from the hub cache).

        `dtype`: bf16 on CUDA and fp32 on CPU unless given ("bf16", "fp16", "fp32").
        `checkpoint`: an all-in-one `.safetensors` (DiT, encoder and VAE in one file); `spec`
        then only gives configs, scheduler and tokenizer (a folder without weights will do).
        `text_encoder`, `vae`, `transformer`: other parts, each a diffusers/transformers folder,
        a repo id or a single file (ComfyUI split files, fp8 too; `transformer` also `.gguf`);
        they win over the checkpoint's. `controlnet`: a Z-Image ControlNet Union (folder, repo
        id or `.safetensors`). `variant`: "turbo" or "base", detected when not given.
        `vae_tiling`: decode in tiles (less memory for large images).
        """
        import torch
        from diffusers import ZImagePipeline

        from zit_agent.backends.variants import detect_variant

        quiet_libraries()
        root = resolve_dir(
            spec,
            what="image model",
            download=download,
            allow_patterns=CONFIG_PATTERNS if checkpoint else None,
        )
        if not (root / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"image model: {root} has no model_index.json (not a diffusers Z-Image folder)",
                hint="point {image_model} at a Z-Image diffusers folder or repo id",
            )
        check_model_folder(root)
        if attention:
            check_attention_name(attention)  # a typo is refused before the model loads
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = _torch_dtype(dtype, device)
        given = {"transformer": transformer, "text_encoder": text_encoder, "vae": vae}
        parts, components = _component_overrides(root, torch_dtype, given, checkpoint, download)
        found_variant, variant_source = detect_variant(
            root,
            names=[n for n in (checkpoint, transformer) if n] + [str(spec)],
            given=variant,
        )
        control_model = None
        if controlnet:  # before the DiT: a missing ControlNet fails in seconds
            from zit_agent.backends.controlnet import load_controlnet

            control_model = load_controlnet(controlnet, torch_dtype=torch_dtype, download=download)
        try:
            tokenizer = QwenTokenizer.from_pretrained(root)
            pipe = ZImagePipeline.from_pretrained(root, dtype=torch_dtype, tokenizer=None, **parts)
        except (OSError, ValueError, KeyError) as err:
            raise ModelNotFoundError(
                f"image model: cannot load {root}: {_first_line(err)}",
                hint=f"re-fetch it with `hf download {spec}`" if not Path(spec).exists() else None,
            ) from None
        _check_encoder_fits(pipe, tokenizer)
        control_pipe = None
        if control_model is not None:
            from zit_agent.backends.controlnet import check_controlnet_fits

            check_controlnet_fits(control_model, pipe.transformer)
            control_pipe = controlnet_pipeline(pipe, control_model)
        # The ControlNet pipeline holds every module of `pipe`: placing it places both.
        placed = control_pipe or pipe
        if cpu_offload:
            placed.enable_model_cpu_offload(device=device)
        else:
            placed.to(device)
        if vae_tiling:
            pipe.vae.enable_tiling()
        if attention:
            _set_attention(pipe, attention)
        if compile:
            pipe.transformer.compile(fullgraph=False)
        from zit_agent.backends.controlnet import controlnet_id

        return cls(
            pipe,
            model_id=str(spec),
            model_revision=_revision(root),
            max_batch=max_batch,
            tokenizer=tokenizer,
            control_pipe=control_pipe,
            controlnet_id=controlnet_id(controlnet) if controlnet else None,
            variant=found_variant,
            variant_source=variant_source,
            components=components,
        )

    def default_options(self, options: RenderOptions | None = None) -> RenderOptions:
        """`options` with this model variant's steps, guidance, shift and CFG normalization."""
        from zit_agent.backends.variants import variant_options

        return variant_options(self.variant, options)

    # -- the protocol ----------------------------------------------------------------------------
    def render(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]:
        # 1. Check inputs, the shift and the sigma schedule; 2. encode
        shift, sigmas, embeds, negative, timings = self._prepare(token_ids, seeds, options)
        # 3. Sampler (built for the shift) and LoRA state; the pipeline gets its own scheduler
        #    back afterwards, so a caller's `pipe(prompt=...)` renders as diffusers does
        own_scheduler = self.pipe.scheduler
        sampler = self._use_sampler(options.sampler, shift.value)
        loras = self._use_loras(options)
        # 4. Denoise, seeds in batches (stochastic samplers draw step noise per seed)
        images: list[tuple[int, Any, float, dict[str, Any]]] = []
        try:
            for chunk in _chunks(seeds, self.max_batch):
                images += self._denoise(embeds, negative, chunk, options, sigmas)
        finally:
            self.pipe.scheduler = own_scheduler
        # 5. Provenance (with the batch each image was rendered in: see `render_batch`)
        base = self._record(token_ids, options, sampler.name, shift, sigmas, loras)
        return [
            RenderedImage(
                image=img,
                seed=seed,
                record={
                    **base,
                    "seed": seed,
                    "batch": batch,
                    "timings": {**timings, "render_s": round(sec, 4)},
                },
            )
            for seed, img, sec, batch in images
        ]

    def _prepare(self, token_ids: list[int], seeds: list[int], options: RenderOptions):
        """What every render does before denoising (here and for candidates): check the inputs,
        resolve the shift and the sigma schedule (a bad one fails before any work), encode the
        ids (the negative sequence too when CFG is on). -> (shift, sigmas, embeds, negative
        embeds or None, encode timings)."""
        self._check(token_ids, seeds, options)
        shift = resolve_shift(options.shift, options.width, options.height, self._scheduler_config)
        sigmas = sigma_schedule(options.scheduler, options.steps, shift.value)
        start = time.perf_counter()
        embeds, cached = self.encode(token_ids, options.layer)
        negative = None
        if options.guidance > 0:
            negative, _ = self.encode(self._negative_ids(options), options.layer)
        timings = {"encode_s": round(time.perf_counter() - start, 4), "encode_cached": cached}
        return shift, sigmas, embeds, negative, timings

    def check(self, options: RenderOptions) -> None:
        """What can be checked without rendering (size, steps, sampler, control, LoRAs...)."""
        check_options(options)

    def render_batch(
        self, token_ids: list[int], batch: list[int], index: int, options: RenderOptions
    ) -> RenderedImage:
        """The image at `index` of the seeds `batch` rendered as one batch, whatever `max_batch`
        says: what a record's `batch` field promises. A seed rendered inside a batch can differ by
        one 8-bit level from the same seed rendered alone (CPU and GPU kernels pick other paths
        for other batch shapes); the same batch gives the same pixels."""
        if not 0 <= index < len(batch):
            raise UserError(f"no image {index} in a batch of {len(batch)}", hint="use 0..n-1")
        saved = self.max_batch
        self.max_batch = max(saved, len(batch))
        try:
            return self.render(token_ids, batch, options)[index]
        finally:
            self.max_batch = saved

    def cpu_threads(self) -> int | None:
        """torch's intra-op threads when the pipeline runs on the CPU (recorded: a batch's pixels
        can move by a level with another thread count); None on an accelerator."""
        import torch

        return torch.get_num_threads() if self.device.type == "cpu" else None

    @contextlib.contextmanager
    def using_cpu_threads(self, threads: int | None) -> Iterator[None]:
        """Render with `threads` torch threads (on the CPU; the count is put back afterwards)."""
        import torch

        before = torch.get_num_threads()
        change = threads is not None and self.device.type == "cpu" and threads != before
        if change:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if change:
                torch.set_num_threads(before)

    def render_candidates(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions,
        preview_step: int, choose: Callable[[list[Any]], list[int]],
    ) -> CandidateRender:  # fmt: skip
        """Candidates judged on their x0 previews at `preview_step`, the kept ones finished from
        their latents there (`backends.candidates`)."""
        from zit_agent.backends.candidates import render_candidates

        return render_candidates(self, token_ids, seeds, options, preview_step, choose)

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, token_ids: list[int], layer: int = RENDER.layer) -> tuple[torch.Tensor, bool]:
        """Hidden states `[len(ids), hidden]` of `layer` for these ids, and whether they came from
        the cache.

        Shorter sequences are right-padded (masked) to `pad_to` as diffusers does: the real
        positions never see the padding, but the same tensor shapes make the numbers, and so the
        images, identical to diffusers' own prompt path bit for bit.
        """
        import torch

        key = (tuple(token_ids), layer)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key], True
        count = len(token_ids)
        padding = [self._pad_id] * max(0, self.pad_to - count)
        ids = torch.tensor([token_ids + padding], dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        mask[0, :count] = 1
        with torch.inference_mode():
            out = self.pipe.text_encoder(
                input_ids=ids, attention_mask=mask, output_hidden_states=True
            )
        embeds = out.hidden_states[layer][0, :count].to(self.pipe.transformer.dtype).clone()
        self._cache[key] = embeds
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return embeds, False

    def _check_positions(self, width: int, height: int) -> None:
        """The DiT places each 16-pixel patch at a position of its height and width axes; past
        their length (`axes_lens`) diffusers fails with an IndexError."""
        lens = list(getattr(self.pipe.transformer.config, "axes_lens", None) or [])
        if len(lens) < 3:
            return
        for side, value, axis in (("height", height, lens[1]), ("width", width, lens[2])):
            if value // 16 > axis:
                raise UserError(
                    f"{side} {value} is past this model's positions ({axis} patches of 16 px)",
                    hint=f"use a {side} of at most {axis * 16}",
                )

    @property
    def layer_count(self) -> int:
        return int(self.pipe.text_encoder.config.num_hidden_layers)

    @property
    def vocab_size(self) -> int:
        return int(self.pipe.text_encoder.config.vocab_size)

    @property
    def token_ceiling(self) -> int:
        """The longest sequence the loaded DiT can place (1504 for Z-Image)."""
        return caption_ceiling(self.pipe.transformer.config.axes_lens[0])

    def _negative_ids(self, options: RenderOptions) -> list[int]:
        """The negative sequence: given ids, else the template around an empty prompt (what
        diffusers encodes for `negative_prompt=None`)."""
        return options.negative_ids or empty_prompt_ids(self.tokenizer)

    # -- checks ----------------------------------------------------------------------------------
    def _check(self, token_ids: list[int], seeds: list[int], options: RenderOptions) -> None:
        if not token_ids:
            raise UserError("no token ids to render", hint="give a non-empty chat sequence")
        if not seeds:
            raise UserError("no seeds to render", hint="give at least one seed")
        for ids, what in ((token_ids, "sequence"), (options.negative_ids or [], "negative")):
            bad = [i for i in ids if not 0 <= i < self.vocab_size]
            if bad:
                raise UserError(
                    f"the {what} has token ids outside the encoder's vocabulary "
                    f"(0..{self.vocab_size - 1}): {bad[:5]}",
                    hint="use ids from the Qwen3 tokenizer of this model",
                )
        check_options(options)
        for ids, what in ((token_ids, "sequence"), (options.negative_ids or [], "negative")):
            check_token_count(len(ids), self.token_ceiling, what)
        if options.control_image and self.control_pipe is None:
            raise UserError(
                "a control image needs a ControlNet, and this image model was loaded without one",
                hint="load the image model with a Z-Image ControlNet Union",
            )
        if options.control_image and options.init_image:
            self._check_control_inpaint(options)
        if self.variant == "base" and options.guidance == 0:
            log.warning(
                "rendering Z-Image (base) with CFG off: base needs CFG (its defaults: %s)",
                _variant_summary(self.variant),
            )
        self._check_positions(options.width, options.height)
        n = self.layer_count
        if not -(n + 1) <= options.layer <= n:
            raise UserError(
                f"layer {options.layer} is out of range for a {n}-layer text encoder",
                hint=f"use -{n + 1}..{n}; Z-Image uses -2",
            )

    def _check_control_inpaint(self, options: RenderOptions) -> None:
        """A control map with an init image is ControlNet inpainting (diffusers'
        `ZImageControlNetInpaintPipeline`): it needs a mask, a ControlNet Union 2.x (whose input
        takes the mask and the masked image) and strength 1 (the region is drawn from noise)."""
        if not options.mask_image:
            raise UserError(
                "a control map with an init image needs a mask (ControlNet inpainting)",
                hint="add {mask}, or leave out {control} or {init}",
            )
        controlnet = self.control_pipe.controlnet
        if controlnet.config.control_in_dim == self.pipe.transformer.config.in_channels:
            raise UserError(
                "this ControlNet cannot inpaint (a Union 1.x: its input has no mask channels)",
                hint="load a Z-Image-Turbo-Fun-Controlnet-Union 2.x with {controlnet}",
            )
        if options.strength != 1.0:
            raise UserError(
                f"strength {options.strength} with a control map: ControlNet inpainting draws "
                "the masked region from noise",
                hint="use {strength} 1 (the default with a mask)",
            )

    # -- sampler, LoRA ---------------------------------------------------------------------------
    def _use_sampler(self, name: str, shift: float):
        """Put the scheduler of sampler `name` (built for `shift`) on the pipeline."""
        key = (name, shift)
        if key not in self._schedulers:
            self._schedulers[key] = make_scheduler(name, self._scheduler_config, shift)
        scheduler, sampler = self._schedulers[key]
        self.pipe.scheduler = scheduler
        return sampler

    def _use_loras(self, options: RenderOptions) -> list[tuple[str, float]]:
        """Load the LoRAs `options` asks for (once each) and set their strengths; no LoRA: all
        loaded adapters are disabled. Returns (path, strength) as used."""
        wanted = [(options.lora, options.lora_strength)] if options.lora else []
        wanted += [(path, strength) for path, strength in options.extra_loras]
        if len(wanted) > 1:
            log.warning(
                "stacking %d LoRAs: the distilled model handles one well; expect artefacts",
                len(wanted),
            )
        if not wanted:
            if self._loras:
                self.pipe.disable_lora()
            return []
        names, weights = [], []
        for path, strength in wanted:
            names.append(self._load_lora(path))
            weights.append(strength)
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=weights)
        self._adapters = names  # the step gates set these adapters' weights per step
        return [(str(Path(p).resolve()), s) for p, s in wanted]

    def _load_lora(self, path: str) -> str:
        resolved = str(Path(path).expanduser().resolve())
        if resolved not in self._loras:
            if importlib.util.find_spec("peft") is None:
                raise UserError("LoRA support needs the peft package", hint="pip install peft")
            state = read_lora_file(path)
            name = f"lora{len(self._loras)}"
            try:
                self.pipe.load_lora_weights(state, adapter_name=name)
            except (ValueError, KeyError, RuntimeError) as err:
                raise UserError(
                    f"LoRA {path} does not fit this model: {_first_line(err)}",
                    hint="use a Z-Image(-Turbo) LoRA",
                ) from None
            present = {a for names in self.pipe.get_list_adapters().values() for a in names}
            if name not in present:  # diffusers only warns when no key matched
                raise UserError(
                    f"LoRA {path} matches none of this model's layers",
                    hint="use a Z-Image(-Turbo) LoRA",
                )
            self._loras[resolved] = name
        return self._loras[resolved]

    # -- denoising -------------------------------------------------------------------------------
    def _denoise(
        self,
        embeds: torch.Tensor,
        negative: torch.Tensor | None,
        seeds: list[int],
        options: RenderOptions,
        sigmas: tuple[float, ...],
    ) -> list[tuple[int, Any, float]]:
        import torch

        from zit_agent.backends.progress import step_callback

        positive = [embeds] * len(seeds)
        callback = None
        if options.noise is not None and options.noise.strength > 0:
            positive, callback = conditioning_noise(
                embeds, len(seeds), options.noise, options.steps
            )
        if uses_step_levers(options):  # early prompt, LoRA gates: per-step conditioning
            positive, callback = self._step_hooks(embeds, len(seeds), options)
        kwargs: dict[str, Any] = {
            "prompt_embeds": positive,
            "negative_prompt_embeds": [negative] * len(seeds) if negative is not None else None,
            "height": options.height,
            "width": options.width,
            "num_inference_steps": len(sigmas) - 1,
            "sigmas": list(sigmas),
            "guidance_scale": options.guidance,
            "cfg_normalization": options.cfg_normalization,
            "generator": [torch.Generator(device="cpu").manual_seed(s) for s in seeds],
            # progress hook (image-to-image runs only the last steps of the schedule)
            "callback_on_step_end": step_callback(callback, refine_steps(len(sigmas) - 1, options)),
        }
        pipe = self.pipe
        if options.control_image:
            pipe = self._control(kwargs, options)
            if options.init_image:
                pipe = self._control_inpaint(kwargs, options, len(seeds))
        elif options.init_image:
            pipe = self._refine(kwargs, options, len(seeds))
        start = time.perf_counter()
        result = self._call_pipe(pipe, kwargs)
        per_image = (time.perf_counter() - start) / len(seeds)
        # The batches the pipeline ran (more than one when out of memory split this one).
        batches = getattr(result, "zit_batches", None) or [list(seeds)]
        made = [batch_field(b, i) for b in batches for i in range(len(b))]
        return [
            (s, img, per_image, batch)
            for s, img, batch in zip(seeds, result.images, made, strict=True)
        ]

    def _control(self, kwargs: dict[str, Any], options: RenderOptions):
        """The ControlNet pipeline, with the sampler of the plain one and the control map added
        to `kwargs`."""
        from zit_agent.backends.controlnet import control_map

        assert self.control_pipe is not None and options.control_image
        self.control_pipe.scheduler = self.pipe.scheduler
        kwargs["control_image"] = control_map(
            options.control_image, options.width, options.height, options.preprocess
        )
        kwargs["controlnet_conditioning_scale"] = options.control_scale
        return self.control_pipe

    def _refine(self, kwargs: dict[str, Any], options: RenderOptions, count: int):
        """diffusers' image-to-image pipeline (inpainting with a mask) over this backend's own
        modules, with the plain pipeline's sampler, and the init image (and mask) in `kwargs`.

        The init image goes in once per seed, so each image's VAE sample and noise come from its
        own seed's generator: a seed renders alike alone or in a batch (diffusers would sample
        the VAE once, with the first generator, for a single image)."""
        from zit_agent.backends.refine import load_init, load_mask

        assert options.init_image
        kind = "inpaint" if options.mask_image else "img2img"
        pipe = self.refine_pipeline(kind)
        pipe.scheduler = self.pipe.scheduler
        init = load_init(options.init_image, options.width, options.height)
        kwargs["image"] = [init] * count
        kwargs["strength"] = options.strength
        if options.mask_image:
            kwargs["mask_image"] = [load_mask(options.mask_image, options.width, options.height)]
            kwargs["mask_image"] *= count
        return pipe

    def _control_inpaint(self, kwargs: dict[str, Any], options: RenderOptions, count: int):
        """diffusers' ControlNet inpainting pipeline over the same modules (the ControlNet's
        input takes the control map, the mask and the masked init image), with the init image
        and mask in `kwargs` once per seed."""
        from zit_agent.backends.refine import load_init, load_mask

        assert options.init_image and options.mask_image
        pipe = self.refine_pipeline("control_inpaint")
        pipe.scheduler = self.pipe.scheduler
        kwargs["image"] = [load_init(options.init_image, options.width, options.height)] * count
        mask = load_mask(options.mask_image, options.width, options.height)
        kwargs["mask_image"] = [mask] * count
        return pipe

    def refine_pipeline(self, kind: str):
        """`ZImageImg2ImgPipeline` ("img2img"), `ZImageInpaintPipeline` ("inpaint") or
        `ZImageControlNetInpaintPipeline` ("control_inpaint") over the same modules as the
        text-to-image pipeline (no weights loaded twice)."""
        if kind not in self._refine_pipes:
            from diffusers import (
                ZImageControlNetInpaintPipeline,
                ZImageImg2ImgPipeline,
                ZImageInpaintPipeline,
            )

            if kind == "control_inpaint":
                assert self.control_pipe is not None
                pipe = ZImageControlNetInpaintPipeline(
                    **self.pipe.components, controlnet=self.control_pipe.controlnet
                )
            else:
                cls = ZImageInpaintPipeline if kind == "inpaint" else ZImageImg2ImgPipeline
                pipe = cls(**self.pipe.components)
            pipe.set_progress_bar_config(disable=True)
            self._refine_pipes[kind] = pipe
        return self._refine_pipes[kind]

    def _call_pipe(self, pipe, kwargs: dict[str, Any]):
        import torch

        # diffusers passes no generator to `scheduler.step`: a stochastic sampler gets the seeds of
        # this batch's rows (a generator's initial seed is the image seed) for its step noise.
        if hasattr(self.pipe.scheduler, "set_noise_seeds"):
            self.pipe.scheduler.set_noise_seeds([g.initial_seed() for g in kwargs["generator"]])
        try:
            return pipe(**kwargs)
        except torch.OutOfMemoryError:
            n = len(kwargs["prompt_embeds"])
            if n == 1:
                raise ResourceExhausted(
                    "out of device memory for one image",
                    hint="use a smaller {size}, {cpu_offload} or {dtype} bf16",
                ) from None
            log.warning("out of memory for a batch of %d: splitting it", n)
            torch.cuda.empty_cache()
            half = n // 2
            parts = [_batch_slice(kwargs, 0, half), _batch_slice(kwargs, half, n)]
            results = [self._call_pipe(pipe, p) for p in parts]
            batches = [
                batch
                for result, part in zip(results, parts, strict=True)
                for batch in getattr(result, "zit_batches", None)
                or [[g.initial_seed() for g in part["generator"]]]
            ]
            results[0].images += results[1].images
            results[0].zit_batches = batches  # the record says the batches that ran
            return results[0]

    # -- step levers: an early prompt, step-gated LoRAs --------------------------------------------
    def _step_hooks(
        self, embeds: torch.Tensor, count: int, options: RenderOptions, offset: int = 0
    ):
        """The prompt embeddings of step `offset` for `count` images, and the step callback that
        switches the conditioning (early prompt, conditioning noise, real prompt) and the LoRA
        weights between steps. `offset`: the schedule step the pipeline call starts at (a
        candidate finished from its preview latents starts past step 0)."""
        early = None
        if options.early_steps > 0 and options.early_ids is not None:
            early, _ = self.encode(options.early_ids, options.layer)
        per_step = step_embeds(embeds, early, options)
        weights = step_weights(options, len(self._adapters))
        if weights:
            self.pipe.set_adapters(self._adapters, adapter_weights=weights[offset])

        def set_weights(values: list[float]) -> None:
            self.pipe.set_adapters(self._adapters, adapter_weights=values)

        return [per_step[offset]] * count, step_switcher(per_step, weights, set_weights, offset)

    def _step_levers_record(self, options: RenderOptions) -> dict[str, Any]:
        """What the record keeps of the step levers (only when used, so plain records do not
        change); the names are `RenderOptions` fields, so `zit rerender` takes them over."""
        out: dict[str, Any] = {}
        if options.early_steps > 0 and options.early_ids is not None:
            out |= {
                "early_steps": options.early_steps,
                "early_prompt": readable_text(options.early_ids, self.tokenizer),
                "early_token_ids": encode_ids(options.early_ids),
            }
        if any(g is not None for g in options.lora_gates):
            out["lora_gates"] = [g.model_dump() if g else None for g in options.lora_gates]
        return out

    # -- provenance ------------------------------------------------------------------------------
    def _record(
        self,
        token_ids: list[int],
        options: RenderOptions,
        sampler: str,
        shift: ShiftChoice,
        sigmas: tuple[float, ...],
        loras: list[tuple[str, float]],
    ) -> dict[str, Any]:
        from zit_agent.backends.controlnet import control_record
        from zit_agent.backends.refine import record_fields

        noise = options.noise if options.noise and options.noise.strength > 0 else None
        negative = options.negative_ids if options.guidance > 0 and options.negative_ids else None
        control = (
            control_record(
                options.control_image,
                options.control_scale,
                options.preprocess,
                self.controlnet_id,
            )
            if options.control_image
            else None
        )
        return {
            "idea": None,
            "prompt": readable_text(token_ids, self.tokenizer),
            "text": self.tokenizer.decode(token_ids),
            **id_fields(token_ids),
            "negative_prompt": readable_text(negative, self.tokenizer) if negative else None,
            "negative_text": self.tokenizer.decode(negative) if negative else None,
            "negative_token_ids": encode_ids(negative) if negative else None,
            "width": options.width,
            "height": options.height,
            "steps": options.steps,
            "guidance": options.guidance,
            "cfg_normalization": options.cfg_normalization,
            "layer": options.layer,
            "sampler": sampler,
            "scheduler": get_scheduler(options.scheduler),
            "sigmas": list(sigmas),
            "shift": shift.value,
            "shift_source": shift.source,
            "shift_auto": shift.auto,
            "lora": loras[0][0] if loras else None,
            "lora_strength": loras[0][1] if loras else None,
            "extra_loras": [list(x) for x in loras[1:]],
            "noise": noise.model_dump() if noise else None,
            **self._step_levers_record(options),
            "model": self.model_id,
            "model_revision": self.model_revision,
            "dtype": _dtype_name(self.pipe.transformer.dtype),
            "torch_threads": self.cpu_threads(),
            "variant": self.variant,
            "variant_source": self.variant_source,
            "components": self.components or None,
            "control": control,
            **record_fields(options),
            "writer": None,
            "versions": dict(package_versions()),
        }


# -- checks shared with the CLI ------------------------------------------------------------------
def check_options(options: RenderOptions) -> None:
    """What can be checked without the model: size, steps, guidance, sampler, scheduler, shift,
    control, LoRA strengths."""
    from zit_agent.backends.controlnet import check_control
    from zit_agent.backends.refine import check_refine
    from zit_agent.backends.samplers import get_sampler
    from zit_agent.backends.schedules import parse_shift

    check_size(options.width, options.height)
    if options.steps < 1:
        raise UserError(f"steps {options.steps} is below 1", hint=f"Turbo uses {RENDER.steps}")
    if options.guidance < 0:
        raise UserError(f"guidance {options.guidance} is negative", hint="use 0 (Turbo) or more")
    get_sampler(options.sampler)
    get_scheduler(options.scheduler)
    parse_shift(options.shift)
    check_control(options.control_image, options.control_scale, options.preprocess)
    check_refine(options)
    if options.lora:
        check_lora_strength(options.lora_strength)
    for _, strength in options.extra_loras:
        check_lora_strength(strength)
    check_step_levers(options)


def check_size(width: int, height: int) -> None:
    for side, value in (("width", width), ("height", height)):
        if value < 16 or value > MAX_SIDE:
            raise UserError(
                f"{side} {value} is out of range",
                hint=f"use 16..{MAX_SIDE} (Turbo: {RENDER.width})",
            )
        if value % 16:
            lower, upper = value // 16 * 16, value // 16 * 16 + 16
            raise UserError(
                f"{side} {value} is not a multiple of 16", hint=f"use {max(lower, 16)} or {upper}"
            )
    if max(width, height) > WARN_SIDE and (width, height) not in _WARNED_SIZES:
        _WARNED_SIZES.add((width, height))  # once: a run checks its size at several steps
        log.warning("%dx%d is above %d px: Z-Image's quality drops there", width, height, WARN_SIDE)


def refine_steps(steps: int, options: RenderOptions) -> int:
    """The steps an image-to-image render runs of a `steps`-step schedule (diffusers'
    `get_timesteps`: the last `steps * strength` steps, rounded up)."""
    if not options.init_image:
        return steps
    start = int(max(steps - min(steps * options.strength, steps), 0))
    return steps - start


_WARNED_SIZES: set[tuple[int, int]] = set()


def caption_ceiling(axes_len: int) -> int:
    """The longest caption a Z-Image DiT with caption axis length `axes_len` can place.

    The DiT pads a caption of L tokens to P = L rounded up to 32, gives it positions 1..P and the
    image position P + 1, which must stay below `axes_len`: P <= axes_len - 2. Z-Image: 1536 ->
    1504 (a 1505-token caption pads to 1536 and fails inside diffusers)."""
    return (axes_len - 2) // SEQ_MULTIPLE * SEQ_MULTIPLE


def check_token_count(count: int, ceiling: int, what: str = "sequence") -> None:
    """Refuse a sequence past `ceiling`; warn past the length Z-Image was trained with."""
    if count > ceiling:
        raise UserError(
            f"the {what} has {count} tokens, past this model's ceiling of {ceiling}",
            hint=f"shorten it to {ceiling} tokens or fewer",
        )
    if count > LIMITS.warn_tokens:
        log.warning(
            "the %s has %d tokens, past the %d Z-Image was trained with: it may follow the "
            "prompt less well",
            what,
            count,
            LIMITS.warn_tokens,
        )


def check_lora_strength(strength: float) -> None:
    low, high = LORA_STRENGTH_RANGE
    if not low <= strength <= high:
        raise UserError(f"LoRA strength {strength} is out of range", hint=f"use {low}..{high}")


def check_lora_file(path: str | Path) -> Path:
    """The LoRA file, checked without loading it: it exists, it is not a pickle, and it starts
    with a safetensors header (8-byte length, then JSON)."""
    path = Path(path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"LoRA {path} is a pickle file ({path.suffix}): refused, pickle can run code",
            hint="use a .safetensors LoRA (convert it with a trusted tool first)",
        )
    if not path.is_file():
        raise UserError(f"LoRA {path} does not exist", hint="check the path given to {lora}")
    from zit_agent.backends.single_file import MAX_HEADER_BYTES, parse_safetensors_header

    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError("no safetensors header")
            parse_safetensors_header(fh.read(size), path.stat().st_size - 8 - size)
    except (OSError, ValueError) as err:
        raise UserError(
            f"LoRA {path} is not a readable safetensors file: {_first_line(err)}",
            hint="use a .safetensors LoRA",
        ) from None
    return path


def read_lora_file(path: str | Path) -> dict[str, Any]:
    """A LoRA's tensors, from safetensors only: pickle formats can run code when loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = check_lora_file(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(
            f"LoRA {path} is not a readable safetensors file: {_first_line(err)}",
            hint="use a .safetensors LoRA",
        ) from None
    for name, tensor in tensors.items():  # inf, NaN or 1e30 would render a black image
        if tensor.is_floating_point() and not bool(tensor.float().abs().le(LORA_MAX_WEIGHT).all()):
            raise UserError(
                f"LoRA {path} has weights that are not finite or past {LORA_MAX_WEIGHT:g} "
                f"(in {name}): it would render black images",
                hint="use an undamaged LoRA",
            )
    return tensors


LORA_MAX_WEIGHT = 65504.0  # half precision's largest number: real LoRA weights are far below


# -- conditioning noise --------------------------------------------------------------------------
def conditioning_noise(embeds: torch.Tensor, count: int, noise: NoiseSettings, steps: int):
    """Noised copies of `embeds` for the first steps, and the step callback that puts the clean
    embeddings back afterwards.

    Noise of `strength` times the embedding's standard deviation is added to a random `fraction`
    of the values (chosen with `noise.seed`), for the first `ceil(steps_share * steps)` steps.
    The pipeline calls the callback after each step, so the noised embeddings go in at the start.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(noise.seed)
    shape = tuple(embeds.shape)
    mask = torch.rand(shape, generator=gen) < noise.fraction
    values = torch.randn(shape, generator=gen) * noise.strength * embeds.float().std().item()
    delta = (values * mask).to(device=embeds.device, dtype=embeds.dtype)
    noisy = embeds + delta
    noisy_steps = max(1, math.ceil(noise.steps_share * steps))

    def restore_clean(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        if step + 1 != noisy_steps:
            return {}
        return {"prompt_embeds": [embeds] * callback_kwargs["latents"].shape[0]}

    return [noisy] * count, restore_clean


# -- step levers ---------------------------------------------------------------------------------
def uses_step_levers(options: RenderOptions) -> bool:
    """Whether a render changes its conditioning or LoRA weights between steps."""
    return (options.early_steps > 0 and options.early_ids is not None) or any(
        g is not None for g in options.lora_gates
    )


def check_step_levers(options: RenderOptions) -> None:
    """Early steps below the step count, and each LoRA gate inside the schedule."""
    steps, early = options.steps, options.early_steps
    if early and early >= steps:
        raise UserError(
            f"early steps {early} leave no step of {steps} for the real prompt",
            hint=f"use early steps 0..{steps - 1}",
        )
    count = (1 if options.lora else 0) + len(options.extra_loras)
    if len(options.lora_gates) > count:
        raise UserError(
            f"{len(options.lora_gates)} LoRA gates for {count} LoRA(s)",
            hint="give one @START-END per LoRA",
        )
    for gate in options.lora_gates:
        if gate is not None:
            check_gate(gate, steps)


def check_gate(gate, steps: int) -> None:
    """A step gate `@START-END` must lie in the schedule: steps 0..`steps`, or fractions 0..1."""
    top = 1.0 if gate.fraction else steps
    whole = gate.fraction or (gate.start == int(gate.start) and gate.end == int(gate.end))
    if not (whole and 0 <= gate.start <= gate.end <= top):
        unit = "fractions 0..1" if gate.fraction else f"whole steps 0..{steps}"
        raise UserError(
            f"LoRA gate @{gate.text()} is outside the schedule of {steps} steps",
            hint=f"use @START-END with START <= END in {unit} (a half-open range)",
        )


def step_embeds(embeds: torch.Tensor, early: torch.Tensor | None, options: RenderOptions):
    """The prompt embeddings of each step: the early prompt's for the first `early_steps`, then
    the noised ones while conditioning noise lasts, then the real ones."""
    noisy, noisy_steps = None, 0
    noise = options.noise
    if noise is not None and noise.strength > 0:
        noisy = conditioning_noise(embeds, 1, noise, options.steps)[0][0]
        noisy_steps = max(1, math.ceil(noise.steps_share * options.steps))
    per_step = []
    for step in range(options.steps):
        if early is not None and step < options.early_steps:
            per_step.append(early)
        elif noisy is not None and step < noisy_steps:
            per_step.append(noisy)
        else:
            per_step.append(embeds)
    return per_step


def step_weights(options: RenderOptions, adapters: int) -> list[list[float]]:
    """Each step's adapter weights (a LoRA outside its gate weighs 0); [] without gates."""
    if not adapters or all(g is None for g in options.lora_gates):
        return []
    strengths = [options.lora_strength] if options.lora else []
    strengths += [strength for _, strength in options.extra_loras]
    gates = list(options.lora_gates) + [None] * (len(strengths) - len(options.lora_gates))
    return [
        [
            s if g is None or g.covers(step, options.steps) else 0.0
            for s, g in zip(strengths, gates, strict=True)
        ]
        for step in range(options.steps)
    ]


def step_switcher(per_step: list, weights: list[list[float]], set_weights, offset: int = 0):
    """diffusers' `callback_on_step_end` that, after step `offset + step`, puts in the next step's
    prompt embeddings and adapter weights where they change."""

    def switch(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        following = offset + step + 1
        if following >= len(per_step):
            return {}
        if weights and weights[following] != weights[following - 1]:
            set_weights(weights[following])
        if per_step[following] is per_step[following - 1]:
            return {}
        return {"prompt_embeds": [per_step[following]] * callback_kwargs["latents"].shape[0]}

    return switch


# -- loading helpers -----------------------------------------------------------------------------
def _torch_dtype(name: str | None, device: str):
    import torch

    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return names[name.lower()]
    except KeyError:
        raise UserError(f"unknown dtype {name!r}", hint=f"use one of {', '.join(names)}") from None


def _dtype_name(dtype) -> str | None:
    """The name `_torch_dtype` takes for `dtype` (recorded, so a rerender loads the same)."""
    return next((n for n in ("bf16", "fp16", "fp32") if _torch_dtype(n, "cpu") is dtype), None)


def _component_overrides(
    root: Path,
    torch_dtype,
    given: dict[str, str | None],
    checkpoint: str | None,
    download: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The pipeline parts that do not come from the model folder, and where each came from:
    an all-in-one checkpoint's parts, then each part given (folder, repo id or single file)."""
    from zit_agent.backends import single_file

    parts: dict[str, Any] = {}
    components: dict[str, str] = {}
    if checkpoint:
        path = single_file.weight_file(checkpoint, "checkpoint", download=download)
        layout = single_file.inspect_file(path, "checkpoint")
        layout.require("transformer")
        parts |= single_file.load_checkpoint(path, root, torch_dtype)
        components |= {kind: _described(layout, kind) for kind in layout.parts}
    encoder = given.get("text_encoder")
    if encoder:
        parts["text_encoder"], components["text_encoder"] = _part(
            "text_encoder", encoder, root, torch_dtype, download
        )
        # Refuse a misfit before the multi-GB transformer loads.
        own = _read_json(root / "text_encoder" / "config.json")
        dit = _read_json(root / "transformer" / "config.json")
        _check_encoder_config(
            parts["text_encoder"].config,
            dit.get("cap_feat_dim", 2560),
            own.get("vocab_size", 151936),
        )
    for kind in ("vae", "transformer"):
        if given.get(kind):
            parts[kind], components[kind] = _part(kind, given[kind], root, torch_dtype, download)
    return parts, components


def _part(kind: str, spec: str, root: Path, torch_dtype, download: bool) -> tuple[Any, str]:
    """One part from a single file (any layout `single_file` reads) or a folder / repo id."""
    from zit_agent.backends import single_file

    what = single_file.PART_NAMES[kind]
    if not single_file.is_file_spec(spec):
        if kind == "text_encoder":
            return _load_text_encoder(spec, torch_dtype, download), spec
        class_name = "AutoencoderKL" if kind == "vae" else "ZImageTransformer2DModel"
        return _load_component(class_name, spec, kind, torch_dtype, download), spec
    path = single_file.weight_file(spec, what, download=download)
    layout = single_file.inspect_file(path, what)
    layout.require(kind)
    loaders = {
        "transformer": single_file.load_transformer_file,
        "text_encoder": single_file.load_text_encoder_file,
        "vae": single_file.load_vae_file,
    }
    return loaders[kind](path, root, torch_dtype), _described(layout, kind)


def _described(layout, kind: str) -> str:
    part = layout.parts[kind]
    quant = f", {layout.quantization}" if layout.quantization else ""
    return f"{layout.path.resolve()} ({part.layout} layout{quant})"


def _load_text_encoder(spec: str, torch_dtype, download: bool):
    from transformers import AutoModel

    root = resolve_dir(spec, what="text encoder", download=download)
    sub = root / "text_encoder" if (root / "text_encoder" / "config.json").is_file() else root
    try:
        return AutoModel.from_pretrained(sub, dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotFoundError(
            f"text encoder: cannot load {sub}: {_first_line(err)}",
            hint="give a Qwen3 transformers folder (config.json + safetensors)",
        ) from None


def _load_component(class_name: str, spec: str, subfolder: str, torch_dtype, download: bool):
    """A VAE or transformer from a diffusers folder / repo id."""
    import diffusers

    cls = getattr(diffusers, class_name)
    what = subfolder if subfolder != "vae" else "VAE"
    try:
        folder = resolve_dir(spec, what=what, download=download)
        sub = folder / subfolder if (folder / subfolder / "config.json").is_file() else folder
        return cls.from_pretrained(sub, dtype=torch_dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(
            f"{what}: cannot load {spec}: {_first_line(err)}",
            hint=f"give a {class_name} .safetensors file or diffusers folder",
        ) from None


def controlnet_pipeline(pipe: ZImagePipeline, controlnet) -> ZImageControlNetPipeline:
    """A `ZImageControlNetPipeline` over the same modules as `pipe` plus `controlnet` (nothing
    loaded twice). With CPU offload the ControlNet runs beside the DiT at every step."""
    from diffusers import ZImageControlNetPipeline

    control = ZImageControlNetPipeline(**pipe.components, controlnet=controlnet)
    control.model_cpu_offload_seq = "text_encoder->controlnet->transformer->vae"
    return control


def _variant_summary(variant: str) -> str:
    from zit_agent.backends.variants import variant_defaults

    found = variant_defaults(variant)
    return f"{found.steps} steps, guidance {found.guidance:g}, shift {found.shift:g}"


def _check_encoder_fits(pipe: ZImagePipeline, tokenizer: QwenTokenizer) -> None:
    _check_encoder_config(
        pipe.text_encoder.config, pipe.transformer.config.cap_feat_dim, tokenizer.vocab_size
    )


def _check_encoder_config(config, cap_feat_dim: int, vocab_rows: int) -> None:
    """An encoder must have the hidden size the DiT reads and at least the vocabulary's rows."""
    if config.hidden_size != cap_feat_dim:
        raise UserError(
            f"the text encoder's hidden size is {config.hidden_size}, "
            f"the transformer needs {cap_feat_dim}",
            hint="use a Qwen3-4B-shaped encoder (hidden 2560) for Z-Image",
        )
    if config.vocab_size < vocab_rows:
        raise UserError(
            f"the text encoder has {config.vocab_size} vocabulary rows, "
            f"the model's vocabulary needs {vocab_rows}",
            hint="use an encoder of the Qwen3 vocabulary (151936 rows)",
        )


def check_attention_name(backend: str) -> None:
    """A name diffusers knows (whether its package is installed is known only once loaded)."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = [b.value for b in AttentionBackendName if not b.value.startswith("_")]
    if backend not in {b.value for b in AttentionBackendName}:
        raise UserError(
            f"unknown attention backend {backend!r}", hint=f"use one of {', '.join(known)}"
        )


# Model-folder configs: each number that sizes a module or a loop, with the most it may be (the
# real Z-Image's values are far below): `n_layers: 1e9` is refused before anything is built.
CONFIG_BOUNDS: dict[str, dict[str, int]] = {
    "transformer/config.json": {
        "n_layers": 1000, "n_refiner_layers": 1000, "dim": 65536, "n_heads": 4096,
        "n_kv_heads": 4096, "cap_feat_dim": 65536, "in_channels": 4096,
    },
    "text_encoder/config.json": {
        "num_hidden_layers": 1000, "hidden_size": 65536, "intermediate_size": 262144,
        "num_attention_heads": 4096, "num_key_value_heads": 4096, "vocab_size": 4_000_000,
        "head_dim": 65536,
    },
    "vae/config.json": {
        "layers_per_block": 100, "latent_channels": 4096, "in_channels": 4096,
        "out_channels": 4096,
    },
    "scheduler/scheduler_config.json": {"num_train_timesteps": 1_000_000},
}  # fmt: skip
CONFIG_LISTS = {"transformer/config.json": ("axes_dims", "axes_lens", "all_patch_size")}


def check_model_folder(root: Path) -> None:
    """The folder's JSON files are objects and their sizes whole numbers in bounds
    (`CONFIG_BOUNDS`): `model_index.json = []`, `text_encoder/config.json = [1,2,3]`, a scheduler
    with `num_train_timesteps: 0` or a transformer with `n_layers: 1e9` are one line that names
    the file and the field, before any weight loads."""
    hint = "re-download the model folder; its config files were edited or damaged"
    for name in ("model_index.json", *CONFIG_BOUNDS):
        path = root / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise UserError(f"image model: {path} is not readable JSON: {err}", hint=hint) from None
        if not isinstance(config, dict):
            raise UserError(f"image model: {path} is not a JSON object", hint=hint)
        for key, most in CONFIG_BOUNDS.get(name, {}).items():
            value = config.get(key)
            if value is not None and not (type(value) is int and 1 <= value <= most):
                raise UserError(
                    f"image model: {path}: {key} is {value!r}, not a whole number in 1..{most}",
                    hint=hint,
                )
        for key in CONFIG_LISTS.get(name, ()):
            value = config.get(key)
            if value is not None and not (
                isinstance(value, list)
                and 0 < len(value) <= 8
                and all(type(v) is int and 1 <= v <= 1_000_000 for v in value)
            ):
                raise UserError(
                    f"image model: {path}: {key} is not a short list of whole numbers", hint=hint
                )


def _set_attention(pipe: ZImagePipeline, backend: str) -> None:
    try:
        pipe.transformer.set_attention_backend(backend)
    except (ValueError, ImportError, RuntimeError) as err:
        raise UserError(
            f"attention backend {backend!r} is not available: {_first_line(err)}",
            hint="try native, flash or sage (the backend's package must be installed)",
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _revision(root: Path) -> str | None:
    """The commit of a hub-cache snapshot (…/snapshots/<commit>); None for a plain folder."""
    return root.name if root.parent.name == "snapshots" else None


def _batch_slice(kwargs: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    part = dict(kwargs)
    for key in ("prompt_embeds", "negative_prompt_embeds", "generator", "image", "mask_image"):
        if part.get(key) is not None:
            part[key] = part[key][start:end]
    return part


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_backend(
    *, model: str, tokenizer: str | QwenTokenizer | None = None, download: bool = False,
    **model_options: Any,
) -> tuple[ZImageBackend, QwenTokenizer]:  # fmt: skip
    """The registry's factory: the backend, and the tokenizer of its encoder (a given tokenizer,
    loaded or a folder or repo id, wins over the model's own)."""
    backend = ZImageBackend.from_pretrained(model, download=download, **model_options)
    if tokenizer is None:
        return backend, backend.tokenizer
    if isinstance(tokenizer, QwenTokenizer):
        return backend, tokenizer
    return backend, QwenTokenizer.from_pretrained(tokenizer, download=download)


load_backend.check = check_options  # type: ignore[attr-defined] # checked before loading
load_backend.options = (  # type: ignore[attr-defined] # the loader keywords it takes
    "text_encoder", "vae", "transformer", "device", "dtype", "cpu_offload", "attention",
    "compile", "max_batch", "checkpoint", "controlnet", "variant", "vae_tiling",
)  # fmt: skip
