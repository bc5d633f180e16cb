"""The `zit` command line.

Each command lives in its own module of this package and registers itself on `app`. Command modules
import heavy libraries (torch, diffusers, transformers, llama_cpp) inside their functions only, so
`zit --help` stays fast. Errors become one line on stderr and an exit code by kind (`main`).
"""

from __future__ import annotations

import os
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


COMMAND_MODULES = ("tokens", "expand", "generate", "chat", "demo", "ruts", "eval", "serve")


def _register_commands() -> None:
    """Import each command module present (each registers itself on `app`)."""
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"zit_agent.agent.cli.{name}") is not None:
            importlib.import_module(f"zit_agent.agent.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Errors become one line on stderr and an exit code by kind
    (`zit_agent.errors`): 2 bad input (or busy), 3 out of memory or disk, 4 draft failed,
    70 internal; usage errors are one line too, and Ctrl-C says so and exits 130."""
    import click

    from zit_agent.agent.cli.options import option_flag
    from zit_agent.errors import InternalError, as_zit_error

    _register_commands()
    try:
        code = app(args=argv, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        print(err.format_message(), file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.UsageError as err:
        command = err.ctx.command_path if err.ctx else "zit"
        print(f"zit: error: {err.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        print(
            "zit: interrupted (finished work is saved; a run resumes where it stopped)",
            file=sys.stderr,
        )
        sys.exit(130)
    except Exception as exc:  # the last edge: every failure is one line with its kind's code
        error = as_zit_error(exc)
        if error is None:
            if os.environ.get("ZIT_DEBUG"):
                raise
            error = InternalError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="a bug in zit: rerun with ZIT_DEBUG=1 for the traceback and report it",
            )
        print(f"zit: error: {error.one_line(option_flag)}", file=sys.stderr)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
