"""Atomic file writes: the data goes to a hidden temporary name in the same folder, is synced to
disk, then renamed over the target. A reader never sees half a file, and a killed process leaves at
most a `.NAME.<pid>.<random>.tmp` behind (never the target name)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
