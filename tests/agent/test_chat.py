"""`zit chat`: sessions are LangGraph threads in SQLite that survive process restarts; `/undo`,
an interrupted run resuming, and bad input that leaves the session as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.agent_fixtures import IDEA
from tests.cli_helpers import run_zit as zit

SKETCH = ["--backend", "sketch", "--size", "128x128", "-n", "2", "--seed", "5"]


def turn(capsys, session: str, message: str, *extra: str) -> dict:
    code, out, err = zit(
        capsys, "chat", "--session", session, "--message", message, "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def show(capsys, session: str) -> dict:
    code, out, err = zit(capsys, "chat", "--session", session, "--show", "--json")
    assert code == 0, err
    return json.loads(out)


def test_turns_in_separate_processes_continue_one_session(capsys, zit_home):
    def run(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "zit_agent.agent", "chat", "--session", "cafe", *args, "--json"],
            capture_output=True, text=True, env=os.environ.copy(), timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run("--message", IDEA, *SKETCH)
    second = run("--message", "at night, in the rain")  # a new process: parts come from the session
    shown = show(capsys, "cafe")

    assert [t["message"] for t in shown["turns"]] == [IDEA, "at night, in the rain"]
    assert shown["turns"][0]["images"] == first["images"]
    assert shown["turns"][1]["images"] == second["images"]
    assert "at night, in the rain" in second["description"][0]
    assert all(Path(p).is_file() for t in shown["turns"] for p in t["images"])
    assert shown["turns"][1]["settings"]["width"] == 128  # the session kept its settings
    assert shown["turns"][0]["shots"][0]["token_ids"]


def test_undo_goes_back_one_turn(capsys):
    turn(capsys, "u", IDEA, *SKETCH)
    turn(capsys, "u", "wearing a red coat")
    undone = turn(capsys, "u", "/undo")
    assert undone["turn"] == 1 and undone["description"] == [IDEA]

    after = turn(capsys, "u", "in the morning")
    assert after["description"] == [f"{IDEA}. in the morning"]  # built on turn 1, not turn 2
    assert [t["message"] for t in show(capsys, "u")["turns"]] == [IDEA, "in the morning"]


def test_settings_commands_render_again(capsys):
    first = turn(capsys, "s", IDEA, *SKETCH)
    reseeded = turn(capsys, "s", "/seed 40")
    resized = turn(capsys, "s", "/size 64x96")

    from PIL import Image

    assert reseeded["images"] != first["images"] and "s40" in reseeded["images"][0]
    assert Image.open(resized["images"][0]).size == (64, 96)
    assert reseeded["description"] == first["description"]


def test_vary_gives_each_image_new_axis_values(capsys):
    turn(capsys, "v", IDEA, *SKETCH)
    varied = turn(capsys, "v", "/vary")
    assert len(varied["description"]) == 2 and len(set(varied["description"])) == 2


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("/frobnicate", "unknown command /frobnicate"),
        ("/size 100x100", "width 100 is not a multiple of 16"),
        ("/size big", "bad size 'big'"),
        ("/lora missing.safetensors:0.5", "LoRA missing.safetensors does not exist"),
        ("/seed soon", "/seed N needs a whole number"),
    ],
)
def test_bad_input_prints_one_line_and_keeps_the_session(capsys, message, error):
    first = turn(capsys, "bad", IDEA, *SKETCH)
    code, out, err = zit(capsys, "chat", "--session", "bad", "--message", message)

    assert code == 2 and out == ""
    assert err.strip().startswith("zit: error: ") and error in err and len(err.splitlines()) == 1
    kept = show(capsys, "bad")
    assert len(kept["turns"]) == 1 and kept["turns"][0]["images"] == first["images"]
    assert all(Path(p).is_file() for p in first["images"])
    assert turn(capsys, "bad", "closer")["turn"] == 2  # and it goes on


def test_interactive_session_survives_bad_input(zit_home):
    from typer.testing import CliRunner

    from zit_agent.agent.cli import _register_commands, app

    _register_commands()
    lines = [IDEA, "/nope", "/size 1x1", "/help", "warmer light", "/history", "/quit"]
    result = CliRunner().invoke(app, ["chat", "--session", "i", *SKETCH], input="\n".join(lines))
    assert result.exit_code == 0, result.output
    assert "unknown command /nope" in result.output and "/vary" in result.output

    done = CliRunner().invoke(app, ["chat", "--session", "i", "--show", "--json"])
    assert [t["message"] for t in json.loads(done.stdout)["turns"]] == [IDEA, "warmer light"]


class KilledMidRender:
    """A fake backend (tests only): the process 'dies' in the middle of the first render."""

    name = "killed"

    def render(self, token_ids, seeds, options):
        raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_checkpoint(qwen_tokenizer, tmp_path, zit_home, capsys):
    from tests.agent.agent_fixtures import initial_state, sketch_context
    from zit_agent.agent.session import Session, open_checkpointer
    from zit_agent.agent.state import ChatTurn
    from zit_agent.settings import load_settings

    db = load_settings().sessions_db
    start = initial_state(chat=True, n=2, run_id="r", turns=[ChatTurn(message=IDEA)],
                          parts={"backend": "sketch"})  # fmt: skip
    with open_checkpointer(db) as saver, pytest.raises(KeyboardInterrupt):
        context = sketch_context(qwen_tokenizer, tmp_path, backend=KilledMidRender())
        Session(saver, "chat:r").start(start, context)

    with open_checkpointer(db) as saver:  # a new process, in effect
        session = Session(saver, "chat:r")
        assert session.status() == "interrupted"
        assert session.state().shots[0].sequence_ids  # write and assemble were kept
    resumed = turn(capsys, "r", "/history")  # the CLI resumes it first
    assert resumed["turn"] is None or resumed["turn"] == 1
    shown = show(capsys, "r")
    assert len(shown["turns"]) == 1 and len(shown["turns"][0]["images"]) == 2


class RefusesLoras:
    """A fake backend (tests only): the sketch renderer, except that any LoRA fails to load."""

    def __init__(self, tokenizer):
        from zit_agent.backends.sketch import SketchBackend

        self.name = "refuses-loras"
        self._sketch = SketchBackend(tokenizer)

    def render(self, token_ids, seeds, options):
        from zit_agent.errors import UserError

        if options.lora:
            raise UserError(f"LoRA {options.lora} is not a readable safetensors file")
        return self._sketch.render(token_ids, seeds, options)


def test_a_render_that_fails_in_the_graph_drops_the_turn_and_keeps_the_session(
    qwen_tokenizer, tmp_path
):
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.agent.agent_fixtures import initial_state, sketch_context
    from zit_agent.agent.session import Session
    from zit_agent.agent.state import ChatTurn

    context = sketch_context(qwen_tokenizer, tmp_path, backend=RefusesLoras(qwen_tokenizer))
    session = Session(InMemorySaver(), "chat:lora")
    first = session.start(
        initial_state(chat=True, n=2, turns=[ChatTurn(message="a cat")], idea="a cat"), context
    )
    bad = {"kind": "lora", "path": str(tmp_path / "x.safetensors"), "strength": 0.5, "raw": "/lora"}
    after = session.send(bad, context)

    assert "not a readable safetensors file" in after.error
    assert len(after.turns) == 1 and after.knobs.lora is None  # the setting went back
    assert after.attempts == first.attempts  # nothing rendered was lost
    again = session.send({"kind": "text", "text": "sleeping", "raw": "sleeping"}, context)
    assert again.error is None and len(again.turns) == 2 and again.knobs.lora is None


def test_with_ruts_on_a_chat_turn_escapes_its_rut(capsys):
    first = turn(capsys, "r2", IDEA, *SKETCH, "-n", "3", "--ruts")
    assert first["verdict"] == "ok" and len(first["description"]) == 3  # escaped by /vary's step
    refined = turn(capsys, "r2", "in the evening")  # each varied description is refined
    assert refined["description"] == [
        f"{d.rstrip('.')}. in the evening" for d in first["description"]
    ]


def test_a_sessions_options_stay_with_it(capsys, zit_home):
    from zit_agent.agent.history import HistoryStore

    turn(capsys, "o", IDEA, *SKETCH, "--steps", "3", "--layer", "-3")
    turn(capsys, "o", "closer")  # a later process: no options given
    turn(capsys, "o", "closer still", "--steps", "5")
    code, _, err = zit(capsys, "chat", "--session", "o", "--message", "wider", "--size", "64x64")
    assert code == 2 and "--size is set when a session starts (change it with /size WxH)" in err

    with HistoryStore(zit_home / "history.sqlite") as store:
        rows = store.images(session="o")
    steps = [row.settings["steps"] for row in rows]
    layers = {row.settings["layer"] for row in rows}
    assert steps == [3, 3, 3, 3, 5, 5] and layers == {-3}
    assert {(row.settings["width"], row.seed) for row in rows[-2:]} == {(128, 5), (128, 6)}


def test_vary_after_a_refinement_keeps_it(capsys):
    turn(capsys, "kv", IDEA, *SKETCH)
    turn(capsys, "kv", "at night, under the stars")
    varied = turn(capsys, "kv", "/vary")
    assert all(d.startswith(f"{IDEA}. at night, under the stars. ") for d in varied["description"])
