"""Tiny random Z-Image models, built once per test session and loaded through the normal loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

IDEA = "a red fox in the snow"
SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="session")
def tiny_zimage_dir(tmp_path_factory, tokenizer_dir) -> Path:
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir, seed=0)


@pytest.fixture(scope="session")
def backend(tiny_zimage_dir):
    from zit_agent.backends.zimage import ZImageBackend

    return ZImageBackend.from_pretrained(tiny_zimage_dir)


@pytest.fixture(scope="session")
def raw_pipe(tiny_zimage_dir):
    """The same saved model loaded by diffusers directly: the reference."""
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline.from_pretrained(tiny_zimage_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def plain_ids(qwen_tokenizer) -> list[int]:
    from zit_agent.sequence import ChatSequence, assemble

    return assemble(ChatSequence.plain(IDEA), qwen_tokenizer).ids


@pytest.fixture(scope="session")
def small_options():
    from zit_agent.backends.base import RenderOptions

    return RenderOptions(**SMALL)


@pytest.fixture(scope="session")
def lora_file(tmp_path_factory, tiny_zimage_dir) -> Path:
    """A random LoRA (non-zero up weights) on the tiny transformer's attention, in diffusers'
    safetensors LoRA layout."""
    import torch
    from diffusers import ZImagePipeline, ZImageTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = ZImageTransformer2DModel.from_pretrained(tiny_zimage_dir / "transformer")
    torch.manual_seed(3)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False
    )
    transformer.add_adapter(config)
    folder = tmp_path_factory.mktemp("lora")
    ZImagePipeline.save_lora_weights(
        folder, transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return folder / "pytorch_lora_weights.safetensors"
