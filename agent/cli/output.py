"""What the CLI prints while a run works and after: one line per agent event (stderr, so --json
stays clean), a spinner while images render, and the table of attempts."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """User text (an idea, a description, a name, a path, an error naming them) made ready for rich
    markup: it prints as it is, never as markup (its `[...]` escaped) nor as terminal codes (control
    characters shown as `\\xNN`). Every value a person or a file chose goes through here."""
    from rich.markup import escape

    return escape(CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value)))


def new_console(**kwargs: Any) -> Console:
    """A rich console for zit's output; emoji codes off, so `:cat:` in an idea stays text."""
    from rich.console import Console

    return Console(emoji=False, **kwargs)


@contextlib.contextmanager
def loading(console: Console, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A `progress(text)` callback for `load_parts`, shown as a transient spinner line (nothing
    is left on the screen, so an error that follows is the only line)."""
    if quiet:
        yield lambda text: None
        return
    with console.status("loading") as status:
        yield lambda text: status.update(plain(text))


def print_parts(console: Console, parts) -> None:
    """What loading chose that a person should see: the memory plan, fallbacks (stderr)."""
    for line in parts.plan.lines() if parts.plan is not None else []:
        console.print(line, highlight=False, markup=False)
    for note in parts.notes:
        console.print(f"[yellow]{plain(note)}[/]")


def events(console: Console, quiet: bool):
    return (lambda kind, data: None) if quiet else ConsoleEvents(console)


class ConsoleEvents:
    """Prints what each node does, one line per event (stderr, so --json stays clean), with a
    spinner while images render."""

    def __init__(self, console: Console):
        self.console = console
        self._status = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if self._status is not None and kind in ("rendered", "error"):
            self._status.stop()
            self._status = None
        line = self.describe(kind, data)
        if line:
            self.console.print(line, highlight=False)
        if kind == "render":
            self._status = self.console.status(f"rendering {plain(data['images'])} image(s)")
            self._status.start()

    @staticmethod
    def describe(kind: str, data: dict[str, Any]) -> str | None:
        """The line of one event, as rich markup (each value from the event printed as text)."""
        data = {k: v if isinstance(v, int | float) else plain_value(v) for k, v in data.items()}
        if kind == "write":
            who = data.get("writer") or "no writer: the idea as it is"
            return f"[bold]write[/] ({who}): {_short(data['description'])}"
        if kind == "assemble":
            return f"[bold]assemble[/] {data['shape']} sequence(s): {data['tokens']} tokens"
        if kind == "render":
            return f"[bold]render[/] attempt {data['attempt']}: {data['images']} image(s)"
        if kind == "judge":
            colour = {"ok": "green", "warn": "yellow", "rut": "red"}[data["verdict"]]
            axes = f"; axes: {', '.join(data['axes'][:5])}" if data["verdict"] != "ok" else ""
            kinds = ", ".join(f"{k} {v['verdict']}" for k, v in (data.get("kinds") or {}).items())
            return (
                f"[bold]judge[/] attempt {data['attempt']}: [{colour}]{data['verdict']}[/] "
                f"({data['reason']}; Vendi {data['vendi']:.2f} of {data['count']}){axes}"
                + (f"; measured: {kinds}" if kinds else "")
            )
        if kind == "escape":
            return (
                f"[bold]escape[/] -> attempt {data['attempt']}: {data['lever']}: {data['detail']}"
            )
        if kind == "finish":
            return f"[bold]done[/]: {data['message']}" if data.get("message") else None
        if kind == "error":
            return f"[red]error[/]: {data['message']}"
        if kind == "setting":
            return f"[bold]setting[/] {data['command']}: rendering again"
        if kind == "undo":
            return f"[bold]undo[/]: back to turn {data['turns']}"
        if kind == "resume":
            return "[yellow]finishing the turn an earlier process left unfinished[/]"
        return None


def plain_value(value: Any) -> Any:
    """`plain` through lists and dicts (an event's axes, levers)."""
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return value if value is None or isinstance(value, bool | int | float) else plain(value)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def attempts_table(state) -> Any:
    """A rich table of the attempts: verdict, scores, levers and their effect."""
    from rich.table import Table

    table = Table(title=f"{len(state.attempts)} attempt(s): {plain(state.message)}")
    for column in ("attempt", "verdict", "mean sim", "Vendi", "levers", "images"):
        table.add_column(column)
    for attempt in state.attempts:
        scores = attempt.scores
        levers = "\n".join(f"{lv.name}: {plain(_short(lv.detail, 80))}" for lv in attempt.levers)
        table.add_row(
            str(attempt.number),
            scores.verdict if scores else "-",
            f"{scores.mean_similarity:.3f}" if scores else "-",
            f"{scores.vendi:.2f}" if scores else "-",
            levers or "-",
            str(len(attempt.images)),
        )
    return table
