"""The rendering options shared by `zit generate` and `zit chat`, and what they turn into.

Commands declare the options with the `Annotated` aliases below (typer reads them from the
signature) and pass the values to `render_choice`, which checks them before any model is loaded
and returns a `RenderChoice`: the backend to build (`BackendSpec`), the `RenderOptions` and the
seeds. Defaults come from `agent.settings.RenderDefaults` (Turbo's), never from here.

Only typer and the standard library are imported at module level: `zit --help` stays light.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.zimage import ZImageBackend
    from zit_agent.settings import Settings

PANEL = "Rendering"
MODEL_PANEL = "Image model"

ImageModelOpt = Annotated[
    str | None,
    typer.Option(
        "--image-model", help="Z-Image diffusers folder or repo id.", rich_help_panel=MODEL_PANEL
    ),
]
CountOpt = Annotated[
    int, typer.Option("-n", "--count", min=1, help="Images to render.", rich_help_panel=PANEL)
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        help="First seed (then +1 per image); random if not given.", rich_help_panel=PANEL
    ),
]
SizeOpt = Annotated[
    str | None,
    typer.Option(help="WIDTHxHEIGHT, multiples of 16 (default 1024x1024).", rich_help_panel=PANEL),
]
StepsOpt = Annotated[
    int | None, typer.Option(help="Denoising steps (Turbo: 8).", rich_help_panel=PANEL)
]
GuidanceOpt = Annotated[
    float | None, typer.Option(help="CFG scale; 0 turns CFG off (Turbo).", rich_help_panel=PANEL)
]
NegativeOpt = Annotated[
    str | None,
    typer.Option(help="Negative prompt, used when --guidance > 0.", rich_help_panel=PANEL),
]
LayerOpt = Annotated[
    int | None,
    typer.Option(
        help="Text-encoder hidden layer fed to the DiT (Z-Image: -2).", rich_help_panel=PANEL
    ),
]
SamplerOpt = Annotated[
    str | None,
    typer.Option(help="euler (default), euler_a, lcm or unipc.", rich_help_panel=PANEL),
]
ShiftOpt = Annotated[
    float | None,
    typer.Option(
        help="Static flow-matching shift (default: the model's, 3.0).", rich_help_panel=PANEL
    ),
]
LoraOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        help="LoRA .safetensors file, optionally PATH:STRENGTH (-2..2, default 1). "
        "Repeatable, but the distilled model handles one well.",
        rich_help_panel=PANEL,
    ),
]
NoiseOpt = Annotated[
    float | None,
    typer.Option(
        help="Conditioning noise strength (x the embedding's std) to break ruts; 0: off.",
        rich_help_panel=PANEL,
    ),
]
NoiseFractionOpt = Annotated[
    float | None,
    typer.Option(help="Share of embedding values noised (default 0.5).", rich_help_panel=PANEL),
]
NoiseStepsOpt = Annotated[
    float | None,
    typer.Option(help="Share of the steps that get noise (default 0.2).", rich_help_panel=PANEL),
]
NoiseSeedOpt = Annotated[
    int | None,
    typer.Option(help="Seed of the conditioning noise (default 0).", rich_help_panel=PANEL),
]
TextEncoderOpt = Annotated[
    str | None,
    typer.Option(
        help="Another Qwen3-4B-shaped text encoder (folder or repo id).",
        rich_help_panel=MODEL_PANEL,
    ),
]
VaeOpt = Annotated[
    str | None,
    typer.Option(
        help="Another Flux-layout VAE: folder, repo id or single .safetensors file.",
        rich_help_panel=MODEL_PANEL,
    ),
]
TransformerOpt = Annotated[
    str | None,
    typer.Option(
        help="The transformer from a single .safetensors file (ComfyUI layout) or a folder.",
        rich_help_panel=MODEL_PANEL,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(help="cuda, cpu, ... (default: cuda when present).", rich_help_panel=MODEL_PANEL),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        help="bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU).", rich_help_panel=MODEL_PANEL
    ),
]
CpuOffloadOpt = Annotated[
    bool,
    typer.Option(
        "--cpu-offload",
        help="Keep models on the CPU until used (less GPU memory).",
        rich_help_panel=MODEL_PANEL,
    ),
]
AttentionOpt = Annotated[
    str | None,
    typer.Option(
        help="diffusers attention backend (native, flash, sage, ...).", rich_help_panel=MODEL_PANEL
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option("--compile", help="torch.compile the transformer.", rich_help_panel=MODEL_PANEL),
]
BatchOpt = Annotated[
    int, typer.Option(min=1, help="Most seeds rendered in one batch.", rich_help_panel=MODEL_PANEL)
]


@dataclass(frozen=True)
class BackendSpec:
    """How to build the image backend (`build_backend`)."""

    model: str
    download: bool = False
    device: str | None = None
    dtype: str | None = None
    cpu_offload: bool = False
    attention: str | None = None
    compile: bool = False
    text_encoder: str | None = None
    vae: str | None = None
    transformer: str | None = None
    max_batch: int = 4


@dataclass(frozen=True)
class RenderChoice:
    backend: BackendSpec
    options: RenderOptions
    seeds: list[int]
    negative: str | None = None  # negative prompt text; its ids come from `negative_ids`


def render_choice(
    settings: Settings,
    *,
    count: int = 1,
    seed: int | None = None,
    size: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    negative: str | None = None,
    layer: int | None = None,
    sampler: str | None = None,
    shift: float | None = None,
    lora: list[str] | None = None,
    noise: float | None = None,
    noise_fraction: float | None = None,
    noise_steps: float | None = None,
    noise_seed: int | None = None,
    text_encoder: str | None = None,
    vae: str | None = None,
    transformer: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    cpu_offload: bool = False,
    attention: str | None = None,
    compile: bool = False,
    batch: int = 4,
) -> RenderChoice:
    """Flags on top of settings, checked (one-line `UserError`s) before any model loads."""
    from zit_agent.agent.cli.common import parse_size
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.samplers import get_sampler
    from zit_agent.backends.zimage import check_options

    defaults = settings.render
    width, height = parse_size(size) if size else (defaults.width, defaults.height)
    loras = [parse_lora(spec) for spec in lora or []]
    options = _validated_options(
        RenderOptions,
        width=width,
        height=height,
        steps=steps if steps is not None else defaults.steps,
        guidance=guidance if guidance is not None else defaults.guidance,
        layer=layer if layer is not None else defaults.layer,
        shift=shift if shift is not None else _set_shift(settings),
        sampler=get_sampler(sampler).name if sampler else "euler",
        noise=_noise(noise, noise_fraction, noise_steps, noise_seed),
        lora=loras[0][0] if loras else None,
        lora_strength=loras[0][1] if loras else 1.0,
        extra_loras=loras[1:],
    )
    check_options(options)
    first = seed if seed is not None else secrets.randbelow(2**31)
    backend = BackendSpec(
        model=settings.image_model,
        download=settings.download,
        device=device,
        dtype=dtype,
        cpu_offload=cpu_offload,
        attention=attention,
        compile=compile,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        max_batch=batch,
    )
    seeds = [first + i for i in range(count)]
    return RenderChoice(backend=backend, options=options, seeds=seeds, negative=negative)


def parse_lora(spec: str) -> tuple[str, float]:
    """'PATH' or 'PATH:STRENGTH' -> (path, strength); strength checked against -2..2."""
    from zit_agent.backends.zimage import check_lora_file, check_lora_strength

    path, strength = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            path, strength = head, float(tail)
        except ValueError:
            path = spec  # a colon that is part of the path
    check_lora_strength(strength)
    check_lora_file(path)
    return path, strength


def build_backend(spec: BackendSpec) -> ZImageBackend:
    from zit_agent.backends.zimage import ZImageBackend

    return ZImageBackend.from_pretrained(
        spec.model,
        download=spec.download,
        device=spec.device,
        dtype=spec.dtype,
        cpu_offload=spec.cpu_offload,
        attention=spec.attention,
        compile=spec.compile,
        text_encoder=spec.text_encoder,
        vae=spec.vae,
        transformer=spec.transformer,
        max_batch=spec.max_batch,
    )


def with_negative(choice: RenderChoice, tokenizer, max_tokens: int) -> RenderOptions:
    """`choice.options` with the ids of the negative prompt (a plain sequence) when CFG is on."""
    from zit_agent.sequence import ChatSequence, assemble

    if not choice.negative or choice.options.guidance <= 0:
        return choice.options
    ids = assemble(ChatSequence.plain(choice.negative), tokenizer, max_tokens=max_tokens).ids
    return choice.options.model_copy(update={"negative_ids": ids})


def _set_shift(settings: Settings) -> float | None:
    """The shift from zit.toml / ZIT_RENDER__SHIFT when set there; else None (the model's own)."""
    return settings.render.shift if "shift" in settings.render.model_fields_set else None


def _noise(strength, fraction, steps_share, seed):
    from zit_agent.backends.base import NoiseSettings

    given = {"fraction": fraction, "steps_share": steps_share, "seed": seed}
    if strength is None:
        if any(v is not None for v in given.values()):
            from zit_agent.errors import UserError

            raise UserError("--noise-fraction/--noise-steps/--noise-seed need --noise STRENGTH")
        return None
    return _validated_options(
        NoiseSettings, strength=strength, **{k: v for k, v in given.items() if v is not None}
    )


def _validated_options(model, **values):
    """Build a pydantic model; a validation error becomes a one-line UserError."""
    from pydantic import ValidationError

    from zit_agent.errors import UserError

    try:
        return model(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"bad value for {where}: {first['msg']}") from None
