"""Atomic file writes: the data goes to a hidden temporary name in the same folder, is synced to
disk, then renamed over the target. A reader never sees half a file, and a killed process leaves at
most a `.NAME.<pid>.<random>.tmp` behind (never the target name)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zit_agent.errors import UserError


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def write_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


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
