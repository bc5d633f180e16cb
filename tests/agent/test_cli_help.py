"""`zit --help` lists every command from the table in `zit_agent.agent.cli` without importing any
command's module, the table says what the commands themselves say, and each command (and each
command of a group) still shows its own help."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys

import pytest

from tests.cli_helpers import run_zit


def words(text: str) -> str:
    return " ".join(text.split())


def real_commands() -> dict:
    """Every command registered on the app once every module of the CLI package is imported (the
    modules are found in the package folder, not in the table), built as typer builds them."""
    import typer.main

    from zit_agent.agent import cli

    for module in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"{cli.__name__}.{module.name}")
    return dict(typer.main.get_command(cli.app).commands)


def first_paragraph(command) -> str:
    """What typer's help lists for a command: the first paragraph of its help."""
    return inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]


def run_fresh(args: list[str]) -> dict:
    """`zit ARGS` in a new process (a wide terminal, so no line wraps): its output and which of
    zit's modules it imported."""
    code = (
        "import json, sys\nsys.argv[0] = 'zit'\n"
        "from zit_agent.agent.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('MODULES', json.dumps(sorted(m for m in sys.modules if m.startswith(('zit_agent', "
        "'pydantic')))))\n"
    )
    env = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    out, _, modules = done.stdout.rpartition("MODULES ")
    assert modules, done.stdout + done.stderr
    return {"out": out, "modules": json.loads(modules)}


def test_the_table_is_every_command_with_its_own_summary():
    from zit_agent.agent.cli import COMMANDS

    real = real_commands()
    assert set(COMMANDS) == set(real), "a command module and the COMMANDS table disagree"
    for name, command in real.items():
        assert words(COMMANDS[name]) == words(first_paragraph(command)), name
        # the listing shows name and summary only: nothing else may set a command apart
        assert not command.hidden and not command.deprecated, name
        assert not isinstance(getattr(command, "rich_help_panel", None), str), name


@pytest.mark.slow  # starts processes
def test_top_level_help_lists_every_command_and_imports_none_of_them():
    real = real_commands()
    shown = run_fresh(["--help"])
    text = words(shown["out"])
    assert "Usage: zit [OPTIONS] COMMAND [ARGS]..." in text and "--verbose" in text
    for name, command in real.items():
        assert f"│ {name} {words(first_paragraph(command))} │" in text, name
    loaded = set(shown["modules"])
    assert not loaded & {f"zit_agent.agent.cli.{name}" for name in real}
    assert "zit_agent.options" not in loaded and "pydantic" not in loaded

    # one command's own help imports that command's module, not the others'
    own = run_fresh(["tokens", "--help"])
    assert "Usage: zit tokens" in words(own["out"])
    commands = {m for m in own["modules"] if m.rpartition(".")[2] in real}
    assert commands == {"zit_agent.agent.cli.tokens"}


def test_every_command_shows_its_own_help(capsys):
    for name, command in real_commands().items():
        code, out, err = run_zit(capsys, name, "--help")
        assert code == 0 and not err, (name, err)
        assert f" {name} [OPTIONS]" in words(out) and words(first_paragraph(command)) in words(out)
        for sub in getattr(command, "commands", {}):  # a group's commands: `zit eval run --help`
            code, out, err = run_zit(capsys, name, sub, "--help")
            assert code == 0 and not err and f" {name} {sub} [OPTIONS]" in words(out), (sub, err)


def test_a_mistyped_command_is_suggested(capsys):
    code, _, err = run_zit(capsys, "gnerate", "a cat")
    assert code == 2
    assert err.startswith("zit: error: No such command 'gnerate'. Did you mean 'generate'? (see")
