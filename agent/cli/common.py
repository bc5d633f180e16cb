"""Helpers shared by the CLI commands: output and option parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from zit_agent.defaults import LIMITS, RENDER
from zit_agent.errors import UserError

MAX_TOKENS_HELP = (
    f"Token budget of the whole sequence (default {RENDER.max_tokens}; up to "
    f"{LIMITS.token_ceiling}; past {LIMITS.warn_tokens} is past Z-Image's training length)."
)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768): width, height."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(
            f"bad size {text!r}", hint="write it as WIDTHxHEIGHT, for example 1024x1024"
        )
    width, height = (int(p) for p in parts)
    return width, height
