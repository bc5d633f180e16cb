"""Image embedders: the weight-free hash embedder, and `hf:` on tiny random vision models saved to
a directory and loaded through the normal loader."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image, ImageDraw

from zit_agent.backends.base import Embedder
from zit_agent.backends.embedders import (
    HashEmbedder,
    HFVisionEmbedder,
    default_embedder_name,
    load_default_embedder,
    load_embedder,
)
from zit_agent.errors import ModelNotFoundError, UserError
from zit_agent.settings import load_settings


def scene(x: float, y: float, r: float, shade: int = 40, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (180, 190, 200))
    ImageDraw.Draw(image).ellipse(
        [size * (x - r), size * (y - r), size * (x + r), size * (y + r)], fill=(shade,) * 3
    )
    return image


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory):
    import torch
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-dinov2")
    config = Dinov2Config(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    Dinov2Model(config).save_pretrained(path)
    processor = BitImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": 99, "num_attention_heads": 2, "bos_token_id": 0,
                     "eos_token_id": 1, "max_position_embeddings": 16},
        vision_config={**layers, "image_size": 32, "patch_size": 8, "num_attention_heads": 2},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return path


# -- hash ----------------------------------------------------------------------------------------
def test_hash_vectors_are_unit_rows():
    embedder = HashEmbedder()
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed([scene(0.5, 0.5, 0.2), scene(0.2, 0.3, 0.1)])
    assert vectors.shape == (2, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_hash_separates_same_layout_from_different_layout():
    embedder = HashEmbedder()
    base, shifted, recoloured, moved = embedder.embed(
        [
            scene(0.5, 0.5, 0.25),
            scene(0.52, 0.49, 0.25),
            scene(0.5, 0.5, 0.25, shade=90),
            scene(0.2, 0.75, 0.12),
        ]
    )
    assert float(base @ shifted) > 0.85
    assert float(base @ recoloured) > 0.85
    assert float(base @ moved) < 0.4


def test_hash_ignores_image_size_and_handles_flat_images():
    embedder = HashEmbedder()
    small, large = embedder.embed(
        [scene(0.5, 0.5, 0.25, size=128), scene(0.5, 0.5, 0.25, size=1024)]
    )
    assert float(small @ large) > 0.9
    flat = embedder.embed([Image.new("RGB", (64, 64), (10, 20, 30))])
    assert np.isfinite(flat).all() and np.linalg.norm(flat) == pytest.approx(1.0, rel=1e-5)


def test_hash_with_other_parameters_has_another_name():
    assert HashEmbedder().name == "hash"
    assert HashEmbedder(hash_weight=0.5).name != "hash"


# -- hf: -----------------------------------------------------------------------------------------
def test_hf_dinov2_embeds_to_unit_rows(tiny_dinov2_dir):
    embedder = load_embedder(f"hf:{tiny_dinov2_dir}")
    assert isinstance(embedder, HFVisionEmbedder) and embedder.family == "dinov2"
    assert embedder.name == f"hf:{tiny_dinov2_dir}"
    images = [scene(0.5, 0.5, 0.2), scene(0.2, 0.3, 0.1, size=50), scene(0.7, 0.6, 0.3)]
    vectors = embedder.embed(images)
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # The same image gives the same vector alone or in a batch; different images differ.
    np.testing.assert_allclose(embedder.embed(images[1:2])[0], vectors[1], atol=1e-5)
    assert float(vectors[0] @ vectors[2]) < 0.9999


def test_hf_clip_uses_projected_image_features(tiny_clip_dir):
    embedder = load_embedder(f"hf:{tiny_clip_dir}")
    assert embedder.family == "clip"
    vectors = embedder.embed([scene(0.5, 0.5, 0.2), scene(0.3, 0.3, 0.1)])
    assert vectors.shape == (2, 16)  # projection_dim, not the vision hidden size
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hf_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no directory"):
        load_embedder(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_embedder("hf:facebook/dinov2-small")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_embedder(f"hf:{tmp_path}")


# -- names and defaults --------------------------------------------------------------------------
def test_unknown_embedder_is_a_user_error():
    with pytest.raises(UserError, match="unknown embedder"):
        load_embedder("clip")
    with pytest.raises(UserError, match="hf embedder needs a model"):
        load_embedder("hf:")


@pytest.mark.skipif(importlib.util.find_spec("dreamsim") is not None, reason="dreamsim installed")
def test_dreamsim_without_the_package_says_how_to_install_it():
    with pytest.raises(UserError, match="dreamsim package") as err:
        load_embedder("dreamsim")
    assert "pip install dreamsim" in err.value.one_line()


def test_default_is_the_configured_embedder_else_hash(monkeypatch, tiny_dinov2_dir):
    assert default_embedder_name(load_settings()) == "hash"
    monkeypatch.setenv("ZIT_EMBEDDER", f"hf:{tiny_dinov2_dir}")
    embedder, notes = load_default_embedder(load_settings())
    assert embedder.family == "dinov2" and notes == []
    monkeypatch.setenv("ZIT_EMBEDDER", "hf:/no/such/model")
    embedder, notes = load_default_embedder(load_settings())
    assert embedder.name == "hash" and "unavailable" in notes[0]
