"""LlamaCppWriter on a tiny random Qwen3 GGUF: the real llama.cpp code path."""

from __future__ import annotations

import pytest

from zit_agent.backends.base import Sampling, Writer
from zit_agent.backends.writers import load_writer
from zit_agent.backends.writers.messages import build_messages
from zit_agent.errors import ModelNotFoundError, UserError

MESSAGES = build_messages("Describe the image.", "a red fox <|im_start|> in snow")


def test_is_a_writer_with_the_encoders_vocabulary(llama_writer, qwen_tokenizer):
    assert isinstance(llama_writer, Writer)
    assert llama_writer.fingerprint == qwen_tokenizer.fingerprint
    assert llama_writer.special.base_vocab_size == qwen_tokenizer.base_vocab_size


def test_prompt_ids_equal_transformers_chat_template(llama_writer, hf_tokenizer):
    messages = build_messages("Describe the image.", "a red fox in snow")
    ids = llama_writer.prompt_ids(llama_writer.prompt(messages))
    text = hf_tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True
    )
    assert ids == hf_tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize(
    "text",
    [
        "a red fox <|im_start|> in snow",
        "a cat<|im_end|><think>",
        "fox <think> x</think>.",
        "<tool_call>{}</tool_call>\n<think>\n\n",
        "日本<think>語",
    ],
)
def test_user_text_is_tokenized_like_the_encoder_never_as_control_ids(
    llama_writer, qwen_tokenizer, text
):
    assert llama_writer.tokenize_plain(text) == qwen_tokenizer.encode_text(text)


def test_same_seed_same_ids_other_seed_other_ids(llama_writer):
    sampling = Sampling(max_new_tokens=12)
    first = llama_writer.write(MESSAGES, sampling, seed=7)
    again = llama_writer.write(MESSAGES, sampling, seed=7)
    other = llama_writer.write(MESSAGES, sampling, seed=8)
    assert first.generated_ids == again.generated_ids != other.generated_ids
    assert first.stats.new_tokens == 12 and first.stats.finish_reason == "length"
    assert first.stats.prompt_tokens > 10 and first.stats.tokens_per_s > 0
    assert first.model == "tiny-qwen3.gguf"


def test_stops_at_the_end_of_turn_id(llama_writer, prompt_before_end_of_turn):
    ids, finish = llama_writer.generate(
        prompt_before_end_of_turn, Sampling(temperature=0.0, max_new_tokens=5), 0
    )
    assert (ids, finish) == ([151645], "stop")


def test_empty_description_is_reported(llama_writer):
    from zit_agent.backends.writers.parse import DraftProblem

    # Greedy, the tiny model writes only newlines after the assistant header.
    with pytest.raises(DraftProblem, match="empty description"):
        llama_writer.write(MESSAGES, Sampling(temperature=0.0, max_new_tokens=6), 0)


def test_request_larger_than_the_context_is_a_user_error(llama_writer):
    with pytest.raises(UserError, match="context"):
        llama_writer.write(MESSAGES, Sampling(max_new_tokens=5000), 0)


def test_missing_gguf_names_the_path_and_the_download(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        load_writer(f"gguf:{tmp_path / 'qwen.gguf'}")
    assert str(tmp_path / "qwen.gguf") in str(info.value) and "hf download" in info.value.hint


def test_uncached_hub_gguf_names_the_download():
    with pytest.raises(ModelNotFoundError, match="not on this machine") as info:
        load_writer("gguf:Nobody/Nothing-GGUF/model.gguf")
    assert "hf download Nobody/Nothing-GGUF model.gguf" in info.value.hint


@pytest.mark.parametrize("spec", ["ollama:qwen3", "gguf:", "just-a-name"])
def test_bad_specs_are_user_errors(spec):
    with pytest.raises(UserError, match="writer"):
        load_writer(spec)


def test_a_file_that_is_not_a_gguf_is_a_user_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(UserError, match="cannot load writer GGUF"):
        load_writer(str(bad))  # a bare *.gguf path is a gguf spec


@pytest.mark.parametrize(("cores", "generation", "batch"),
                         [(1, 1, 1), (2, 1, 1), (4, 3, 3), (16, 8, 15), (64, 8, 63)])  # fmt: skip
def test_default_threads_leave_a_core_and_cap_generation(monkeypatch, cores, generation, batch):
    from zit_agent.backends.writers import llama

    monkeypatch.setattr(llama, "physical_cores", lambda: cores)
    assert llama.default_threads() == llama.Threads(generation=generation, batch=batch)


def test_the_writer_runs_on_the_threads_asked_for(monkeypatch, tiny_writers):
    from zit_agent.backends.writers import llama

    gguf = f"gguf:{tiny_writers / 'tiny-qwen3.gguf'}"
    monkeypatch.setattr(llama, "physical_cores", lambda: 4)
    default = load_writer(gguf, n_ctx=256)
    assert (default.llama.n_threads, default.llama.n_threads_batch) == (3, 3)
    given = load_writer(gguf, n_ctx=256, threads=2)
    assert (given.llama.n_threads, given.llama.n_threads_batch) == (2, 2)
    sampling = Sampling(max_new_tokens=6)
    assert (
        default.write(MESSAGES, sampling, 3).generated_ids
        == given.write(MESSAGES, sampling, 3).generated_ids
    )  # threads change the speed, not the ids
    with pytest.raises(UserError, match="thread count 0"):
        load_writer(gguf, threads=0)
