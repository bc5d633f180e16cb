"""Component overrides: another text encoder, another VAE, a single-file transformer."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file

from zit_agent.backends.zimage import ZImageBackend
from zit_agent.errors import UserError


def render(backend, ids, options):
    return np.asarray(backend.render(ids, [7], options)[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def baseline(backend, plain_ids, small_options):
    return render(backend, plain_ids, small_options)


def test_another_encoder_of_the_same_shape_is_used(
    tiny_zimage_dir, tmp_path, plain_ids, small_options, baseline
):
    from zit_agent.backends.tiny.zimage import tiny_text_encoder

    tiny_text_encoder(seed=11).save_pretrained(tmp_path / "encoder")
    other = ZImageBackend.from_pretrained(tiny_zimage_dir, text_encoder=str(tmp_path / "encoder"))
    assert not np.array_equal(render(other, plain_ids, small_options), baseline)


def test_encoder_of_another_hidden_size_is_refused(tiny_zimage_dir, tmp_path):
    from zit_agent.backends.tiny.zimage import tiny_text_encoder

    tiny_text_encoder(seed=0, hidden_size=64, head_dim=16).save_pretrained(tmp_path / "wide")
    with pytest.raises(UserError, match="hidden size is 64, the transformer needs 32"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, text_encoder=str(tmp_path / "wide"))


def test_encoder_with_a_smaller_vocabulary_is_refused(tiny_zimage_dir, tmp_path):
    from zit_agent.backends.tiny.zimage import tiny_text_encoder

    tiny_text_encoder(seed=0, vocab_size=1000).save_pretrained(tmp_path / "small")
    with pytest.raises(
        UserError, match="1000 vocabulary rows, the model's vocabulary needs 151936"
    ):
        ZImageBackend.from_pretrained(tiny_zimage_dir, text_encoder=str(tmp_path / "small"))


def test_another_vae_folder_is_used(tiny_zimage_dir, tmp_path, plain_ids, small_options, baseline):
    from zit_agent.backends.tiny.zimage import tiny_vae

    tiny_vae(seed=21).save_pretrained(tmp_path / "vae")
    other = ZImageBackend.from_pretrained(tiny_zimage_dir, vae=str(tmp_path / "vae"))
    assert not np.array_equal(render(other, plain_ids, small_options), baseline)


def test_single_file_transformer_in_comfyui_layout_loads_the_same_weights(
    tiny_zimage_dir, tmp_path, plain_ids, small_options, baseline
):
    from diffusers import ZImageTransformer2DModel

    from zit_agent.backends.tiny.single_files import comfy_transformer_state

    model = ZImageTransformer2DModel.from_pretrained(tiny_zimage_dir / "transformer")
    state = comfy_transformer_state(model.state_dict())
    path = tmp_path / "z_image_turbo.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in state.items()}, str(path))
    other = ZImageBackend.from_pretrained(tiny_zimage_dir, transformer=str(path))
    assert np.array_equal(render(other, plain_ids, small_options), baseline)


def test_pickle_component_file_is_refused(tiny_zimage_dir, tmp_path):
    with pytest.raises(UserError, match="pickle"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, vae=str(tmp_path / "vae.ckpt"))


def test_unknown_dtype_is_a_user_error(tiny_zimage_dir):
    with pytest.raises(UserError, match="unknown dtype"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, dtype="fp8")


def test_unknown_attention_backend_is_a_user_error(tiny_zimage_dir):
    with pytest.raises(UserError, match="unknown attention backend 'bogus'"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, attention="bogus")
