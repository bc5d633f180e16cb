"""Chat sessions through the run API: one LangGraph thread per session, one turn at a time.

A session stores the options it started with (parts and render flags); later turns load the same
parts and may repeat those options. A later option equal to the session's setting is accepted; a
different value of a setting the session owns (size, layer, LoRA, seed, count, noise) is refused
with the command that changes it.

Failures never poison a session: when a turn raises (a LoRA that does not fit, out of memory, a
writer that failed), the turn is recorded as failed, the settings go back to the previous turn's
and the session waits for the next message. A failed first turn leaves no session behind. A
process killed mid-turn leaves the thread interrupted; the next turn finishes that run first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from zit_agent.agent import commands
from zit_agent.errors import Busy, InternalError, UserError, ZitError, as_zit_error

if TYPE_CHECKING:
    from zit_agent.agent.run import Event, Runner
    from zit_agent.agent.state import AgentState

Status = Literal["new", "waiting", "interrupted", "finished"]
SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Settings a session owns once it runs: option -> the command that changes it.
SESSION_SETTINGS = {
    "size": "/size WxH", "layer": "/layer N", "lora": "/lora PATH:S", "seed": "/seed N",
    "count": "a new session", "noise": "a new session", "noise_seed": "a new session",
    "control": "/control PATH", "init": "/pick N", "strength": "/pick N STRENGTH",
    "mask": "a new session",
}  # fmt: skip


def check_session_name(name: str) -> str:
    if not SESSION_NAME.fullmatch(name):
        raise UserError(
            f"bad session name {name[:80]!r}",
            hint="use 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit",
        )
    return name


def session_lock(home: Path, name: str):
    """One turn at a time per session, across processes (`files.exclusive_lock`)."""
    from zit_agent.files import exclusive_lock

    busy = Busy(
        f"session {name!r} is busy: another zit process is running one of its turns",
        hint="wait for it to finish, then send the message again",
    )
    return exclusive_lock(home / "sessions.locks" / f"{name}.lock", busy)


class ChatSession:
    """One chat session: read it, start it, send it commands (see the module docstring)."""

    def __init__(self, runner: Runner, name: str, checkpointer: Any, *, out_dir: Path,
                 on_event: Event):  # fmt: skip
        from zit_agent.agent.run import compiled_graph

        self.runner, self.name = runner, check_session_name(name)
        self.thread_id = f"chat:{name}"
        self.checkpointer = checkpointer
        self.app = compiled_graph(checkpointer)
        self.out_dir, self.on_event = Path(out_dir), on_event

    # -- reading ---------------------------------------------------------------------------------
    def _config(self, state: AgentState | None = None) -> dict[str, Any]:
        from zit_agent.agent.graph import run_config
        from zit_agent.agent.state import AgentState

        return run_config(state or AgentState(idea="-"), self.thread_id)

    def state(self) -> AgentState | None:
        return read_state(self.app, self._config())

    def status(self) -> Status:
        return read_status(self.app, self._config())

    # -- turns -----------------------------------------------------------------------------------
    def turn(self, text: str, options: BaseModel) -> AgentState | BaseModel:
        """One input, holding the session's lock: the idea (a new session), a graph command (runs
        to the next pause), or a local command (returned as it is, for the front end to answer).
        `options` are this turn's; the session's stored ones fill in the rest."""
        with session_lock(self.runner.settings.home, self.name):
            if self.status() == "interrupted":
                self.on_event("resume", {"session": self.name})
                self._invoke(None, self._options(options))
            if self.status() == "new":
                if text.strip().startswith("/"):
                    raise UserError(
                        "a new session starts with an idea", hint="type what to picture"
                    )
                return self._start(text, options)
            command = commands.parse_command(text)
            if isinstance(command, commands.Local):
                return command
            return self._send(command, options)

    def _options(self, given: BaseModel) -> BaseModel:
        """The session's stored options with this turn's on top."""
        from zit_agent.options import run_options

        state = self.state()
        stored = stored_options(state.parts) if state is not None else {}
        return run_options(**{**stored, **given.model_dump(exclude_none=True)})

    def _start(self, idea: str, options: BaseModel) -> AgentState:
        runner = self.runner
        initial = runner.start(
            idea, options, runner.options_for(options), ruts=bool(options.ruts), run_id=self.name,
            chat=True, on_event=self.on_event,
        )  # fmt: skip
        try:
            return self._invoke(initial, options)
        except Exception:  # (a killed process or Ctrl-C leaves the run to finish next time)
            self.checkpointer.delete_thread(self.thread_id)  # a failed first turn leaves nothing
            raise

    def _send(self, command: BaseModel, options: BaseModel) -> AgentState:
        from langgraph.types import Command

        current = self.state()
        if current is None or self.status() != "waiting":
            raise UserError(f"session {self.name!r} is not waiting for input ({self.status()})")
        check_later_options(current, options)
        if isinstance(command, commands.Undo) and len(current.turns) <= 1:
            raise UserError("nothing to undo", hint="this is the session's first turn")
        check_image_index(current, command)
        if isinstance(command, commands.Size):  # a size the session's backend would refuse
            from zit_agent.backends.base import RenderOptions

            self.runner.parts.backend.check(
                RenderOptions(width=command.width, height=command.height)
            )
        return self._invoke(Command(resume=command.model_dump()), self._options(options))

    def _invoke(self, payload: Any, options: BaseModel) -> AgentState:
        """Run the graph to its next pause; a failure becomes a failed turn (see module doc)."""
        from zit_agent.agent.graph import state_of

        runner = self.runner
        store = self._store()
        context = runner.context(
            options, runner.options_for(options), out_dir=self.out_dir, store=store,
            on_event=self.on_event,
        )  # fmt: skip
        try:
            return state_of(self.app.invoke(payload, self._config(), context=context))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            error = as_zit_error(exc) or InternalError(f"{type(exc).__name__}: {exc}")
            state = self.state()
            if state is not None and len(state.turns) > 1:
                self._fail_turn(state, error, context)
            raise error from exc
        finally:
            if store is not None:
                store.close()

    def _fail_turn(self, state: AgentState, error: ZitError, context: Any) -> None:
        """Record the running turn as failed, restore the previous turn's settings and pause."""
        from zit_agent.agent.nodes import failed_turn

        update = failed_turn(state, f"{error.kind}: {error.one_line()}")
        self.app.update_state(self._config(), update, as_node="finish")
        self.app.invoke(None, self._config(), context=context)  # on to the pause

    def _store(self):
        from zit_agent.agent.history import HistoryStore

        return HistoryStore(self.runner.settings.history_db)


def stored_options(parts: dict[str, Any]) -> dict[str, Any]:
    """The options a session started with. Sessions of zit-agent 0.1 stored them as `render`
    (the same names, render options only)."""
    return dict(parts.get("options") or parts.get("render") or {})


def stored_parts(checkpointer: Any, name: str) -> dict[str, Any]:
    """The parts and options a session was started with ({} for a new session): read before
    loading anything, so a later turn loads the same models."""
    from zit_agent.agent.graph import run_config
    from zit_agent.agent.run import compiled_graph
    from zit_agent.agent.state import AgentState

    config = run_config(AgentState(idea="-"), f"chat:{check_session_name(name)}")
    state = read_state(compiled_graph(checkpointer), config)
    return dict(state.parts) if state is not None else {}


def check_later_options(state: AgentState, options: BaseModel) -> None:
    """A later turn may repeat the session's settings; a different value is refused with the
    command that changes it."""
    from zit_agent.agent.run import parse_lora, parse_size

    knobs = state.knobs
    current = {
        "size": (knobs.width, knobs.height), "layer": knobs.layer, "seed": state.seed,
        "count": state.n, "noise": knobs.noise, "noise_seed": knobs.noise_seed,
        "lora": [(knobs.lora, knobs.lora_strength)] if knobs.lora else [],
        "control": knobs.control, "init": knobs.init, "strength": knobs.strength,
        "mask": knobs.mask,
    }  # fmt: skip
    given = options.model_dump(include=set(SESSION_SETTINGS), exclude_none=True)
    for name, value in given.items():
        if name == "size":
            value = parse_size(value)
        elif name == "lora":
            value = [parse_lora(spec) for spec in value]
        elif name in ("control", "init", "mask"):
            value = str(Path(value).expanduser().resolve())
        if value != current[name]:
            raise UserError(
                f"{{{name}}} is set when a session starts (this session's: {current[name]})",
                hint=f"change it with {SESSION_SETTINGS[name]}",
            )


def check_image_index(state: AgentState, command: BaseModel) -> None:
    """`/pick N` and `/vary ... N` name one of the images the person last saw."""
    index = getattr(command, "index", None)
    if not isinstance(command, commands.Pick | commands.VaryImage) or index is None:
        return
    count = len(state.latest_images())
    if index > count:
        raise UserError(
            f"image {index}: the last turn has {count} image(s)",
            hint=f"pick one of 1..{count}",
        )


# -- reading any session -------------------------------------------------------------------------
def read_state(app: Any, config: dict[str, Any]) -> AgentState | None:
    from zit_agent.agent.state import AgentState

    values = app.get_state(config).values
    return AgentState.model_validate(values) if values else None


def read_status(app: Any, config: dict[str, Any]) -> Status:
    snapshot = app.get_state(config)
    if not snapshot.values:
        return "new"
    if snapshot.interrupts:
        return "waiting"
    return "interrupted" if snapshot.next else "finished"
