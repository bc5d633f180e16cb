"""Fixtures of the eval tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.evals.helpers import zit


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The shipped smoke suite, run once through `zit eval` for the whole session."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    env = {"ZIT_HOME": str(out.parent / "home"), "ZIT_CONFIG": os.devnull}
    result = zit("eval", "smoke", "--out", str(out), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP (text and vision towers) with a character-level CLIP tokenizer, saved as
    a transformers folder: the CLIP fidelity path runs for real, without downloaded weights."""
    import json
    import string

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    path = tmp_path_factory.mktemp("tiny-clip")
    chars = string.ascii_lowercase + string.digits + "\"',.-"
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=32
    )
    torch.manual_seed(0)
    layers = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(
        text_config={**layers, "vocab_size": len(tokens), "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1, "max_position_embeddings": 32},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(path)
    images = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny random Qwen3 GGUF with the real vocabulary (shared with the writer tests' folder)."""
    from zit_agent.backends.tiny.qwen3 import GGUF_NAME, tiny_writer_dir

    return (
        tiny_writer_dir(tmp_path_factory.getbasetemp() / "tiny-writers", tokenizer_dir) / GGUF_NAME
    )


@pytest.fixture(scope="session")
def tiny_zimage_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny random Z-Image pipeline (real diffusers architectures) saved as a model folder."""
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir, seed=0)
