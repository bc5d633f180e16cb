"""The `zit` command line.

Each command lives in its own module of this package and registers itself on `app`. Command modules
import heavy libraries (torch, diffusers, transformers, llama_cpp) inside their functions only, so
`zit --help` stays fast. Errors become one line on stderr and an exit code by kind (`main`).
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

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
def _root(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Keep the libraries' progress bars and log lines (diffusers, transformers, hub).",
    ),
) -> None:
    """Local prompt-writing agent for Z-Image-Turbo."""
    from zit_agent.backends.quiet import quiet_libraries

    quiet_libraries(verbose=verbose)


INTERRUPTED = "zit: interrupted (finished work is saved; a run resumes where it stopped)"
COMMAND_MODULES = (
    "tokens",
    "expand",
    "generate",
    "rerender",
    "vary",
    "inpaint",
    "chat",
    "demo",
    "ruts",
    "eval",
    "serve",
    "mcp",
)


def _register_commands() -> None:
    """Import each command module present (each registers itself on `app`)."""
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"zit_agent.agent.cli.{name}") is not None:
            importlib.import_module(f"zit_agent.agent.cli.{name}")


def _click_exceptions() -> SimpleNamespace:
    """Click's exception classes as typer raises them (typer 0.2x vendors click as
    `typer._click`; older typer uses click itself)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return SimpleNamespace(
        Exit=typer.Exit,
        Abort=typer.Abort,
        UsageError=exceptions.UsageError,
        NoArgsIsHelpError=getattr(exceptions, "NoArgsIsHelpError", ()),
    )


def _log_warnings_to_stderr() -> None:
    """zit's own warnings (`zit.*` loggers) as `zit: warning: ...` lines on stderr."""
    import logging

    class Stderr(logging.StreamHandler):
        """Writes to whatever `sys.stderr` is when a record comes (tests swap it)."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    logger = logging.getLogger("zit")
    if not any(type(h).__name__ == "Stderr" for h in logger.handlers):
        handler = Stderr()
        handler.setFormatter(logging.Formatter("zit: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Errors become one line on stderr and an exit code by kind
    (`zit_agent.errors`): 2 bad input (or busy), 3 out of memory or disk, 4 draft failed,
    70 internal; usage errors are one line too, and Ctrl-C says so and exits 130."""
    click = _click_exceptions()
    from zit_agent.errors import InternalError, as_zit_error
    from zit_agent.options import flag_of

    _register_commands()
    _log_warnings_to_stderr()
    try:
        code = app(args=argv, standalone_mode=False)
    except click.NoArgsIsHelpError as err:
        print(err.format_message(), file=sys.stderr)
        sys.exit(2)
    except click.Exit as done:
        sys.exit(done.exit_code)
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx else "zit"
        print(f"zit: error: {err.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, click.Abort):
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
        print(f"zit: error: {error.one_line(flag_of)}", file=sys.stderr)
        sys.exit(error.exit_code)
    if code == 130:  # typer returns Ctrl-C as exit code 130
        print(INTERRUPTED, file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
