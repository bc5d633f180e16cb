"""Sessions: LangGraph threads checkpointed in SQLite under `ZIT_HOME` (`settings.sessions_db`).

A chat session is one thread. Its graph pauses in `await_user` (LangGraph `interrupt()`); each turn
resumes it with `Command(resume=<parsed command>)`, in this process or in a later one. A run that
was interrupted mid-way (the process killed while rendering) resumes from its last checkpoint with
`resume()`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zit_agent.agent import state as state_module
from zit_agent.agent.graph import build_graph, run_config, state_of
from zit_agent.agent.state import AgentState
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from zit_agent.agent.nodes import AgentContext

Status = Literal["new", "waiting", "interrupted", "finished"]
STATE_TYPES = (
    state_module.AgentState,
    state_module.Attempt,
    state_module.ChatTurn,
    state_module.Description,
    state_module.Lever,
    state_module.RenderKnobs,
    state_module.Scores,
    state_module.Shot,
    state_module.WriterRut,
)


@contextlib.contextmanager
def open_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    """LangGraph's SQLite checkpointer on `path` (WAL, so two processes can share it)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: no fsync per checkpoint, still safe
        serde = JsonPlusSerializer(allowed_msgpack_modules=list(STATE_TYPES))
        yield SqliteSaver(conn, serde=serde)
    finally:
        conn.close()


class Session:
    """One thread of the agent graph: start it, send it commands, read it back."""

    def __init__(self, checkpointer: Any, thread_id: str):
        self.thread_id = thread_id
        self.app = build_graph().compile(checkpointer=checkpointer)

    def _config(self, state: AgentState | None = None) -> dict[str, Any]:
        return run_config(state or AgentState(idea="-"), self.thread_id)

    # -- reading ---------------------------------------------------------------------------------
    def state(self) -> AgentState | None:
        values = self.app.get_state(self._config()).values
        return AgentState.model_validate(values) if values else None

    def status(self) -> Status:
        snapshot = self.app.get_state(self._config())
        if not snapshot.values:
            return "new"
        if snapshot.interrupts:
            return "waiting"
        return "interrupted" if snapshot.next else "finished"

    # -- running ---------------------------------------------------------------------------------
    def start(self, initial: AgentState, context: AgentContext) -> AgentState:
        if self.status() != "new":
            raise UserError(
                f"session {self.thread_id!r} already exists",
                hint="send it a message, or pick another --session name",
            )
        return self._invoke(initial, initial, context)

    def send(self, command: dict[str, Any], context: AgentContext) -> AgentState:
        """Resume the paused graph with the person's parsed command; runs until the next pause."""
        from langgraph.types import Command

        current = self.state()
        if current is None or self.status() != "waiting":
            raise UserError(
                f"session {self.thread_id!r} is not waiting for input ({self.status()})",
                hint="start it with an idea first",
            )
        return self._invoke(Command(resume=command), current, context)

    def resume(self, context: AgentContext) -> AgentState:
        """Finish a run that stopped mid-way (the process ended) from its last checkpoint."""
        current = self.state()
        if current is None or self.status() != "interrupted":
            raise UserError(f"session {self.thread_id!r} has no interrupted run to resume")
        return self._invoke(None, current, context)

    def _invoke(self, payload: Any, current: AgentState, context: AgentContext) -> AgentState:
        return state_of(self.app.invoke(payload, self._config(current), context=context))
