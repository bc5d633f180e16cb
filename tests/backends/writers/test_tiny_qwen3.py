"""The tiny Qwen3 builders: the GGUF and the transformers folder hold the same model."""

from __future__ import annotations

import json

import numpy as np


def test_gguf_and_transformers_compute_the_same_logits(tiny_writers, hf_writer):
    import llama_cpp
    import torch

    ids = [151644, 872, 198, 64, 8251, 11, 1207, 151645, 198, 151644, 77091, 198]
    llama = llama_cpp.Llama(
        str(tiny_writers / "tiny-qwen3.gguf"), n_ctx=64, logits_all=True, verbose=False
    )
    llama.eval(ids)
    theirs = np.array(llama.scores[len(ids) - 1])
    with torch.inference_mode():
        ours = hf_writer.model(torch.tensor([ids])).logits[0, -1].numpy()
    assert theirs.shape == ours.shape == (151936,)
    assert np.abs(theirs - ours).max() < 2e-3
    assert theirs.argmax() == ours.argmax()


def test_hf_folder_is_a_qwen3_with_the_real_vocabulary(tiny_writers):
    config = json.loads((tiny_writers / "tiny-qwen3-hf" / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["vocab_size"] == 151936
    assert config["tie_word_embeddings"] is True
    assert "chat_template" in (tiny_writers / "tiny-qwen3-hf" / "tokenizer_config.json").read_text()


def test_tiny_writer_dir_reuses_what_is_built(tiny_writers, tokenizer_dir):
    from zit_agent.backends.tiny.qwen3 import tiny_writer_dir

    gguf = tiny_writers / "tiny-qwen3.gguf"
    before = gguf.stat().st_mtime_ns
    assert tiny_writer_dir(tiny_writers, tokenizer_dir) == tiny_writers
    assert gguf.stat().st_mtime_ns == before
