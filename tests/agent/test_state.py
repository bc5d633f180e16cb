"""The agent state: the lists that only grow (attempts, turns) through their reducer, stored as
deltas by the checkpointer, and the chat command typed in state."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from tests.agent.agent_fixtures import IDEA, sketch_runner
from zit_agent.agent import commands
from zit_agent.agent.state import (
    AgentState,
    ChatTurn,
    Splice,
    grow,
    grow_batch,
    replace_last,
)
from zit_agent.backends.tiny.sketch import SketchBackend


def turn(message: str) -> ChatTurn:
    return ChatTurn(message=message)


def test_grow_appends_a_list_and_a_splice_edits():
    a, b, c = turn("a"), turn("b"), turn("c")
    assert grow([a], [b, c]) == [a, b, c]
    assert grow([a, b], replace_last([a, b], c)) == [a, c]
    assert grow([], replace_last([], a)) == [a]  # the first turn of a list that was empty
    assert grow([a, b, c], Splice(start=2)) == [a, b]  # `/undo`: the last one goes
    # A checkpoint that could not revive the class hands the splice back as data.
    assert grow([a, b], Splice(start=1, items=[c]).model_dump()) == [a, c]
    # LangGraph replays stored writes in batches of any size: the result is the same.
    updates = [[a], [b], replace_last([a, b], c), Splice(start=1), [b]]
    one_by_one = []
    for update in updates:
        one_by_one = grow(one_by_one, update)
    assert grow_batch([], updates) == one_by_one == [a, b]
    assert grow_batch(grow_batch([], updates[:2]), updates[2:]) == one_by_one


def test_with_update_applies_the_reducer_as_the_graph_does():
    state = AgentState(idea=IDEA, turns=[turn("a")], seed=1)
    after = state.with_update({"turns": [turn("b")], "seed": 2})
    assert [t.message for t in after.turns] == ["a", "b"] and after.seed == 2
    assert state.with_update({"turns": Splice(start=0)}).turns == []


def test_the_command_in_state_is_typed_and_old_stored_commands_still_read():
    state = AgentState(idea=IDEA, command={"kind": "seed", "seed": 4, "raw": "/seed 4"})
    assert isinstance(state.command, commands.Seed) and state.command.seed == 4
    # Sessions saved before the lever registry stored the vary lever as its own kind.
    old = AgentState(idea=IDEA, command={"kind": "vary", "raw": "/vary"})
    assert old.command == commands.Escape(lever="vary", raw="/vary")
    with pytest.raises(ValidationError):
        AgentState(idea=IDEA, command={"kind": "seed", "seed": -1})


class RefusesLoras(SketchBackend):
    """The sketch renderer, except that a LoRA fails inside the render (a failed turn)."""

    def render(self, token_ids, seeds, options):
        if options.lora:
            raise ValueError(f"Target modules not found in the base model for {options.lora}")
        return super().render(token_ids, seeds, options)


def stored(db, saver, table: str, column: str, where: str = "") -> list:
    rows = db.execute(f"SELECT type, {column} FROM {table} {where}").fetchall()
    return [saver.serde.loads_typed((kind, value)) for kind, value in rows]


def test_a_chat_sessions_checkpoints_store_each_attempt_and_turn_once(
    qwen_tokenizer, tmp_path, zit_home
):
    """Seven turns (text, /vary, /pick, /unpick, /undo, a LoRA that fails) in the SQLite sessions
    database: each write holds the one attempt or turn a step added or changed, no checkpoint
    holds the lists, and the session read back in a new process has every attempt once, in
    order."""
    from safetensors.torch import save_file
    from torch import zeros

    from zit_agent.agent.session import open_checkpointer
    from zit_agent.errors import InternalError
    from zit_agent.options import run_options

    db_path, lora = tmp_path / "sessions.sqlite", tmp_path / "g.safetensors"
    save_file({"foo.lora_A.weight": zeros(2, 2)}, str(lora))
    options = run_options(count=2, size="64x64", seed=3, backend="sketch", ruts=True)
    messages = [IDEA, "wearing a red coat", "/vary", "/pick 2", "/unpick", "/undo"]
    with open_checkpointer(db_path) as saver:
        runner = sketch_runner(qwen_tokenizer, backend=RefusesLoras(qwen_tokenizer))
        session = runner.chat("grow", saver, out_dir=tmp_path)
        session.turn(messages[0], options)
        for message in messages[1:]:
            last = session.turn(message, run_options())
        with pytest.raises(InternalError, match="Target modules not found"):
            session.turn(f"/lora {lora}:1", run_options())

    with open_checkpointer(db_path) as saver:  # a new process, in effect
        state = sketch_runner(qwen_tokenizer).chat("grow", saver, out_dir=tmp_path).state()
        db = sqlite3.connect(db_path)
        try:
            attempt_writes = stored(db, saver, "writes", "value", "WHERE channel = 'attempts'")
            turn_writes = stored(db, saver, "writes", "value", "WHERE channel = 'turns'")
            checkpoints = stored(db, saver, "checkpoints", "checkpoint")
        finally:
            db.close()

    assert AgentState.model_validate_json(state.model_dump_json()) == state  # plain data
    assert state.attempts == last.attempts  # the failed turn added none
    assert [a.number for a in state.attempts] == list(range(1, len(state.attempts) + 1))
    assert len(state.attempts) >= 3  # a rut escaped on the first turn, then text and /vary
    messages = [IDEA, "wearing a red coat", "/vary", "/pick 2", f"/lora {lora}:1"]
    assert [t.message for t in state.turns] == messages
    assert "Target modules" in state.turns[-1].error and state.turns[-2].error is None
    assert state.knobs == last.knobs == state.turns[-2].knobs  # the /pick turn's settings
    assert state.knobs.init is not None and state.knobs.lora is None  # /undo took /unpick back

    def items(update) -> list:
        return update.items if isinstance(update, Splice) else update

    assert attempt_writes and turn_writes
    assert all(len(items(update)) <= 1 for update in [*attempt_writes, *turn_writes])
    assert sum(isinstance(update, Splice) for update in turn_writes) >= 5  # closes, pick, undo
    assert all("attempts" not in c["channel_values"] for c in checkpoints)
    assert all("turns" not in c["channel_values"] for c in checkpoints)
