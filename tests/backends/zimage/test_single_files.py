"""Single weight files on the tiny model: ComfyUI split files, all-in-one checkpoints, fp8, GGUF.

Each file is written from the tiny diffusers folder in the community's layout
(`backends.tiny.single_files`) and must give the folder's image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zit_agent.backends import single_file
from zit_agent.backends.tiny import single_files as tiny_files
from zit_agent.backends.zimage import ZImageBackend
from zit_agent.errors import UserError


def render(backend, ids, options) -> np.ndarray:
    return np.asarray(backend.render(ids, [7], options)[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def baseline(backend, plain_ids, small_options):
    return render(backend, plain_ids, small_options)


@pytest.fixture(scope="module")
def config_dir(tiny_zimage_dir, tmp_path_factory):
    """The tiny model's configs and tokenizer, no weights: what single files need beside them."""
    return tiny_files.write_config_folder(tiny_zimage_dir, tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="module")
def split_files(tiny_zimage_dir, tmp_path_factory):
    return tiny_files.write_comfy_split_files(tiny_zimage_dir, tmp_path_factory.mktemp("comfy"))


def test_config_folder_has_no_weights(config_dir):
    assert (config_dir / "model_index.json").is_file()
    assert not list(config_dir.rglob("*.safetensors"))


def test_comfyui_split_files_give_the_folder_image(
    config_dir, split_files, plain_ids, small_options, baseline
):
    backend = ZImageBackend.from_pretrained(
        config_dir,
        transformer=str(split_files["transformer"]),
        text_encoder=str(split_files["text_encoder"]),
        vae=str(split_files["vae"]),
    )
    assert np.array_equal(render(backend, plain_ids, small_options), baseline)
    components = backend.render(plain_ids, [7], small_options)[0].record["components"]
    assert components["transformer"].endswith("z_image_turbo_bf16.safetensors (comfyui layout)")
    assert components["vae"].endswith("ae.safetensors (ldm layout)")


@pytest.mark.parametrize("part", ["transformer", "text_encoder", "vae"])
def test_each_split_file_alone_replaces_its_part(
    tiny_zimage_dir, split_files, part, plain_ids, small_options, baseline
):
    backend = ZImageBackend.from_pretrained(tiny_zimage_dir, **{part: str(split_files[part])})
    assert np.array_equal(render(backend, plain_ids, small_options), baseline)


@pytest.mark.parametrize("vae_prefix", ["vae.", "first_stage_model."])
def test_all_in_one_checkpoint_gives_the_folder_image(
    tiny_zimage_dir, config_dir, tmp_path, vae_prefix, plain_ids, small_options, baseline
):
    path = tiny_files.write_all_in_one(
        tiny_zimage_dir, tmp_path / "aio.safetensors", vae_prefix=vae_prefix
    )
    layout = single_file.inspect_file(path)
    assert {k: p.prefix for k, p in layout.parts.items()} == {
        "transformer": "model.diffusion_model.",
        "text_encoder": "text_encoders.qwen3_4b.transformer.model.",
        "vae": vae_prefix,
    }
    backend = ZImageBackend.from_pretrained(config_dir, checkpoint=str(path))
    assert np.array_equal(render(backend, plain_ids, small_options), baseline)


def test_a_part_given_beside_a_checkpoint_wins(
    tiny_zimage_dir, config_dir, tmp_path, plain_ids, small_options, baseline
):
    from zit_agent.backends.tiny.zimage import tiny_vae

    aio = tiny_files.write_all_in_one(tiny_zimage_dir, tmp_path / "aio.safetensors")
    tiny_vae(seed=21).save_pretrained(tmp_path / "vae")
    backend = ZImageBackend.from_pretrained(
        config_dir, checkpoint=str(aio), vae=str(tmp_path / "vae")
    )
    assert backend.components["vae"] == str(tmp_path / "vae")
    assert not np.array_equal(render(backend, plain_ids, small_options), baseline)


def dequantized_copy(path, out):
    """The fp8 file's weights upcast by hand (times the scale where there is one), saved in the
    same layout at full precision: the reference the fp8 loader must match."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    plain = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith("scale_weight"):
            continue
        if value.dtype == torch.float8_e4m3fn:
            scale = state.get(key.removesuffix("weight") + "scale_weight")
            value = value.float() * (scale.float() if scale is not None else 1.0)
        plain[key] = value
    save_file(plain, str(out))
    return out


@pytest.mark.parametrize("mode", ["plain", "scaled"])
def test_fp8_files_equal_their_weights_upcast(
    tiny_zimage_dir, tmp_path, mode, plain_ids, small_options, baseline
):
    files = tiny_files.write_comfy_split_files(tiny_zimage_dir, tmp_path / "fp8", fp8=mode)
    assert files["transformer"].name == "z_image_turbo_fp8_e4m3fn.safetensors"
    layout = single_file.inspect_file(files["transformer"])
    assert layout.quantization == ("scaled-fp8" if mode == "scaled" else "fp8")
    fp8 = ZImageBackend.from_pretrained(
        tiny_zimage_dir,
        transformer=str(files["transformer"]),
        text_encoder=str(files["text_encoder"]),
    )
    upcast = ZImageBackend.from_pretrained(
        tiny_zimage_dir,
        transformer=str(dequantized_copy(files["transformer"], tmp_path / "dit.safetensors")),
        text_encoder=str(dequantized_copy(files["text_encoder"], tmp_path / "te.safetensors")),
    )
    image = render(fp8, plain_ids, small_options)
    assert np.array_equal(image, render(upcast, plain_ids, small_options))
    assert fp8.pipe.transformer.dtype == torch.float32
    assert np.abs(image - baseline).mean() < 8  # fp8 rounding moves pixels, not the picture


def test_gguf_transformer_is_within_the_quantization_error(
    tiny_zimage_dir, tmp_path, plain_ids, small_options, baseline
):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    path = tiny_files.write_gguf_transformer(tiny_zimage_dir, tmp_path / "z_image_turbo-Q8_0.gguf")
    assert single_file.inspect_file(path).describe() == (
        "z_image_turbo-Q8_0.gguf: transformer (DiT) (comfyui keys), gguf"
    )
    backend = ZImageBackend.from_pretrained(tiny_zimage_dir, transformer=str(path))
    assert isinstance(backend.pipe.transformer.layers[0].attention.to_q, GGUFLinear)
    diff = np.abs(render(backend, plain_ids, small_options) - baseline)
    # Measured on this tiny model: Q8_0 moves pixels by at most 2 levels, 0.2 on average.
    assert diff.max() <= 4 and diff.mean() < 0.5
    assert (
        backend.render(plain_ids, [7], small_options)[0]
        .record["components"]["transformer"]
        .endswith("(comfyui layout, gguf)")
    )


def test_an_unknown_layout_is_a_one_line_error_naming_what_was_found(tiny_zimage_dir, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({f"lora_unet_block_{i}.alpha": torch.ones(1) for i in range(3)}, str(path))
    with pytest.raises(UserError, match="not a Z-Image file") as err:
        ZImageBackend.from_pretrained(tiny_zimage_dir, transformer=str(path))
    line = err.value.one_line()
    assert "found lora_unet_block_0.* (1)" in line and "\n" not in line


def test_a_part_in_the_wrong_place_is_named(tiny_zimage_dir, split_files):
    with pytest.raises(
        UserError, match="qwen_3_4b.safetensors holds no VAE: it holds text encoder"
    ):
        ZImageBackend.from_pretrained(tiny_zimage_dir, vae=str(split_files["text_encoder"]))


def test_a_checkpoint_without_a_transformer_is_refused(tiny_zimage_dir, split_files):
    with pytest.raises(UserError, match="ae.safetensors holds no transformer"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, checkpoint=str(split_files["vae"]))


def test_packed_quantized_weights_are_refused(tiny_zimage_dir, split_files, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(split_files["transformer"]))
    state["layers.0.attention.qkv.weight"] = torch.zeros(96, 16, dtype=torch.uint8)
    save_file(state, str(tmp_path / "z_image_turbo_nvfp4.safetensors"))
    with pytest.raises(UserError, match="stores 1 weights as U8"):
        ZImageBackend.from_pretrained(
            tiny_zimage_dir, transformer=str(tmp_path / "z_image_turbo_nvfp4.safetensors")
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"checkpoint": "/no/such/aio.safetensors"}, "checkpoint: no file"),
        ({"text_encoder": "qwen_3_4b.ckpt"}, "pickle"),
        ({"vae": "ae.onnx"}, "only .safetensors and .gguf"),
    ],
)
def test_bad_file_specs_are_one_line_errors(
    tiny_zimage_dir, kwargs, message, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ae.onnx").write_bytes(b"onnx")
    with pytest.raises(UserError, match=message) as err:
        ZImageBackend.from_pretrained(tiny_zimage_dir, **kwargs)
    assert "\n" not in err.value.one_line()


def test_a_truncated_file_is_a_user_error(tiny_zimage_dir, tmp_path):
    path = tmp_path / "ae.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, vae=str(path))
