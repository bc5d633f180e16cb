"""The composition levers (candidates, early, adapter) in the escape ladder and in chat."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests.agent.agent_fixtures import IDEA, ConstantBackend, initial_state, sketch_context
from tests.cli_helpers import run_zit as zit
from zit_agent.agent import levers
from zit_agent.agent.graph import run_agent
from zit_agent.agent.state import RenderKnobs
from zit_agent.backends.provenance import read_record
from zit_agent.sequence import empty_prompt_ids


def test_the_three_levers_are_registered_once_and_named_in_ladders():
    table = levers.registered()
    assert {"candidates", "early", "adapter"} <= set(table)
    assert {"candidates", "early"} <= set(levers.command_names())
    assert levers.parse_ladder("candidates,early,adapter,vary") == [
        "candidates", "early", "adapter", "vary",
    ]  # fmt: skip
    assert "candidates" not in levers.parse_ladder(None)  # the default ladder is unchanged


def test_the_ladder_takes_candidates_early_and_adapter_in_order(qwen_tokenizer, tmp_path):
    adapter = tmp_path / "diverse.safetensors"
    save_file({"w": torch.zeros(1)}, str(adapter))
    backend = ConstantBackend()  # every attempt is a rut
    context = sketch_context(qwen_tokenizer, tmp_path, backend=backend)
    knobs = RenderKnobs(width=64, height=64, adapter=[str(adapter), 0.7, None])
    knobs.adapter[2] = {"start": 0.0, "end": 0.25, "fraction": True}
    state = initial_state(
        ladder=["candidates", "early", "adapter"], max_attempts=4, n=2, knobs=knobs
    )
    final = run_agent(state, context)

    assert [lv.name for a in final.attempts[1:] for lv in a.levers] == [
        "candidates", "early", "adapter",
    ]  # fmt: skip
    calls = backend.calls
    # Attempt 2: 16 candidates rendered (this backend has no preview: in full), 2 kept.
    assert len(calls[1][1]) == 16 and len(final.attempts[1].images) == 2
    shot = final.attempts[1].shots[0]
    assert shot.candidates["previewed"] == 16 and shot.steps_spent == 16 * 8
    assert sum(c["kept"] for c in shot.candidates["candidates"]) == 2
    # Attempt 3: the empty prompt for the first two steps (candidates stay on).
    early = calls[-2][2]
    assert early.early_steps == 2 and early.early_ids == empty_prompt_ids(qwen_tokenizer)
    # Attempt 4: the adapter, gated to the first quarter.
    last = calls[-1][2]
    assert last.lora == str(adapter) and last.lora_strength == 0.7
    assert last.lora_gates[0].fraction and last.lora_gates[0].end == 0.25


def test_adapter_lever_without_an_adapter_is_skipped(qwen_tokenizer, tmp_path):
    context = sketch_context(qwen_tokenizer, tmp_path, backend=ConstantBackend())
    final = run_agent(initial_state(ladder=["adapter"], max_attempts=2, n=2), context)
    assert final.attempts[1].levers[0].detail.startswith("skipped: no diversity adapter")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer_dir):
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage"), tokenizer_dir)


def turn(capsys, session: str, message: str, *extra: str) -> dict:
    code, out, err = zit(
        capsys, "chat", "--session", session, "--message", message, "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def test_chat_commands_candidates_and_early_on_the_tiny_model(capsys, model_dir):
    tiny = ["--image-model", str(model_dir), "--size", "64x48", "--steps", "4", "-n", "2"]
    first = turn(capsys, "d", IDEA, *tiny, "--seed", "5", "--batch", "1")
    assert len(first["images"]) == 2
    picked = turn(capsys, "d", "/candidates")
    records = [read_record(p) for p in picked["images"]]
    assert len(records) == 2 and all(r["candidates"]["previewed"] == 16 for r in records)
    assert records[0]["candidates"]["steps"] == 16 * 2 + 2 * 2
    early = turn(capsys, "d", "/early")
    record = read_record(early["images"][0])
    assert record["early_steps"] == 2 and record["early_prompt"] == ""


def test_generate_takes_the_levers_by_name(capsys, model_dir):
    args = ["generate", IDEA, "--image-model", str(model_dir), "--size", "64x48", "--steps", "3"]
    args += ["-n", "2", "--ladder", "early,candidates", "--max-attempts", "1", "--json"]
    code, out, err = zit(capsys, *args, "--candidates", "3", "--early-prompt", "")
    assert code == 0, err
    result = json.loads(out)
    records = [read_record(p) for p in result["images"]]
    assert all(r["early_steps"] == 2 and r["candidates"]["previewed"] == 3 for r in records)
    shots = result["per_attempt"][0]["shots"]
    assert shots[0]["steps_spent"] == 3 * 2 + 2 * 1
