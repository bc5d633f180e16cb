"""Single weight files into diffusers' Z-Image components: ComfyUI split files, all-in-one
checkpoints and GGUF-quantized DiTs.

A `.safetensors` file is inspected from its header only (names, dtypes, shapes: no weights read),
and each part it holds is found by a marker tensor, whatever prefix it sits under:

| part          | marker                   | layouts                                             |
|---------------|--------------------------|-----------------------------------------------------|
| transformer   | `cap_embedder.1.weight`  | ComfyUI (fused `attention.qkv`), diffusers          |
| text encoder  | `embed_tokens.weight`    | Qwen3 transformers keys (ComfyUI's `qwen_3_4b`)     |
| VAE           | `decoder.conv_in.weight` | LDM / Flux `ae.safetensors`, diffusers              |

So `z_image_turbo_bf16.safetensors` (no prefix or `model.diffusion_model.`), `qwen_3_4b.safetensors`
(`model.`), `ae.safetensors` and an all-in-one file (`model.diffusion_model.`, `text_encoders.
qwen3_4b.transformer.model.`, `vae.` or `first_stage_model.`) all read the same way. fp8 files are
upcast on load (ComfyUI's scaled fp8: times their `scale_weight`). The model config (shapes) comes
from a Z-Image folder: a file holds weights only. `.gguf` is read for the transformer only, through
diffusers' `GGUFQuantizationConfig` (the weights stay quantized, dequantized per layer).
Pickle formats are refused: safetensors and GGUF only.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.errors import ModelNotFoundError, UserError

if TYPE_CHECKING:
    import torch

PARTS = ("transformer", "text_encoder", "vae")
PART_NAMES = {"transformer": "transformer (DiT)", "text_encoder": "text encoder", "vae": "VAE"}
# part: (marker, a second tensor that must sit under the same prefix)
MARKERS = {
    "transformer": ("cap_embedder.1.weight", "t_embedder.mlp.0.weight"),
    "text_encoder": ("embed_tokens.weight", "layers.0.self_attn.q_proj.weight"),
    "vae": ("decoder.conv_in.weight", "encoder.conv_in.weight"),
}
FLOAT_DTYPES = {"F32", "F16", "BF16"}
FP8_DTYPES = {"F8_E4M3", "F8_E5M2"}
SCALE_SUFFIXES = ("scale_weight", "weight_scale")  # ComfyUI scaled fp8, old and new names
SKIPPED_SUFFIXES = ("scaled_fp8", ".scale_weight", ".weight_scale", ".scale_input", ".input_scale")
SUFFIXES = (".safetensors", ".gguf")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# Names that are files, not folders or repo ids (pickle ones included, to be refused by name).
FILE_SUFFIXES = SUFFIXES + PICKLE_SUFFIXES


@dataclass(frozen=True)
class Part:
    kind: str  # one of PARTS
    prefix: str
    layout: str  # "comfyui", "diffusers", "ldm" or "transformers"
    params: int  # parameter count (weights of this part)
    stored_bytes: int  # bytes in the file


@dataclass(frozen=True)
class FileLayout:
    """What one weight file holds."""

    path: Path
    parts: dict[str, Part]
    quantization: str | None  # None, "fp8", "scaled-fp8" or "gguf"
    tensor_count: int

    def describe(self) -> str:
        found = [
            f"{PART_NAMES[p.kind]} ({p.layout} keys"
            + (f" under {p.prefix!r})" if p.prefix else ")")
            for p in self.parts.values()
        ]
        quant = f", {self.quantization}" if self.quantization else ""
        return f"{self.path.name}: " + ", ".join(found) + quant

    def require(self, kind: str) -> Part:
        if kind not in self.parts:
            held = ", ".join(PART_NAMES[k] for k in self.parts) or "no Z-Image part"
            raise UserError(
                f"{self.path.name} holds no {PART_NAMES[kind]}: it holds {held}",
                hint=f"give a {PART_NAMES[kind]} file for this part",
            )
        return self.parts[kind]


# -- inspecting ----------------------------------------------------------------------------------
def is_file_spec(spec: str | Path) -> bool:
    """Whether `spec` names a weight file (a path, or `Org/Repo/file.safetensors`)."""
    path = Path(spec).expanduser()
    return path.is_file() or path.suffix.lower() in FILE_SUFFIXES


def weight_file(spec: str | Path, what: str, *, download: bool = False) -> Path:
    """A local weight file for `spec`: the path, or `Org/Repo/file` from the hub cache."""
    from zit_agent.backends.hub import resolve_file

    path = Path(spec).expanduser()
    text = str(spec)
    in_hub = len(text.split("/")) >= 3 and not path.is_absolute() and not text.startswith(".")
    if not path.is_file() and path.suffix.lower() in SUFFIXES and in_hub:
        path = resolve_file(text, what=what, download=download)
    return check_weight_file(path, what)


def check_weight_file(spec: str | Path, what: str) -> Path:
    """The path of an existing `.safetensors` or `.gguf` file; anything else is refused."""
    path = Path(spec).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{what} {path.name} is a pickle file ({path.suffix}): refused, pickle can run code",
            hint="use a .safetensors file (convert it with a trusted tool first)",
        )
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(
            f"{what} {path.name}: only .safetensors and .gguf files are read",
            hint="give the .safetensors (or, for the transformer, .gguf) file",
        )
    if not path.is_file():
        raise ModelNotFoundError(f"{what}: no file {path}", hint="check the path")
    return path


def inspect_file(spec: str | Path, what: str = "weight file") -> FileLayout:
    """The parts, layouts and quantization of a weight file, read from its header only."""
    path = check_weight_file(spec, what)
    if path.suffix.lower() == ".gguf":
        return _inspect_gguf(path, what)
    header = read_safetensors_header(path, what)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    parts = _find_parts(tensors)
    if not parts:
        raise UserError(
            f"{what} {path.name} is not a Z-Image file: none of its {len(tensors)} tensors is a "
            f"Z-Image DiT, Qwen3 encoder or Flux VAE tensor ({_summary(tensors)})",
            hint="give a Z-Image transformer, text encoder, VAE or all-in-one .safetensors",
        )
    _refuse_packed(path, tensors)
    return FileLayout(path, parts, _quantization(tensors), len(tensors))


MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit (MAX_HEADER_SIZE)
# Bits per element of each safetensors dtype (the format's list): a tensor's byte span must match.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def read_safetensors_header(path: Path, what: str = "weight file") -> dict[str, Any]:
    """The JSON header of a safetensors file: {name: {dtype, shape, data_offsets}, ...},
    validated (`parse_safetensors_header`): a file cut short, a header of 100 MB or nested
    100,000 deep, a name twice, offsets past the end, shapes that are not counts are refused."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError("no safetensors header")
            return parse_safetensors_header(fh.read(size), path.stat().st_size - 8 - size)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{what} {path.name} is not a readable safetensors file: {err}",
            hint="re-download it; only .safetensors and .gguf are read",
        ) from None


def parse_safetensors_header(raw: bytes, data_bytes: int) -> dict[str, Any]:
    """A safetensors header checked against the format: a JSON object, no name twice, each
    tensor a known dtype, a shape of non-negative whole numbers, and `data_offsets` inside the
    file's `data_bytes` spanning exactly its elements. A `ValueError` names the first fault."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise ValueError(f"the header names {_short(key)} twice")
            found[key] = value
        return found

    try:
        header = json.loads(raw, object_pairs_hook=unique)
    except RecursionError:
        raise ValueError("the header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("its __metadata__ is not a map of strings")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"tensor {_short(name)} is not described by an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise ValueError(f"tensor {_short(name)} has no known dtype ({_short(dtype)})")
        if not isinstance(shape, list) or not all(_count(d) for d in shape):
            raise ValueError(f"tensor {_short(name)} has a bad shape {_short(shape)}")
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
        ) or not (offsets[0] <= offsets[1] <= data_bytes):
            raise ValueError(
                f"tensor {_short(name)} has data offsets {_short(offsets)} outside the file's "
                f"{data_bytes} data bytes (a file cut short?)"
            )
        needed = (DTYPE_BITS[dtype] * _numel(shape) + 7) // 8
        if needed != offsets[1] - offsets[0]:
            raise ValueError(
                f"tensor {_short(name)} of shape {_short(shape)} and {dtype} takes {needed} "
                f"bytes, but its offsets span {offsets[1] - offsets[0]}"
            )
    return header


def _count(value: Any) -> bool:
    """A whole number >= 0 (JSON's 1e9 is a float, `true` is not a count)."""
    return type(value) is int and value >= 0


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find_parts(tensors: dict[str, Any]) -> dict[str, Part]:
    found: dict[str, tuple[str, str]] = {}
    for kind, (marker, sibling) in MARKERS.items():
        for key in tensors:
            if key.endswith(marker) and key[: -len(marker)] + sibling in tensors:
                prefix = key[: -len(marker)]
                found[kind] = (prefix, _layout(kind, prefix, tensors))
                break
    owners = _owners(tensors, {k: p for k, (p, _) in found.items()})
    parts = {}
    for kind, (prefix, layout) in found.items():
        keys = [k for k, owner in owners.items() if owner == kind]
        params = sum(_numel(tensors[k]["shape"]) for k in keys if not _skipped(k))
        stored = sum(tensors[k]["data_offsets"][1] - tensors[k]["data_offsets"][0] for k in keys)
        parts[kind] = Part(kind, prefix, layout, params, stored)
    return parts


def _layout(kind: str, prefix: str, tensors: dict[str, Any]) -> str:
    if kind == "transformer":
        return "comfyui" if prefix + "layers.0.attention.qkv.weight" in tensors else "diffusers"
    if kind == "vae":
        return "ldm" if prefix + "encoder.down.0.block.0.conv1.weight" in tensors else "diffusers"
    return "transformers"


def _owners(keys, prefixes: dict[str, str]) -> dict[str, str]:
    """Each key's part: the one with the longest prefix it starts with (an all-in-one's `model.`
    encoder prefix must not swallow `model.diffusion_model.`)."""
    ordered = sorted(prefixes.items(), key=lambda item: -len(item[1]))
    owners = {}
    for key in keys:
        for kind, prefix in ordered:
            if key.startswith(prefix):
                owners[key] = kind
                break
    return owners


def _quantization(tensors: dict[str, Any]) -> str | None:
    dtypes = {v["dtype"] for v in tensors.values()}
    if not dtypes & FP8_DTYPES:
        return None
    scaled = any(k.endswith(SCALE_SUFFIXES) for k in tensors)
    return "scaled-fp8" if scaled else "fp8"


def _refuse_packed(path: Path, tensors: dict[str, Any]) -> None:
    """Weights stored as integers are a packed format (NVFP4, int8 ...) this loader cannot read."""
    packed = [
        k
        for k, v in tensors.items()
        if k.endswith(".weight") and v["dtype"] not in FLOAT_DTYPES | FP8_DTYPES
    ]
    if packed:
        dtype = tensors[packed[0]]["dtype"]
        raise UserError(
            f"{path.name} stores {len(packed)} weights as {dtype} (a packed quantized format "
            f"such as NVFP4 or int8, e.g. {packed[0]}), which is not read here",
            hint="use the bf16 or fp8 file, or a GGUF transformer",
        )


def _summary(names) -> str:
    """The most common top-level prefixes of tensor names, for error messages."""
    heads = Counter(name.split(".")[0] for name in names)
    shown = ", ".join(f"{head}.* ({n})" for head, n in heads.most_common(4))
    return f"found {shown}" if shown else "found no tensors"


def _numel(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _skipped(name: str) -> bool:
    return name.endswith(SKIPPED_SUFFIXES) or name.endswith(".comfy_quant")


def _inspect_gguf(path: Path, what: str) -> FileLayout:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001  (gguf's parser on a damaged header: IndexError, ...)
        raise UserError(
            f"{what} {path.name} is not a readable GGUF file: {type(err).__name__}: "
            f"{str(err)[:200]}",
            hint="re-download it",
        ) from None
    names = {t.name: t for t in reader.tensors}
    marker, sibling = MARKERS["transformer"]
    prefix = next(
        (
            n[: -len(marker)]
            for n in names
            if n.endswith(marker) and n[: -len(marker)] + sibling in names
        ),
        None,
    )
    if prefix is None:
        field = reader.get_field("general.architecture")
        arch = bytes(field.parts[-1]).decode() if field else "unknown"
        raise UserError(
            f"{what} {path.name} is not a Z-Image DiT GGUF (architecture {arch!r}, "
            f"{_summary(names)})",
            hint="a GGUF file is read for the transformer only (z_image_turbo-Q8_0.gguf style)",
        )
    layout = "comfyui" if prefix + "layers.0.attention.qkv.weight" in names else "diffusers"
    params = sum(int(t.n_elements) for t in reader.tensors)
    stored = sum(int(t.n_bytes) for t in reader.tensors)
    part = Part("transformer", prefix, layout, params, stored)
    return FileLayout(path, {"transformer": part}, "gguf", len(names))


# -- loading -------------------------------------------------------------------------------------
def part_state_dict(layout: FileLayout, kind: str, torch_dtype) -> dict[str, torch.Tensor]:
    """The tensors of one part, prefix removed, cast to `torch_dtype` (fp8 upcast and scaled)."""
    from safetensors import safe_open

    part = layout.require(kind)
    with (
        _readable(layout.path, PART_NAMES[kind]),
        safe_open(str(layout.path), framework="pt", device="cpu") as fh,
    ):
        keys = list(fh.keys())
        owners = _owners(keys, {k: p.prefix for k, p in layout.parts.items()})
        mine = [k for k in keys if owners.get(k) == kind]
        out = {}
        for key in mine:
            name = key[len(part.prefix) :]
            if _skipped(name):
                continue
            tensor = fh.get_tensor(key)
            if tensor.dtype.itemsize == 1 and tensor.is_floating_point():
                tensor = _upcast_fp8(fh, key, tensor, set(mine))
            out[name] = tensor.to(torch_dtype) if tensor.is_floating_point() else tensor
    return out


@contextlib.contextmanager
def _readable(path: Path, what: str) -> Iterator[None]:
    """The safetensors library's own errors while reading a file, as a `UserError`."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        first = (str(err).strip().splitlines() or ["unreadable"])[0][:200]
        raise UserError(
            f"{what} {path.name} is not a readable safetensors file: {first}",
            hint="re-download it; only .safetensors and .gguf are read",
        ) from None


def _upcast_fp8(fh, key: str, tensor, keys: set[str]):
    """An fp8 weight in float32, times its scale when the file stores one (scaled fp8)."""
    stem = key.removesuffix("weight")
    scale_key = next((stem + s for s in SCALE_SUFFIXES if stem + s in keys), None)
    weight = tensor.float()
    if scale_key is None:
        return weight
    scale = fh.get_tensor(scale_key).float()
    try:
        return weight * (
            scale if scale.numel() == 1 else scale.reshape(-1, *[1] * (weight.dim() - 1))
        )
    except RuntimeError:
        raise UserError(
            f"the fp8 scale {scale_key} (shape {list(scale.shape)}) does not fit {key} "
            f"(shape {list(weight.shape)})",
            hint="use the bf16 file or a per-tensor scaled fp8 file",
        ) from None


def load_transformer_file(spec: str | Path, config_root: Path, torch_dtype):
    """`ZImageTransformer2DModel` from a ComfyUI/diffusers `.safetensors` or a GGUF file."""
    from diffusers import ZImageTransformer2DModel

    layout = inspect_file(spec, "transformer")
    kwargs = {"config": str(config_root), "subfolder": "transformer", "torch_dtype": torch_dtype}
    if layout.quantization == "gguf":
        from diffusers import GGUFQuantizationConfig

        source: Any = str(layout.path)
        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=torch_dtype)
    else:
        source = part_state_dict(layout, "transformer", torch_dtype)
    return _build(
        "transformer", layout, lambda: ZImageTransformer2DModel.from_single_file(source, **kwargs)
    )


def load_vae_file(spec: str | Path, config_root: Path, torch_dtype):
    """`AutoencoderKL` from an LDM (`ae.safetensors`) or diffusers-layout file."""
    from diffusers import AutoencoderKL

    layout = _safetensors_layout(spec, "VAE")
    state = part_state_dict(layout, "vae", torch_dtype)
    kwargs = {"config": str(config_root), "subfolder": "vae", "torch_dtype": torch_dtype}
    return _build("vae", layout, lambda: AutoencoderKL.from_single_file(state, **kwargs))


def load_text_encoder_file(spec: str | Path, config_root: Path, torch_dtype):
    """The model folder's text encoder class and config, with the weights of a single file."""
    layout = _safetensors_layout(spec, "text encoder")
    return _text_encoder_from_state(
        part_state_dict(layout, "text_encoder", torch_dtype), config_root, layout
    )


def load_checkpoint(spec: str | Path, config_root: Path, torch_dtype) -> dict[str, Any]:
    """The parts of an all-in-one checkpoint (each part it holds), by pipeline component name."""
    layout = _safetensors_layout(spec, "checkpoint")
    loaders = {
        "transformer": load_transformer_file,
        "text_encoder": load_text_encoder_file,
        "vae": load_vae_file,
    }
    return {kind: loaders[kind](layout.path, config_root, torch_dtype) for kind in layout.parts}


def _safetensors_layout(spec: str | Path, what: str) -> FileLayout:
    layout = inspect_file(spec, what)
    if layout.quantization == "gguf":
        raise UserError(
            f"{what} {layout.path.name}: GGUF files are read for the transformer only",
            hint=f"give the {what} as .safetensors",
        )
    return layout


def _text_encoder_from_state(state: dict[str, Any], config_root: Path, layout: FileLayout):
    import transformers
    from accelerate import init_empty_weights

    folder = config_root / "text_encoder"
    class_name = _model_index(config_root).get("text_encoder", [None, "Qwen3Model"])[1]
    cls = getattr(transformers, class_name, transformers.Qwen3Model)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"text encoder {layout.path.name}: no encoder config in {folder} ({_first_line(err)})",
            hint="the config comes from the image model's folder: give a Z-Image folder",
        ) from None
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    try:
        missing, _ = model.base_model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as err:
        raise UserError(
            f"text encoder {layout.path.name} does not fit the encoder config in {folder}: "
            f"{_first_line(err)}",
            hint="use an encoder of the shape the image model's config names (Qwen3-4B)",
        ) from None
    if missing:
        raise UserError(
            f"text encoder {layout.path.name} lacks {len(missing)} tensors, e.g. {missing[0]}",
            hint="give a complete Qwen3 encoder file (qwen_3_4b.safetensors style)",
        )
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


def _build(kind: str, layout: FileLayout, make):
    from diffusers.utils import logging as diffusers_logging

    # from_single_file casts with `.to(dtype)` itself and then warns about it (an empty list of
    # float32 modules): not the user's concern.
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return make()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(
            f"{PART_NAMES[kind]} {layout.path.name} ({layout.describe()}) does not load: "
            f"{_first_line(err)}",
            hint="the shapes come from the image model's config: use a file of that model",
        ) from None
    finally:
        diffusers_logging.set_verbosity(level)


def _model_index(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
