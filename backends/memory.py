"""A memory plan for a card's VRAM: what stays on the device, what is offloaded, and whether it fits.

`plan_memory(vram, model=..., ...)` reads the parts' sizes from their files (safetensors headers:
parameter counts, so an fp8 file counts at the dtype it is upcast to; GGUF: the file size, it stays
quantized) and plans the stages in load order: writer, text encoder, transformer (with the
ControlNet), VAE. It picks, in this order, the first that fits the budget:

1. everything resident on the device (fastest);
2. model CPU offload: one stage's weights on the device at a time (the writer stays: llama.cpp and
   transformers writers keep their weights), then the writer on the CPU if that is what does not fit;
3. VAE tiling when the decode is what does not fit;

and refuses early (`MemoryPlan.check`) when a stage cannot fit even so, naming the stage and the
way out (a GGUF transformer, a smaller writer, a smaller image). Working memory per stage is an
estimate from the configs and the image size (activations of one layer, the VAE's widest feature
maps); a fixed reserve covers the CUDA context. `MemoryPlan.backend_options()` gives the loader's
settings (`cpu_offload`, `vae_tiling`), `writer_on_device` whether the writer may use the GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zit_agent.defaults import LIMITS, RENDER
from zit_agent.errors import UserError

GIB = 2**30
VRAM_CHOICES = ("auto", "8", "12", "16", "24", "full")
STAGES = ("writer", "text_encoder", "transformer", "vae")
STAGE_NAMES = {
    "writer": "writer",
    "text_encoder": "text encoder",
    "transformer": "transformer",
    "vae": "VAE decode",
}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
RESERVE_BYTES = GIB // 2  # CUDA context and allocator slack, kept free on every plan
# Bits per weight of the common GGUF types (the formats' block layouts), for the way-out hint.
GGUF_BITS = {"Q8_0": 8.5, "Q4_K": 4.5}
VAE_WIDE_CHANNELS = 128  # the Flux VAE's last up block works at full resolution with 128 channels
VAE_LIVE_MAPS = 6  # feature maps of that size alive at once in a decoder resnet (estimate)


@dataclass(frozen=True)
class PartSize:
    """One part's weights on the device: `bytes` at the load dtype (GGUF: as stored)."""

    stage: str
    source: str
    bytes: int
    params: int
    quantized: bool = False


@dataclass(frozen=True)
class StagePeak:
    stage: str
    weights: int  # weights on the device while this stage runs (resident parts included)
    work: int  # activations estimate

    @property
    def peak(self) -> int:
        return self.weights + self.work


@dataclass
class MemoryPlan:
    budget: int | None  # bytes; None: no limit ("full")
    budget_label: str
    device: str
    parts: dict[str, PartSize]
    stages: list[StagePeak]
    cpu_offload: bool = False
    vae_tiling: bool = False
    writer_on_device: bool = True
    failing: str | None = None  # the stage that does not fit
    problem: str | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.problem is None

    def check(self) -> None:
        """Raise a one-line `UserError` when the plan does not fit."""
        if self.problem:
            raise UserError(self.problem, hint=self.hint)

    def backend_options(self) -> dict[str, bool]:
        """Keyword arguments for `ZImageBackend.from_pretrained`."""
        return {"cpu_offload": self.cpu_offload, "vae_tiling": self.vae_tiling}

    def lines(self) -> list[str]:
        """The plan as text: the choices, then each stage in load order with its expected peak."""
        choices = [
            "model CPU offload" if self.cpu_offload else "all parts resident",
            "VAE tiling" if self.vae_tiling else "no VAE tiling",
        ]
        if "writer" in self.parts:
            choices.append("writer on the device" if self.writer_on_device else "writer on the CPU")
        quantized = self.parts.get("transformer")
        if quantized and quantized.quantized:
            choices.append("quantized transformer")
        out = [f"memory plan for {self.budget_label} ({self.device}): {', '.join(choices)}"]
        for n, stage in enumerate(self.stages, 1):
            part = self.parts[stage.stage]
            out.append(
                f"  {n}. {STAGE_NAMES[stage.stage]:<12} {_gib(part.bytes):>9} weights, "
                f"peak {_gib(stage.peak):>9}  ({part.source})"
            )
        out += [f"  note: {note}" for note in self.notes]
        if self.problem:
            out.append(f"  does not fit: {self.problem}")
        return out


# -- the plan ------------------------------------------------------------------------------------
def parse_vram(text: str) -> tuple[int | None, str]:
    """(budget in bytes, None for no limit; its label) for a `--vram` value."""
    value = str(text).strip().lower()
    if value == "full":
        return None, "full memory"
    if value == "auto":
        total = _cuda_total()
        if total is None:
            return None, "the CPU (no accelerator found)"
        return total, f"{_gib(total)} (detected)"
    try:
        gib = float(value.removesuffix("gb").removesuffix("g"))
    except ValueError:
        gib = 0.0
    if gib <= 0:
        raise UserError(
            f"unknown VRAM size {text!r}", hint=f"use one of {'|'.join(VRAM_CHOICES)} (GB)"
        )
    return int(gib * GIB), f"{gib:g} GB"


def plan_memory(
    vram: str,
    *,
    model: str | Path,
    transformer: str | None = None,
    text_encoder: str | None = None,
    vae: str | None = None,
    checkpoint: str | None = None,
    controlnet: str | None = None,
    writer: str | None = None,
    width: int = RENDER.width,
    height: int = RENDER.height,
    batch: int = 1,
    guidance: float = 0.0,
    dtype: str | None = None,
    download: bool = False,
) -> MemoryPlan:
    """The plan for these parts on a card of `vram` ("auto", "full" or GB)."""
    budget, label = parse_vram(vram)
    device = "cuda" if budget is not None or _cuda_total() is not None else "cpu"
    dtype = dtype or ("bf16" if device == "cuda" else "fp32")
    if dtype not in DTYPE_BYTES:
        raise UserError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPE_BYTES)}")
    root = _model_root(model, checkpoint, download)
    parts = part_sizes(
        root,
        DTYPE_BYTES[dtype],
        transformer=transformer,
        text_encoder=text_encoder,
        vae=vae,
        checkpoint=checkpoint,
        controlnet=controlnet,
        writer=writer,
        download=download,
    )
    images = batch * (2 if guidance > 0 else 1)
    work = {
        "writer": 0,
        "text_encoder": _encoder_work(root, DTYPE_BYTES[dtype]),
        "transformer": _dit_work(root, width, height, images, DTYPE_BYTES[dtype]),
        "vae": _vae_work(root, width, height, batch, DTYPE_BYTES[dtype], tiled=False),
    }
    plan = _choose(budget, label, device, parts, work)
    if plan.failing == "vae":
        work["vae"] = _vae_work(root, width, height, 1, DTYPE_BYTES[dtype], tiled=True)
        plan = _choose(budget, label, device, parts, work)
        plan.vae_tiling = True
    if device == "cpu":
        plan.notes.append("no accelerator: the parts load into RAM, offload does not apply")
    return plan


def _choose(budget, label, device, parts: dict[str, PartSize], work: dict[str, int]) -> MemoryPlan:
    """All resident if that fits, else offload with the writer on the device, else offload
    with the writer on the CPU; else the plan names the stage that does not fit."""
    order = [s for s in STAGES if s in parts]
    total = sum(p.bytes for p in parts.values())
    plan = MemoryPlan(budget, label, device, parts, [StagePeak(s, total, work[s]) for s in order])
    if budget is None or _fits(plan.stages, budget):
        return plan
    plan.cpu_offload = True
    writer = parts["writer"].bytes if "writer" in parts else 0
    for writer_on_device in (True, False) if "writer" in parts else (True,):
        kept = writer if writer_on_device else 0
        plan.writer_on_device = writer_on_device
        plan.stages = [
            StagePeak(s, kept + (parts[s].bytes if s != "writer" else 0), work[s])
            for s in order
            if s != "writer" or writer_on_device
        ]
        if _fits(plan.stages, budget):
            if not writer_on_device:
                plan.notes.append(
                    "the writer does not fit beside the other stages: it runs on the CPU"
                )
            return plan
    worst = max(plan.stages, key=lambda s: s.peak)
    plan.failing = worst.stage
    plan.problem = (
        f"the {STAGE_NAMES[worst.stage]} needs about {_gib(worst.peak)} at its peak, more than "
        f"the {_gib(budget - RESERVE_BYTES)} usable of {label}, even with offload"
    )
    plan.hint = _way_out(worst.stage, parts)
    return plan


def _fits(stages: list[StagePeak], budget: int) -> bool:
    return max(s.peak for s in stages) <= budget - RESERVE_BYTES


def _way_out(stage: str, parts: dict[str, PartSize]) -> str:
    if stage == "transformer":
        dit = parts["transformer"]
        if not dit.quantized:
            sizes = ", ".join(
                f"{name} about {_gib(int(dit.params * bits / 8))}"
                for name, bits in GGUF_BITS.items()
            )
            return f"use a GGUF-quantized transformer file ({sizes}) or a card with more memory"
        return "use a smaller GGUF quantization of the transformer or a smaller image"
    if stage == "vae":
        return "render a smaller image or use a card with more memory"
    if stage == "writer":
        return "use a smaller writer (a Q4 GGUF) or the encoder as writer"
    return "use a card with more memory (the text encoder is loaded at full precision)"


# -- part sizes ----------------------------------------------------------------------------------
def part_sizes(
    root: Path,
    dtype_bytes: int,
    *,
    transformer: str | None = None,
    text_encoder: str | None = None,
    vae: str | None = None,
    checkpoint: str | None = None,
    controlnet: str | None = None,
    writer: str | None = None,
    download: bool = False,
) -> dict[str, PartSize]:
    """Each stage's weights on the device, read from headers (no weights loaded)."""
    from zit_agent.backends import single_file

    sizes: dict[str, PartSize] = {}
    if writer:
        sizes["writer"] = _writer_size(writer, dtype_bytes, download)
    from_checkpoint: dict[str, Any] = {}
    if checkpoint:
        layout = single_file.inspect_file(
            single_file.weight_file(checkpoint, "checkpoint", download=download), "checkpoint"
        )
        from_checkpoint = {k: (layout, p) for k, p in layout.parts.items()}
    for kind, spec in (("text_encoder", text_encoder), ("transformer", transformer), ("vae", vae)):
        if spec:
            sizes[kind] = _given_size(kind, spec, dtype_bytes, download)
        elif kind in from_checkpoint:
            layout, part = from_checkpoint[kind]
            sizes[kind] = PartSize(kind, layout.path.name, part.params * dtype_bytes, part.params)
        else:
            params = _folder_params(root / kind)
            sizes[kind] = PartSize(kind, f"{kind}/", params * dtype_bytes, params)
    if controlnet:
        extra = _given_size("controlnet", controlnet, dtype_bytes, download)
        dit = sizes["transformer"]
        sizes["transformer"] = PartSize(
            "transformer",
            f"{dit.source} + ControlNet {extra.source}",
            dit.bytes + extra.bytes,
            dit.params + extra.params,
            dit.quantized,
        )
    if "writer" in sizes and sizes["writer"].bytes == 0:
        sizes["writer"] = PartSize("writer", sizes["writer"].source, 0, 0)
    return sizes


def _given_size(kind: str, spec: str, dtype_bytes: int, download: bool) -> PartSize:
    from zit_agent.backends import single_file
    from zit_agent.backends.hub import resolve_dir

    if single_file.is_file_spec(spec):
        path = single_file.weight_file(spec, kind, download=download)
        if path.suffix.lower() == ".gguf":
            return PartSize(kind, path.name, path.stat().st_size, 0, quantized=True)
        header = single_file.read_safetensors_header(path, kind)
        params = _header_params(header)
        return PartSize(kind, path.name, params * dtype_bytes, params)
    folder = resolve_dir(spec, what=kind, download=download)
    sub = folder / kind if (folder / kind).is_dir() else folder
    params = _folder_params(sub)
    return PartSize(kind, str(spec), params * dtype_bytes, params)


def _writer_size(spec: str, dtype_bytes: int, download: bool) -> PartSize:
    """A writer's weights: a GGUF file as stored, a transformers folder at the load dtype, the
    encoder as writer nothing (it is the text encoder)."""
    from zit_agent.backends.hub import resolve_dir
    from zit_agent.backends.writers import parse_spec

    kind, target = parse_spec(spec)
    if kind == "encoder":
        return PartSize("writer", "the text encoder (shared)", 0, 0)
    if kind == "gguf":
        from zit_agent.backends.hub import resolve_file

        path = resolve_file(target, what="writer model", download=download)
        return PartSize("writer", path.name, path.stat().st_size, 0, quantized=True)
    folder = resolve_dir(target, what="writer model", allow_patterns=["*.json", "*.safetensors"])
    params = _folder_params(folder)
    return PartSize("writer", Path(target).name, params * dtype_bytes, params)


def _folder_params(folder: Path) -> int:
    from zit_agent.backends.single_file import read_safetensors_header

    return sum(
        _header_params(read_safetensors_header(f)) for f in sorted(folder.glob("*.safetensors"))
    )


def _header_params(header: dict[str, Any]) -> int:
    from zit_agent.backends.single_file import FLOAT_DTYPES, FP8_DTYPES

    total = 0
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in FLOAT_DTYPES | FP8_DTYPES:
            continue
        if name.endswith(("scale_weight", "weight_scale", "scaled_fp8")):
            continue
        count = 1
        for dim in info["shape"]:
            count *= dim
        total += count
    return total


# -- working memory (estimates) ------------------------------------------------------------------
def _encoder_work(root: Path, dtype_bytes: int, tokens: int = LIMITS.warn_tokens) -> int:
    """Every layer's hidden states are kept (`output_hidden_states`), plus one MLP's activations."""
    config = _json(root / "text_encoder" / "config.json")
    hidden = config.get("hidden_size", 2560)
    layers = config.get("num_hidden_layers", 36)
    inner = config.get("intermediate_size", 9728)
    return tokens * ((layers + 1) * hidden + 3 * inner) * dtype_bytes


def _dit_work(root: Path, width: int, height: int, images: int, dtype_bytes: int) -> int:
    """One block's activations for every image of the batch (CFG doubles it): image and caption
    tokens times the widths alive in attention (q, k, v, out) and the SwiGLU feed-forward."""
    config = _json(root / "transformer" / "config.json")
    dim = config.get("dim", 3840)
    tokens = (width // 16) * (height // 16) + LIMITS.warn_tokens  # image + caption tokens
    ffn = int(dim / 3 * 8)
    return images * tokens * (4 * dim + 3 * ffn) * dtype_bytes


def _vae_work(
    root: Path, width: int, height: int, batch: int, dtype_bytes: int, *, tiled: bool
) -> int:
    """The decoder's widest feature maps at full resolution; tiled: one tile of the VAE's sample
    size at a time, one image at a time."""
    config = _json(root / "vae" / "config.json")
    channels = min(config.get("block_out_channels", [VAE_WIDE_CHANNELS]))
    if tiled:
        tile = int(config.get("sample_size", 512))
        width, height = min(width, tile), min(height, tile)
    return batch * VAE_LIVE_MAPS * width * height * channels * dtype_bytes


# -- helpers -------------------------------------------------------------------------------------
def _model_root(model: str | Path, checkpoint: str | None, download: bool) -> Path:
    from zit_agent.backends.hub import resolve_dir
    from zit_agent.backends.zimage import CONFIG_PATTERNS

    return resolve_dir(
        model,
        what="image model",
        download=download,
        allow_patterns=CONFIG_PATTERNS if checkpoint else None,
    )


def _cuda_total() -> int | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[1])


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"
