from __future__ import annotations

import json
import shutil

import pytest

from zit_agent.backends.tokenizer import QwenTokenizer
from zit_agent.errors import ModelNotFoundError, UserError


def test_loads_from_zimage_model_layout(tmp_path, tokenizer_dir):
    shutil.copytree(tokenizer_dir, tmp_path / "model" / "tokenizer")
    tok = QwenTokenizer.from_pretrained(tmp_path / "model")
    assert tok.encode_text("a cat") == [64, 8251]
    assert tok.vocab_size == 151669 and tok.base_vocab_size == 151643


def test_loads_repo_id_from_hub_cache(tmp_path, tokenizer_dir, monkeypatch):
    # Lay the files out exactly as huggingface_hub's cache does.
    cache = tmp_path / "hub"
    repo = cache / "models--Org--Qwenish"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tokenizer_dir, snap / "tokenizer")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    tok = QwenTokenizer.from_pretrained("Org/Qwenish")
    assert tok.encode_text("a cat") == [64, 8251]
    with pytest.raises(ModelNotFoundError) as err:
        QwenTokenizer.from_pretrained("Org/Missing")
    assert "hf download Org/Missing" in err.value.one_line()


def test_directory_without_tokenizer(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no tokenizer.json"):
        QwenTokenizer.from_pretrained(tmp_path)


@pytest.mark.slow  # trains a tokenizer
def test_non_qwen_tokenizer_refused(tmp_path, tokenizer_dir):
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|im_start|>"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="not a Qwen3 tokenizer"):
        QwenTokenizer.from_pretrained(tmp_path)


def test_fingerprint(qwen_tokenizer, tmp_path, tokenizer_dir):
    fp = qwen_tokenizer.fingerprint
    assert fp.specials["<|im_start|>"] == 151644 and fp.specials["</think>"] == 151668
    assert fp.mismatch(QwenTokenizer.from_pretrained(tokenizer_dir).fingerprint) is None
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    swapped = {tok: (i + 1) % len(vocab) if i < 151643 else i for tok, i in vocab.items()}
    data["model"]["vocab"] = swapped
    data["model"]["merges"] = []
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    other = QwenTokenizer.from_pretrained(tmp_path).fingerprint
    assert "token strings differ" in fp.mismatch(other)


def test_added_token_text_is_plain_and_loads_are_shared(qwen_tokenizer, tokenizer_dir):
    assert QwenTokenizer.from_pretrained(tokenizer_dir) is qwen_tokenizer
    for text in ("<think>", "a <tool_call> b", "x<|im_start|>y", "<|endoftext|>"):
        ids = qwen_tokenizer.encode_text(text)
        assert all(i < qwen_tokenizer.base_vocab_size for i in ids)
        assert qwen_tokenizer.decode(ids) == text
