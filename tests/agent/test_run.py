"""The run API is the one way in: every entry point records the same render settings for the
same request, a request is checked before models load, errors keep their kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_zit as zit
from tests.evals.helpers import sketch_suite

IDEA = "a red fox in the snow"
REQUEST = ["--noise", "0.5", "--shift", "2.5", "--layer", "-3", "--sampler", "euler_a",
           "--scheduler", "beta"]  # fmt: skip
SKETCH = ["--backend", "sketch", "--size", "64x64", "-n", "2", "--seed", "0"]
RECORDED = ("noise", "shift", "sampler", "scheduler", "layer", "width", "height", "steps",
            "guidance")  # fmt: skip


def recorded(image: str) -> dict:
    record = json.loads(Path(image).with_suffix(".json").read_text(encoding="utf-8"))
    return {k: record["render"][k] for k in RECORDED}


def test_generate_chat_and_the_eval_agent_record_the_same_render_options(capsys, tmp_path):
    code, out, err = zit(capsys, "generate", IDEA, *SKETCH, *REQUEST, "--no-ruts", "--json")
    assert code == 0, err
    from_generate = recorded(json.loads(out)["images"][0])

    code, out, err = zit(capsys, "chat", "--session", "same", "--message", IDEA, *SKETCH, *REQUEST,
                         "--json")  # fmt: skip
    assert code == 0, err
    from_chat = recorded(json.loads(out)["images"][0])

    from zit_agent.evals.runner import run_suite
    from zit_agent.evals.suite import Suite

    config = {"strategy": "agent", "noise": {"strength": 0.5}, "layer": -3, "shift": 2.5,
              "sampler": "euler_a", "scheduler": "beta", "max_attempts": 1}  # fmt: skip
    suite = Suite.model_validate(
        sketch_suite(
            ideas=[{"id": "fox", "text": IDEA}], configs={"agent": config}, baseline="agent"
        )  # fmt: skip
    )
    run = run_suite(suite, tmp_path / "eval", quiet=True)
    image = next((run.out_dir / "images").glob("*-s0.png"))  # the agent's own, moved there
    from_eval = recorded(str(image))

    assert from_generate["noise"] == {"strength": 0.5, "fraction": 0.5, "steps_share": 0.2,
                                      "seed": 0}  # fmt: skip
    assert from_generate == from_chat
    assert (from_generate["shift"], from_generate["sampler"]) == (2.5, "euler_ancestral")
    assert from_generate["scheduler"] == "beta"
    assert from_eval == from_generate


def test_a_request_is_checked_before_any_model_loads(capsys, tmp_path):
    missing = tmp_path / "no-model"
    code, _, err = zit(capsys, "generate", IDEA, "--image-model", str(missing), "--size", "13x13")
    assert code == 2 and "width 13 is out of range" in err  # not "no model": nothing loaded


@pytest.mark.parametrize(
    ("error", "code", "kind"),
    [
        ("oom", 3, "out of memory"),
        ("disk", 3, "no space left"),
        ("bug", 70, "internal error: ZeroDivisionError"),
    ],
)
def test_each_failure_kind_has_its_exit_code_and_one_line(capsys, monkeypatch, error, code, kind):
    import errno

    from zit_agent.backends.tiny.sketch import SketchBackend

    class OutOfMemoryError(RuntimeError):  # torch.cuda's is named so
        pass

    raised = {
        "oom": OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        "disk": OSError(errno.ENOSPC, "No space left on device", "/out/x.png"),
        "bug": ZeroDivisionError("division by zero"),
    }[error]

    def render(self, token_ids, seeds, options):
        raise raised

    monkeypatch.setattr(SketchBackend, "render", render)
    got, out, err = zit(capsys, "generate", IDEA, *SKETCH, "--no-ruts")
    last = err.strip().splitlines()[-1]  # after the agent's progress lines
    assert got == code and last.startswith("zit: error: ") and kind in last and out == ""
    assert err.count("zit: error") == 1 and "Traceback" not in err


def test_chat_reports_out_of_memory_as_what_it_is(capsys, monkeypatch):
    from zit_agent.backends.tiny.sketch import SketchBackend

    zit(capsys, "chat", "--session", "oom", "--message", IDEA, *SKETCH)
    monkeypatch.setattr(SketchBackend, "render", lambda *a: (_ for _ in ()).throw(MemoryError()))
    code, _, err = zit(capsys, "chat", "--session", "oom", "--message", "/seed 9")
    assert code == 3 and "out of memory" in err and "bad setting" not in err


def test_library_errors_name_options_and_the_cli_names_flags():
    from zit_agent.errors import UserError

    err = UserError("too long", hint="raise {max_tokens}")
    assert err.one_line() == "too long (raise max_tokens)"
    assert err.one_line(lambda n: "--" + n.replace("_", "-")) == "too long (raise --max-tokens)"


def test_backends_are_registered_and_the_sketch_stand_in_is_one_of_them():
    from zit_agent.backends.registry import factory, registered

    assert {"zimage", "sketch"} <= set(registered("image backend"))
    assert {"gguf", "hf"} <= set(registered("writer"))
    assert {"hash", "hf", "dreamsim"} <= set(registered("embedder"))
    assert factory("image backend", "sketch").__module__ == "zit_agent.backends.tiny.sketch"


def test_a_backend_takes_only_the_loader_options_it_declares(capsys, tmp_path):
    """Z-Image declares its loader options (dtype, offload...); the sketch stand-in declares
    none, so a dtype given with it is one line naming the option, not ignored."""
    from zit_agent.backends.registry import loader_options

    assert {"dtype", "cpu_offload", "attention", "vae_tiling"} <= set(loader_options("zimage"))
    assert loader_options("sketch") == ()
    code, out, err = zit(
        capsys, "generate", IDEA, *SKETCH, "--dtype", "fp16", "--out", str(tmp_path)
    )
    assert (code, out) == (2, "")
    assert err == "zit: error: the sketch backend takes no dtype option (leave out --dtype)\n"


def test_a_config_file_that_is_not_there_is_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ZIT_CONFIG", str(tmp_path / "nope.toml"))
    code, _, err = zit(capsys, "generate", IDEA, *SKETCH)
    assert code == 2 and "ZIT_CONFIG names" in err and "nope.toml" in err


def test_a_token_budget_of_zero_is_refused_not_replaced(capsys, tokenizer_dir):
    code, _, err = zit(
        capsys, "tokens", IDEA, "--tokenizer", str(tokenizer_dir), "--max-tokens", "0"
    )
    assert code == 2 and "a token budget of 0 is too small" in err


def test_an_output_folder_that_is_a_file_is_refused_before_rendering(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    code, _, err = zit(capsys, "generate", IDEA, *SKETCH, "--no-ruts", "--out", str(target))
    assert code == 2 and "is a file" in err and "render" not in err
    assert target.read_text() == "mine"


@pytest.mark.parametrize(
    "args",
    [
        ["tokens", "a", "b"],
        ["generate"],
        ["generate", IDEA, "--frobnicate"],
        ["generate", IDEA, "-n"],
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, args):
    code, _, err = zit(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("zit: error:")
    assert "internal" not in err and "╭" not in err  # no usage box


def test_ctrl_c_says_so_and_exits_130(capsys, monkeypatch):
    from zit_agent.backends.tiny.sketch import SketchBackend

    def render(self, token_ids, seeds, options):
        raise KeyboardInterrupt

    monkeypatch.setattr(SketchBackend, "render", render)
    code, _, err = zit(capsys, "generate", IDEA, *SKETCH, "--no-ruts")
    assert code == 130 and "zit: interrupted" in err


def test_text_that_is_not_utf8_is_one_line_everywhere(capsys, tokenizer_dir):
    bad = b"a \xff fox".decode("utf-8", "surrogateescape")  # as Python decodes such an argument
    for args in (["tokens", bad, "--tokenizer", str(tokenizer_dir)], ["generate", bad, *SKETCH]):
        code, _, err = zit(capsys, *args)
        assert code == 2 and "not valid UTF-8 (byte ff at character" in err, err


def test_a_writing_runner_writes_and_refuses_to_render(qwen_tokenizer):
    """`zit expand`'s runner: the writer and the encoder's tokenizer, no image model; writing
    gives the exact ids, rendering them is one line saying why not."""
    from zit_agent.agent.run import Runner
    from zit_agent.backends.base import NoImageBackend, RenderOptions
    from zit_agent.backends.writers.fake import FakeWriter
    from zit_agent.errors import UserError

    runner = Runner.from_parts(qwen_tokenizer, NoImageBackend(), writer=FakeWriter(qwen_tokenizer))
    written = runner.write(IDEA, shape="think", seed=0, max_tokens=512)
    assert written.assembled.ids and written.assembled.count == len(written.assembled.ids)
    with pytest.raises(UserError, match="loaded no image model"):
        runner.render(written.assembled.ids, [0], RenderOptions(width=64, height=64))
