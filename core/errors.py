"""The project's exceptions, by kind.

Library code raises these without naming command-line flags: a hint names an option by its
declared name in braces (`"raise {max_tokens}"`), and each front end writes that name its own way
(the CLI as `--max-tokens`, the HTTP API as `max_tokens`). Front ends map the kinds to what they
answer: the CLI to one line on stderr and an exit code, the server to an HTTP status.

| kind | class | CLI exit code |
| --- | --- | --- |
| invalid input (a bad value, a bad file) | `InvalidInput` (alias `UserError`) | 2 |
| model not found | `ModelNotFoundError` | 2 |
| resource exhausted (out of memory, disk full) | `ResourceExhausted` | 3 |
| draft failed (the writer produced no usable draft) | `DraftFailed` | 4 |
| busy (a session or run folder in use) | `Busy` | 2 |
| internal (a bug) | `InternalError`, or any other exception | 70 |
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from typing import ClassVar

OPTION_NAME = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class ZitError(Exception):
    """Base of the project's errors. `str(err)` names the problem; `hint` says how to fix it."""

    kind: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 70

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self, option_name: Callable[[str], str] = str) -> str:
        """The message and hint on one line, each `{option}` mark written with `option_name`."""

        def named(text: str) -> str:
            return OPTION_NAME.sub(lambda m: option_name(m.group(1)), " ".join(text.split()))

        text = named(str(self))
        return f"{text} ({named(self.hint)})" if self.hint else text


class InvalidInput(ZitError):
    """Bad input or a bad file: something the person running zit can fix."""

    kind = "invalid input"
    exit_code = 2


UserError = InvalidInput  # the name most of the code uses


class ModelNotFoundError(InvalidInput):
    """Model files (weights, tokenizer, GGUF) that are not on this machine."""

    kind = "model not found"


class ResourceExhausted(ZitError):
    """Out of memory (CPU or GPU) or out of disk: the input may be fine, the machine is not."""

    kind = "resource exhausted"
    exit_code = 3


class DraftFailed(ZitError):
    """The writer produced no usable draft, even after its retries."""

    kind = "draft failed"
    exit_code = 4


class Busy(InvalidInput):
    """Something another process holds (a chat session mid-turn, an eval run folder): the same
    exit code as bad input, since waiting or choosing another name fixes it."""

    kind = "busy"


class InternalError(ZitError):
    """A bug: something that should not happen whatever the input."""


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# SQLite's messages (sqlite3 carries no errno): a full disk, and a file that is not (or no longer)
# a database.
SQLITE_FULL = ("database or disk is full",)
SQLITE_DAMAGED = ("database disk image is malformed", "file is not a database")


def as_zit_error(exc: BaseException) -> ZitError | None:
    """The kind of a foreign exception, when it has one we know: out of memory (torch's CUDA
    out-of-memory, `MemoryError`), disk full or file too large (SQLite's too), a damaged SQLite
    database. None: not ours to classify."""
    if isinstance(exc, ZitError):
        return exc
    if type(exc).__module__ == "sqlite3" or type(exc).__name__.endswith("DatabaseError"):
        text = str(exc).strip().lower()
        if text.startswith(SQLITE_FULL):
            return ResourceExhausted(
                f"no space left for a database write: {exc}",
                hint="free some disk space, or point ZIT_HOME at a disk with room",
            )
        if text.startswith(SQLITE_DAMAGED):
            return InvalidInput(
                f"a zit database is damaged: {exc}",
                hint="move history.sqlite or sessions.sqlite under ZIT_HOME aside (what it "
                "recorded is lost) and run again",
            )
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        first = (str(exc).strip().splitlines() or ["out of memory"])[0]
        return ResourceExhausted(
            f"out of memory: {first[:200]}",
            hint="render smaller images or fewer at a time ({size}, {batch}), or offload models "
            "to the CPU ({cpu_offload})",
        )
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = f" writing {exc.filename}" if exc.filename else ""
        return ResourceExhausted(
            f"no space left{where}: {exc.strerror}", hint="free some disk space or write elsewhere"
        )
    return None
