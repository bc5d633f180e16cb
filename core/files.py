"""Files zit writes, written safely.

- Atomic writes: the data goes to a hidden temporary name in the same folder, is synced to disk,
  then renamed over the target. A reader never sees half a file, and a killed process leaves at
  most a `.NAME.<pid>.<random>.tmp` behind (never the target name). The temporary file is created
  new, never opened through a symbolic link or over an existing file.
- Journals: `append_line` adds one record, a line, to a file in one write. A crash can cut only
  the last line short; the next append closes it first, so a reader that skips lines that do not
  parse sees each record whole or not at all.
- Output folders: zit writes only into a folder it made. `claim_folder` marks a new or empty folder
  with `.zit-folder.json` and refuses a non-empty one without that mark, so a user's files are
  never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from zit_agent.errors import UserError

FOLDER_MARKER = ".zit-folder.json"
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def create_new(path: str | Path) -> BinaryIO:
    """`path` created and opened for writing: fails if anything exists there, a symbolic link
    included, so no file elsewhere is ever written through it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o666)
    return os.fdopen(fd, "wb")


def open_plain(path: str | Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A file descriptor of the plain file at `path` (created when `flags` say so), never opened
    through a symbolic link: a link there is refused, and its target left untouched."""
    try:
        return os.open(path, flags | _NO_FOLLOW, 0o666)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise UserError(
            f"{path} is a symbolic link, not a file zit made",
            hint="remove the link; its target is left as it is",
        ) from None


@contextlib.contextmanager
def exclusive_lock(path: str | Path, busy: Exception) -> Iterator[None]:
    """Hold `path` as a lock for one process at a time, or raise `busy`. An advisory lock the OS
    drops when the holder dies (a killed process never leaves it locked); the lock file is a plain
    file, opened without following symbolic links and never truncated."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = open_plain(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes, *, sync: bool = True) -> Path:
    """`data` at `path`, all or nothing. `sync=False` skips the fsync: a crash of the machine
    may then lose the file (never leave a part of it under its name); for records that are
    checked when read and redone when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with create_new(tmp) as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)  # a link at `path` is replaced, never followed
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str, *, sync: bool = True) -> Path:
    return write_atomic(path, text.encode("utf-8"), sync=sync)


def write_json_atomic(
    path: str | Path, data: Any, *, sync: bool = True, indent: int | None = 2
) -> Path:
    text = json.dumps(data, ensure_ascii=False, indent=indent) + "\n"
    return write_text_atomic(path, text, sync=sync)


def append_line(path: str | Path, line: bytes) -> None:
    """`line` (one line, ending in a newline) appended to the plain file at `path`, made when
    missing. A last line a crash cut short is ended first, so it stays one unreadable line and
    never glues onto this one. Not synced: for records that are checked when read and redone
    when missing."""
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        raise ValueError("append_line takes exactly one line, ending in a newline")
    fd = open_plain(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:  # a regular file takes it whole, short of a full disk
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


# -- folders -------------------------------------------------------------------------------------
def check_home(path: str | Path) -> Path:
    """ZIT_HOME checked without creating anything: a folder, or a path where one can be made.

    Meant for start-up, before any model loads: a home that is a file is then one line, not a
    traceback after the first render.
    """
    return _check_folder_path(
        Path(path),
        "ZIT_HOME",
        hint="point ZIT_HOME at a folder, or unset it to use the default one",
    )


def check_dir(path: str | Path, what: str) -> Path:
    """`path` as a writable folder, made when missing; a `UserError` names what is in the way."""
    path = _check_folder_path(Path(path), what, hint="choose a folder you can write to")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create {what} {path}: {err.strerror or err}",
            hint="choose a folder you can write to",
        ) from None
    return path


def _check_folder_path(path: Path, what: str, hint: str) -> Path:
    """The nearest existing one of `path` and its parents must be a writable folder."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return path
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise UserError(f"{what} {path} {where}, not a folder", hint=hint)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable", hint=hint)
    return path


# -- output folders ------------------------------------------------------------------------------
def folder_marker(root: str | Path) -> dict[str, Any] | None:
    """What zit recorded when it made `root` (at least `kind`), or None: not a folder of zit's."""
    try:
        data = json.loads((Path(root) / FOLDER_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def mark_folder(root: str | Path, kind: str, **details: Any) -> dict[str, Any]:
    marker = {"kind": kind, **details}
    write_json_atomic(Path(root) / FOLDER_MARKER, marker)
    return marker


def claim_folder(
    root: str | Path, kind: str, *, adopt: bool = False, **details: Any
) -> dict[str, Any]:
    """Take `root` for zit's `kind` output and return its marker. A new or empty folder is marked
    now (with `details`), and so is any folder when `adopt`; a folder marked `kind` is taken as it
    is. Anything else is refused: a file, a folder of another kind, a non-empty unmarked folder."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} is a file, not a folder", hint="choose a folder for the output")
    marker = folder_marker(root)
    if marker is None:
        if not adopt and _holds_files(root):
            raise UserError(
                f"{root} is not empty and holds no zit {kind}",
                hint="choose a new or empty folder: zit writes only into folders it made",
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {root}: {err.strerror}") from None
        return mark_folder(root, kind, **details)
    if marker["kind"] != kind:
        raise UserError(
            f"{root} holds a zit {marker['kind']}, not a zit {kind}",
            hint="choose another folder",
        )
    return marker


def _holds_files(root: Path) -> bool:
    """Whether `root` holds anything but the temporary file of an interrupted marker write."""
    stray = f".{FOLDER_MARKER}."
    try:
        return any(
            not (p.name.startswith(stray) and p.name.endswith(".tmp")) for p in root.iterdir()
        )
    except FileNotFoundError:
        return False
    except OSError as err:
        raise UserError(f"cannot read {root}: {err.strerror}") from None
