"""The sessions database: LangGraph threads checkpointed in SQLite under `ZIT_HOME`
(`settings.sessions_db`). Chat sessions (`zit_agent.agent.chat`) and `zit generate` runs are
threads in it.

Only the agent's own state classes are revived from a checkpoint (an allowlist); anything else
comes back as plain data, which `AgentState` validates again. That is also how sessions saved by
zit-agent 0.1 (whose classes lived in a top-level `agent.state` module) still open: their objects
come back as data and validate into today's classes, and no module named `agent` is imported.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from zit_agent.agent import commands
from zit_agent.agent import state as state_module
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver

STATE_TYPES = (
    state_module.AgentState,
    state_module.Attempt,
    state_module.ChatTurn,
    state_module.Description,
    state_module.Lever,
    state_module.RenderKnobs,
    state_module.Scores,
    state_module.Shot,
    state_module.Splice,
    state_module.WriterRut,
    *get_args(get_args(commands.GraphCommand)[0]),  # the commands a turn resumes with
)


@contextlib.contextmanager
def open_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    """LangGraph's SQLite checkpointer on `path` (WAL, so two processes can share it)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as err:
        raise UserError(
            f"the sessions database {path} is unreadable: {err}",
            hint="move it aside (sessions in it are lost) or restore it from a backup",
        ) from None
    try:
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: no fsync per checkpoint, still safe
        serde = JsonPlusSerializer(allowed_msgpack_modules=list(STATE_TYPES))
        saver = SqliteSaver(conn, serde=serde)
        _check_sessions_schema(saver, path)
        yield saver
    finally:
        conn.close()


def _check_sessions_schema(saver: SqliteSaver, path: Path) -> None:
    """The database holds LangGraph's checkpoint tables (made here when new): scrambled pages
    or a foreign database under the same name are one line that names the file."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from zit_agent.agent.history import integrity_fault, schema_fault, table_columns

    hint = "move it aside (sessions in it are lost) or restore it from a backup"
    try:
        if damaged := integrity_fault(saver.conn, path):
            raise UserError(f"the sessions database {path} is damaged: {damaged}", hint=hint)
        saver.setup()
        reference = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            SqliteSaver(reference).setup()
            expected = table_columns(reference)
        finally:
            reference.close()
        fault = schema_fault(saver.conn, expected)
    except sqlite3.DatabaseError as err:
        raise UserError(f"the sessions database {path} is damaged: {err}", hint=hint) from None
    if fault:
        raise UserError(f"the sessions database {path} is not zit's: {fault}", hint=hint)


def thread_names(saver: SqliteSaver, prefix: str) -> list[str]:
    """The names of the threads `prefix:NAME` in the sessions database (e.g. `chat` sessions),
    most recently checkpointed first."""
    with saver.cursor(transaction=False) as cur:
        rows = cur.execute(
            "SELECT thread_id, MAX(rowid) AS last FROM checkpoints WHERE thread_id LIKE ? "
            "GROUP BY thread_id ORDER BY last DESC",
            (prefix.replace("%", "") + ":%",),
        ).fetchall()
    return [row[0].partition(":")[2] for row in rows]
