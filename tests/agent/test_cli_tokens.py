"""`zit tokens` and the CLI's start-up, through real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zit_agent.agent.cli import main


def run_zit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zit_agent.agent", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from zit_agent.agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'llama_cpp', 'langgraph') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "tokens" in out.stdout


def test_tokens_json_a_cat(tokenizer_dir):
    out = run_zit("tokens", "a cat", "--tokenizer", str(tokenizer_dir), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["token_ids"] == [151644, 872, 198, 64, 8251, 151645, 198, 151644, 77091, 198]
    assert data["count"] == 10 and data["cut"] is None
    assert data["text"] == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"


def test_tokens_cut_reported(tokenizer_dir, capsys):
    main_args = [
        "tokens",
        "word " * 100,
        "--tokenizer",
        str(tokenizer_dir),
        "--max-tokens",
        "32",
        "--json",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(main_args)
    assert exit_info.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 32 and data["cut"][0]["part"] == "user"


def test_tokens_readable_view(tokenizer_dir, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "tokens",
                "a cat",
                "--think",
                "plan",
                "--assistant",
                "A cat.",
                "--tokenizer",
                str(tokenizer_dir),
            ]
        )
    out = capsys.readouterr().out
    assert "think sequence" in out and "assistant" in out and "151667" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["   "], "idea is empty"),
        (["a cat", "--tokenizer", "/no/such/dir"], "no directory"),
        (["a cat", "--close"], "--close needs"),
        (["a cat", "--max-tokens", "4"], "too small"),
        (["a cat", "--max-tokens", "4096"], "past the ceiling of 1504 tokens"),
        (["a cat", "--tokenizer", "Nobody/NotCached"], "not in the local Hugging Face cache"),
    ],
)
def test_tokens_user_errors_exit_2_one_line(tokenizer_dir, capsys, args, message):
    if "--tokenizer" not in args:
        args = [*args, "--tokenizer", str(tokenizer_dir)]
    with pytest.raises(SystemExit) as exit_info:
        main(["tokens", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tokens_error_in_subprocess_has_no_traceback():
    out = run_zit("tokens", "a cat", "--tokenizer", "/no/such/dir")
    assert out.returncode == 2
    assert out.stderr.startswith("zit: error:") and "Traceback" not in out.stderr


@pytest.mark.parametrize("idea", ["  a dog on a beach  ", "a cat on a windowsill\n", "\n\na cat"])
def test_tokens_equal_diffusers_template_ids_for_surrounding_whitespace(
    tokenizer_dir, hf_tokenizer, capsys, idea
):
    from tests.cli_helpers import run_zit as run_in_process

    code, out, err = run_in_process(
        capsys, "tokens", idea, "--tokenizer", str(tokenizer_dir), "--json"
    )
    assert code == 0, err
    text = hf_tokenizer.apply_chat_template(
        [{"role": "user", "content": idea}], tokenize=False, add_generation_prompt=True
    )
    assert json.loads(out)["token_ids"] == hf_tokenizer(text).input_ids


def test_tokens_budget_goes_up_to_the_ceiling_with_a_warning(tokenizer_dir):
    out = run_zit(
        "tokens", "a lighthouse " * 400, "--tokenizer", str(tokenizer_dir),
        "--max-tokens", "1504", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert 512 < data["count"] <= 1504 and data["budget"] == 1504 and data["cut"] is None
    assert "past the 512 tokens Z-Image was trained with" in out.stderr
