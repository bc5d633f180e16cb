"""The tiny Z-Image written as the single files the community ships, from its diffusers folder.

- `write_comfy_split_files`: ComfyUI's three files (`z_image_turbo_bf16.safetensors` with fused
  `attention.qkv` keys, `qwen_3_4b.safetensors` with `model.` Qwen3 keys, `ae.safetensors` in the
  LDM layout), optionally fp8 (plain or scaled, as ComfyUI's `*_fp8_e4m3fn*` files).
- `write_all_in_one`: all three in one file (`model.diffusion_model.`, `text_encoders.qwen3_4b.
  transformer.model.`, `vae.` or `first_stage_model.`).
- `write_gguf_transformer`: the DiT as GGUF (ComfyUI keys; weights quantized, Q8_0 by default).
- `write_config_folder`: the folder's configs and tokenizer without weights (what a single file needs
  beside it).

Key maps are the inverse of diffusers' own converters (`single_file_utils`), so loading a file back
checks both directions.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SPLIT_NAMES = {
    "transformer": "z_image_turbo_bf16.safetensors",
    "text_encoder": "qwen_3_4b.safetensors",
    "vae": "ae.safetensors",
}
ALL_IN_ONE_PREFIXES = {
    "transformer": "model.diffusion_model.",
    "text_encoder": "text_encoders.qwen3_4b.transformer.",
    "vae": "vae.",
}
CONFIG_PATTERNS = ("*.json", "*.txt", "*.jinja")
_DIT_RENAMES = (
    ("all_final_layer.2-1.", "final_layer."),
    ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def comfy_transformer_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' `ZImageTransformer2DModel` keys -> the original/ComfyUI keys (fused qkv)."""
    import torch

    out = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace("to_q", name)] for name in ("to_q", "to_k", "to_v")]
            out[key.replace("to_q", "qkv")] = torch.cat(parts)
            continue
        for old, new in _DIT_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def ldm_vae_state(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """diffusers' `AutoencoderKL` keys -> the LDM / Flux `ae.safetensors` keys."""
    out = {}
    for key, value in state.items():
        new = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
        new = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", new)
        new = re.sub(
            r"up_blocks\.(\d+)\.resnets\.",
            lambda m: f"up.{blocks - 1 - int(m.group(1))}.block.",
            new,
        )
        new = re.sub(
            r"up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"up.{blocks - 1 - int(m.group(1))}.upsample.",
            new,
        )
        new = re.sub(
            r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new
        )
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for old, ldm in (
                ("group_norm", "norm"),
                ("to_q", "q"),
                ("to_k", "k"),
                ("to_v", "v"),
                ("to_out.0", "proj_out"),
            ):
                new = new.replace(f".{old}.", f".{ldm}.")
            if value.dim() == 2:  # LDM attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        out[new] = value
    return out


def comfy_text_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `Qwen3Model`'s keys as ComfyUI's `qwen_3_4b.safetensors` stores them (`model.` prefix)."""
    return {f"model.{k}": v for k, v in state.items()}


def component_states(model_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The three parts of a diffusers Z-Image folder, each in its single-file layout."""
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import AutoModel

    root = Path(model_dir)
    dit = ZImageTransformer2DModel.from_pretrained(root / "transformer").state_dict()
    vae = AutoencoderKL.from_pretrained(root / "vae")
    encoder = AutoModel.from_pretrained(root / "text_encoder").state_dict()
    return {
        "transformer": comfy_transformer_state(dit),
        "text_encoder": comfy_text_encoder_state(encoder),
        "vae": ldm_vae_state(vae.state_dict(), len(vae.config.down_block_types)),
    }


def to_fp8(state: dict[str, torch.Tensor], *, scaled: bool) -> dict[str, torch.Tensor]:
    """2-D weights as float8_e4m3fn (with a per-tensor `scale_weight` when `scaled`), the rest as is."""
    import torch

    out = {}
    for key, value in state.items():
        if not (key.endswith(".weight") and value.dim() == 2):
            out[key] = value
            continue
        if scaled:
            scale = value.abs().max().float() / 448.0  # e4m3's largest finite value
            out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            out[key.removesuffix("weight") + "scale_weight"] = scale.reshape(())
        else:
            out[key] = value.to(torch.float8_e4m3fn)
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def write_comfy_split_files(
    model_dir: str | Path, out_dir: str | Path, *, fp8: str | None = None
) -> dict[str, Path]:
    """The three ComfyUI files of the folder's model; `fp8`: None, "plain" or "scaled" (the DiT
    and the encoder in fp8, as ComfyUI ships them; the VAE stays as is)."""
    out_dir = Path(out_dir)
    states = component_states(model_dir)
    paths = {}
    for kind, state in states.items():
        name = SPLIT_NAMES[kind]
        if fp8 and kind != "vae":
            state = to_fp8(state, scaled=fp8 == "scaled")
            name = name.replace("_bf16", "").replace(".safetensors", "_fp8_e4m3fn.safetensors")
        paths[kind] = save_safetensors(state, out_dir / name)
    return paths


def write_all_in_one(model_dir: str | Path, path: str | Path, *, vae_prefix: str = "vae.") -> Path:
    """All three parts in one file, under ComfyUI checkpoint prefixes."""
    prefixes = {**ALL_IN_ONE_PREFIXES, "vae": vae_prefix}
    merged = {}
    for kind, state in component_states(model_dir).items():
        merged |= {prefixes[kind] + k: v for k, v in state.items()}
    return save_safetensors(merged, Path(path))


def write_gguf_transformer(model_dir: str | Path, path: str | Path, *, qtype: str = "Q8_0") -> Path:
    """The DiT as a GGUF file in ComfyUI keys: 2-D weights whose rows fit the quant blocks in
    `qtype`, everything else float32 (as the community's converters do)."""
    import gguf

    kind = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[kind][0]
    state = component_states(model_dir)["transformer"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "z_image")
    for key, value in state.items():
        array = value.float().numpy()
        if key.endswith(".weight") and array.ndim == 2 and array.shape[1] % block == 0:
            writer.add_tensor(key, gguf.quants.quantize(array, kind), raw_dtype=kind)
        else:
            writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def write_config_folder(model_dir: str | Path, out_dir: str | Path) -> Path:
    """The folder without its weights: configs, scheduler and tokenizer (kilobytes)."""
    root, out_dir = Path(model_dir), Path(out_dir)
    for pattern in CONFIG_PATTERNS:
        for src in root.rglob(pattern):
            dest = out_dir / src.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    return out_dir


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)
    return path
