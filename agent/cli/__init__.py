"""The `zit` command line.

Each command lives in its own module of this package and registers itself on `app`. Command modules
import heavy libraries (torch, diffusers, transformers, llama_cpp) inside their functions only, so
`zit --help` stays fast. `UserError`s become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="zit",
    help="Local prompt-writing agent for Z-Image-Turbo: write chat sequences, render them from "
    "token ids, detect and escape ruts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Local prompt-writing agent for Z-Image-Turbo."""


COMMAND_MODULES = ("tokens", "expand", "generate", "rerender", "chat", "demo", "ruts", "eval")


def _register_commands() -> None:
    """Import each command module present (each registers itself on `app`)."""
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"zit_agent.agent.cli.{name}") is not None:
            importlib.import_module(f"zit_agent.agent.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    from zit_agent.errors import UserError

    _register_commands()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as err:
        print(f"zit: error: {err.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("zit: interrupted", file=sys.stderr)
        sys.exit(130)
