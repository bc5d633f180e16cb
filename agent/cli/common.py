"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# Parameters several commands share, declared once.
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
OutDir = Annotated[Path | None, typer.Option(help="Output folder (default: ZIT_HOME/outputs).")]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
