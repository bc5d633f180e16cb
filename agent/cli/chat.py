"""`zit chat`: an interactive refinement session, a LangGraph thread checkpointed under ZIT_HOME.

A thin caller of the run API's chat sessions (`zit_agent.agent.chat`). The first message of a new
session is the idea; after that, text refines the description (the writer's `refine` instruction)
and commands change one thing at a time (`/help`). `--message TEXT` runs one turn and exits, so a
session can go on in a later process; `--show` prints the turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.options import with_options
from zit_agent.agent.cli.output import plain

if TYPE_CHECKING:
    from rich.console import Console

    from zit_agent.agent.chat import ChatSession
    from zit_agent.agent.state import AgentState


@app.command()
@with_options()
def chat(
    session: Annotated[str, typer.Option(help="Session name (a resumable thread).")] = "default",
    message: Annotated[
        str | None, typer.Option(help="Run one turn with this message (or /command) and exit.")
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Print the session's turns and exit.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (with --message/--show).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: ZIT_HOME/outputs/chat-NAME).")
    ] = None,
    *,
    options,
) -> None:
    """Refine an idea turn by turn. The first message is the idea; then type changes or /help.

    Options are those of `zit generate`; a session stores the ones it started with and uses them
    again on later turns (repeating them is fine; settings the session owns, such as the size,
    change with their /command). Ruts are checked only with --ruts.
    """
    from zit_agent.agent.chat import check_session_name, stored_options, stored_parts
    from zit_agent.agent.cli.output import events, loading, new_console, print_parts
    from zit_agent.agent.commands import parse_command
    from zit_agent.agent.run import Runner, first_given
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.settings import load_settings

    check_session_name(session)
    settings = load_settings()
    console = new_console(stderr=True)
    with open_checkpointer(settings.sessions_db) as saver:
        stored = stored_parts(saver, session)
        if show:
            return _show(saver, session, as_json, console)
        ruts = bool(first_given(options.ruts, stored_options(stored).get("ruts")))
        if message is not None and stored:
            parse_command(message)  # bad input is refused before any model loads
        with loading(console, as_json) as progress:
            runner = Runner.load(settings, options, ruts=ruts, stored=stored, progress=progress)
        if not as_json:
            print_parts(console, runner.parts)
        thread = runner.chat(
            session, saver, out_dir=Path(out or settings.outputs_dir / f"chat-{session}"),
            on_event=events(console, as_json),
        )  # fmt: skip
        if message is not None:
            _one_turn(thread, message, options, as_json, console)
        else:
            _interactive(thread, options, console)


def _one_turn(thread: ChatSession, text: str, options, as_json: bool, console: Console) -> None:
    from zit_agent.agent.cli.common import print_json

    result = thread.turn(text, options)
    if as_json:
        print_json(turn_json(thread.state() if _is_local(result) else result, thread.name))
    elif _is_local(result):
        _answer(thread, result, console)
    else:
        _print_turn(result, console)


def _interactive(thread: ChatSession, options, console: Console) -> None:
    from zit_agent.errors import ZitError

    current = thread.state()
    greeting = (
        "type an idea to start" if current is None else f"{len(current.turns)} turn(s); /help"
    )
    console.print(f"session [bold]{plain(thread.name)}[/]: {greeting}")
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ")
        except EOFError:
            break
        if text.strip().lower() in ("/quit", "/exit"):
            break
        try:
            result = thread.turn(text, options)
        except ZitError as err:  # the session is as it was before the turn: say why, go on
            console.print(f"[red]{err.kind}[/]: {plain(err.one_line())}", highlight=False)
            continue
        if _is_local(result):
            _answer(thread, result, console)
        else:
            _print_turn(result, console)


def _is_local(result: Any) -> bool:
    from zit_agent.agent.commands import Local

    return isinstance(result, Local)


def _answer(thread: ChatSession, command, console: Console):
    """The local commands: answered from the session's state."""
    from zit_agent.agent.commands import help_text

    state = thread.state()
    if command.kind == "help":
        console.print(help_text(), highlight=False, markup=False)
    elif command.kind == "show":
        for shot in state.shots:
            console.print(shot.sequence_text, highlight=False, markup=False)
    elif command.kind == "tokens":
        for shot in state.shots:
            console.print(f"{len(shot.sequence_ids)} tokens: {shot.sequence_ids}", highlight=False)
    elif command.kind == "history":
        _print_history(show_json(state, thread.name), console)


def _print_turn(state: AgentState, console: Console) -> None:
    turn = state.turns[-1]
    for shot in turn.shots:
        console.print(f"[bold]description[/]: {plain(shot.description.full_text)}", highlight=False)
    for path in _turn_images(state, turn):
        print(path)
    if turn.verdict:
        console.print(f"rut check: {plain(turn.verdict)}")
    if turn.knobs.init and not turn.attempts:  # /pick: nothing rendered
        console.print(f"start image (strength {turn.knobs.strength}):", highlight=False)
        print(turn.knobs.init)


def _show(saver, name: str, as_json: bool, console: Console) -> None:
    from zit_agent.agent.chat import read_state
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.graph import run_config
    from zit_agent.agent.run import compiled_graph
    from zit_agent.agent.state import AgentState
    from zit_agent.errors import UserError

    state = read_state(compiled_graph(saver), run_config(AgentState(idea="-"), f"chat:{name}"))
    if state is None:
        raise UserError(f"no session named {name!r}", hint="start one with --message IDEA")
    data = show_json(state, name)
    if as_json:
        print_json(data)
    else:
        _print_history(data, console)


def _print_history(data: dict[str, Any], console: Console) -> None:
    for i, turn in enumerate(data["turns"], 1):
        failed = f" [red](failed: {plain(turn['error'])})[/]" if turn.get("error") else ""
        console.print(f"[bold]{i}. {plain(turn['message'])}[/]{failed}", highlight=False)
        for shot in turn["shots"]:
            console.print(f"   {shot['description']}", highlight=False, markup=False)
        for path in turn["images"]:
            console.print(f"   {plain(path)}", highlight=False)


def turn_json(state: AgentState | None, name: str) -> dict[str, Any]:
    if state is None:
        return {"session": name, "turn": None}
    turn = state.turns[-1]
    return {
        "session": name,
        "turn": len(state.turns),
        "message": turn.message,
        "description": [shot.description.full_text for shot in turn.shots],
        "images": _turn_images(state, turn),
        "verdict": turn.verdict,
        "start_image": turn.knobs.init,  # the picked image later renders start from (or None)
        "strength": turn.knobs.strength if turn.knobs.init else None,
    }


def _turn_images(state: AgentState, turn) -> list[str]:
    if not turn.attempts:
        return []
    return state.attempts[turn.attempts[-1]].images


def show_json(state: AgentState, name: str) -> dict[str, Any]:
    return {
        "session": name,
        "idea": state.idea,
        "turns": [
            {
                "message": turn.message,
                "shots": [
                    {
                        "description": shot.description.full_text,
                        "sequence_text": shot.sequence_text,
                        "token_ids": shot.sequence_ids,
                        "seeds": shot.seeds,
                    }
                    for shot in turn.shots
                ],
                "images": _turn_images(state, turn),
                "all_images": [p for i in turn.attempts for p in state.attempts[i].images],
                "verdict": turn.verdict,
                "error": turn.error,
                "settings": turn.knobs.model_dump(),
            }
            for turn in state.turns
        ],
    }
