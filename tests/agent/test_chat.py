"""`zit chat`: sessions are LangGraph threads in SQLite that survive process restarts; `/undo`,
an interrupted run resuming, and bad input that leaves the session as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.agent.agent_fixtures import IDEA
from tests.cli_helpers import run_zit as zit
from zit_agent.backends.base import ImageBackend

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


@pytest.mark.slow  # starts processes
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


class KilledMidRender(ImageBackend):
    """A fake backend (tests only): the process 'dies' in the middle of the first render."""

    name = "killed"

    def render(self, token_ids, seeds, options):
        raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_checkpoint(qwen_tokenizer, tmp_path, zit_home, capsys):
    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    db = load_settings().sessions_db
    options = run_options(count=2, size="128x128", backend="sketch")
    with open_checkpointer(db) as saver, pytest.raises(KeyboardInterrupt):
        runner = sketch_runner(qwen_tokenizer, backend=KilledMidRender())
        runner.chat("r", saver, out_dir=tmp_path).turn(IDEA, options)

    with open_checkpointer(db) as saver:  # a new process, in effect
        session = sketch_runner(qwen_tokenizer).chat("r", saver, out_dir=tmp_path)
        assert session.status() == "interrupted"
        assert session.state().shots[0].sequence_ids  # write and assemble were kept
    resumed = turn(capsys, "r", "/history")  # the CLI finishes the run first
    assert resumed["turn"] == 1
    shown = show(capsys, "r")
    assert len(shown["turns"]) == 1 and len(shown["turns"][0]["images"]) == 2


class RefusesLoras(ImageBackend):
    """A fake backend (tests only): the sketch renderer, except that any LoRA fails inside the
    render, as a LoRA with keys that do not fit the model does."""

    def __init__(self, tokenizer):
        from zit_agent.backends.tiny.sketch import SketchBackend

        self.name = "refuses-loras"
        self._sketch = SketchBackend(tokenizer)

    def render(self, token_ids, seeds, options):
        if options.lora:
            raise ValueError(f"Target modules not found in the base model for {options.lora}")
        return self._sketch.render(token_ids, seeds, options)


def test_a_render_that_fails_records_a_failed_turn_and_the_session_goes_on(
    qwen_tokenizer, tmp_path, zit_home
):
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.errors import InternalError
    from zit_agent.options import run_options

    lora = tmp_path / "g.safetensors"
    save_file({"foo.lora_A.weight": torch.zeros(2, 2)}, str(lora))
    options = run_options(count=2, size="128x128")
    session = sketch_runner(qwen_tokenizer, backend=RefusesLoras(qwen_tokenizer)).chat(
        "lora", InMemorySaver(), out_dir=tmp_path
    )
    first = session.turn("a cat", options)
    with pytest.raises(InternalError, match="Target modules not found"):
        session.turn(f"/lora {lora}:1", options)

    after = session.state()
    assert session.status() == "waiting"
    assert len(after.turns) == 2 and "Target modules not found" in after.turns[-1].error
    assert after.knobs.lora is None and after.attempts == first.attempts  # back as it was
    assert session.turn("/help", options).kind == "help"
    again = session.turn("sleeping", options)
    assert again.turns[-1].error is None and again.knobs.lora is None
    assert len(again.attempts) == len(first.attempts) + 1
    undone = session.turn("/undo", options)
    assert undone.turns[-1].error is not None  # back to the failed turn's (= the first's) state


def test_a_failed_first_turn_leaves_no_session(qwen_tokenizer, tmp_path, zit_home):
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.agent.agent_fixtures import sketch_runner
    from zit_agent.options import run_options

    lora = tmp_path / "g.safetensors"
    save_file({"foo.lora_A.weight": torch.zeros(2, 2)}, str(lora))
    session = sketch_runner(qwen_tokenizer, backend=RefusesLoras(qwen_tokenizer)).chat(
        "first", InMemorySaver(), out_dir=tmp_path
    )
    with pytest.raises(Exception, match="Target modules"):
        session.turn("a cat", run_options(lora=[str(lora)], size="128x128"))
    assert session.status() == "new"
    assert session.turn("a cat", run_options(size="128x128")).turns[0].message == "a cat"


def test_a_busy_session_refuses_a_second_turn(capsys, zit_home):
    from zit_agent.agent.chat import session_lock

    turn(capsys, "busy", IDEA, *SKETCH)
    with session_lock(zit_home, "busy"):  # another process is mid-turn
        code, _, err = zit(capsys, "chat", "--session", "busy", "--message", "closer")
    assert code == 2 and "session 'busy' is busy" in err and len(err.strip().splitlines()) == 1
    assert len(show(capsys, "busy")["turns"]) == 1  # nothing ran


def test_a_symlinked_session_lock_is_refused_and_its_target_untouched(capsys, zit_home, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (zit_home / "sessions.locks").mkdir(parents=True)
    (zit_home / "sessions.locks" / "s.lock").symlink_to(victim)
    code, _, err = zit(capsys, "chat", "--session", "s", "--message", IDEA, *SKETCH)
    assert code == 2 and "lock" in err and victim.read_text() == "precious"


@pytest.mark.parametrize("name", ["x" * 300, "../escape", "a/b", "", " "])
def test_bad_session_names_are_refused_before_anything_runs(capsys, zit_home, name):
    code, _, err = zit(capsys, "chat", "--session", name, "--message", IDEA, *SKETCH)
    assert code == 2 and "bad session name" in err and len(err.strip().splitlines()) == 1


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
    assert code == 2 and "--size is set when a session starts" in err
    assert "(128, 128)" in err and "change it with /size WxH" in err

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


def test_a_later_turn_may_repeat_the_flags_the_session_started_with(capsys):
    """Scripts call `zit chat` turn after turn with the same flags."""
    first = turn(capsys, "same", IDEA, *SKETCH)
    again = turn(capsys, "same", "in the evening", *SKETCH)
    assert again["turn"] == 2 and len(again["images"]) == len(first["images"]) == 2


def test_a_session_saved_by_zit_agent_0_1_still_opens_and_goes_on(capsys, zit_home):
    """tests/agent/data/sessions-0.1.sqlite was written by zit-agent 0.1 (classes in a top-level
    `agent.state`, options stored as `render`): a sketch session, 64x64, seeds 3-4, two turns."""
    import shutil
    import sys

    zit_home.mkdir(parents=True)
    shutil.copy(
        Path(__file__).parent / "data" / "sessions-0.1.sqlite", zit_home / "sessions.sqlite"
    )
    shown = show(capsys, "old")
    assert [t["message"] for t in shown["turns"]] == [
        "a portrait of a woman in a cafe", "wearing a red coat"]  # fmt: skip
    assert shown["turns"][1]["shots"][0]["description"].endswith("wearing a red coat")
    third = turn(capsys, "old", "at night")  # its parts and options came back with it
    assert third["turn"] == 3 and len(third["images"]) == 2
    assert third["images"][0].endswith("old-a3-0-s3.png")
    assert "agent" not in sys.modules  # nothing imported the old module path
