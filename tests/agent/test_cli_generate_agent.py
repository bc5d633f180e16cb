"""`zit generate` on the agent path: a tiny GGUF writer and a tiny Z-Image folder end to end (real
llama.cpp and diffusers code paths, the writer's ids passed through), and the sketch renderer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent.agent_fixtures import IDEA, tiny_gguf, tiny_zimage
from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record, token_sha256

KEYS = ("images", "attempts", "ruts_detected", "ruts_escaped", "final_verdict", "per_attempt")


def generate_json(capsys, *args: str) -> dict:
    code, out, err = zit(capsys, "generate", IDEA, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    return tiny_gguf(tmp_path_factory)


@pytest.fixture(scope="module")
def zimage_dir(tmp_path_factory) -> Path:
    return tiny_zimage(tmp_path_factory)


@pytest.fixture()
def one_torch_thread():
    """Tiny models render faster on one thread (OpenMP spin-waits on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # builds two tiny models
def test_tiny_gguf_writer_and_tiny_zimage_end_to_end(
    capsys, gguf, zimage_dir, tmp_path, one_torch_thread
):
    result = generate_json(
        capsys, "--writer", f"gguf:{gguf}", "--image-model", str(zimage_dir), "-n", "2",
        "--seed", "3", "--size", "64x64", "--steps", "2", "--max-attempts", "2",
        "--max-new-tokens", "24", "--out", str(tmp_path),
    )  # fmt: skip
    assert all(key in result for key in KEYS)
    assert 1 <= result["attempts"] <= 2 and result["final_verdict"] in ("ok", "warn", "rut")

    first = result["per_attempt"][0]
    shot = first["shots"][0]
    assert shot["writer"] == gguf.name and first["render"]["width"] == 64
    # The writer's generated ids, verbatim, inside the ids the Z-Image backend rendered.
    from zit_agent import prompts
    from zit_agent.agent.drafting import write_draft
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers import load_writer
    from zit_agent.backends.writers.messages import build_messages

    messages = build_messages(prompts.load("expand").text, IDEA)
    draft, _ = write_draft(load_writer(f"gguf:{gguf}"), messages, Sampling(max_new_tokens=24), 3)
    answer = draft.answer.ids
    ids = shot["token_ids"]
    assert any(ids[i : i + len(answer)] == answer for i in range(len(ids)))
    for path in shot["images"]:
        record = read_record(path)
        assert record["token_sha256"] == token_sha256(ids)  # what the encoder read
        assert record["model"] == str(zimage_dir) and record["writer"]["model"] == gguf.name
        assert record["writer"]["sampling"]["max_new_tokens"] == 24


def test_sketch_backend_escapes_the_rut(capsys, tmp_path):
    result = generate_json(
        capsys, "--backend", "sketch", "-n", "3", "--seed", "0", "--size", "128x128",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result["ruts_detected"] == 1 and result["ruts_escaped"] == 1
    assert result["final_verdict"] == "ok" and result["attempts"] >= 2
    assert result["images"] == result["per_attempt"][-1]["images"]
    levers = [lv["name"] for a in result["per_attempt"] for lv in a["levers"]]
    assert levers[0] == "vary"


def test_no_ruts_with_the_sketch_backend_renders_once(capsys, tmp_path):
    result = generate_json(
        capsys, "--backend", "sketch", "--no-ruts", "-n", "2", "--size", "128x128",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result["attempts"] == 1 and result["final_verdict"] is None
    assert len(result["images"]) == 2


def test_readable_output_has_a_table_of_attempts(capsys, tmp_path):
    code, out, err = zit(
        capsys, "generate", IDEA, "--backend", "sketch", "-n", "2", "--size", "128x128",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert "attempt(s)" in err and "vary" in err and "judge" in err
    assert all(Path(p).is_file() for p in out.split())


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--backend", "paint"], "unknown backend 'paint'"),
        (["--backend", "sketch", "--ladder", "vary,pray"], "unknown pray"),
        (["--backend", "sketch", "--shape", "poem"], "unknown shape 'poem'"),
        (["--writer", "gguf:/nowhere/model.gguf", "--backend", "sketch"], "/nowhere/model.gguf"),
    ],
)
def test_bad_options_give_one_line(capsys, args, error):
    code, out, err = zit(capsys, "generate", IDEA, *args)
    assert code == 2 and error in err
    assert err.strip().splitlines()[-1].startswith("zit: error:") and "Traceback" not in err
