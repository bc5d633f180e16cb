"""Text the writer reads: instruction files shipped as package data, versioned by content hash."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from pydantic import BaseModel

from zit_agent.errors import UserError


class Instruction(BaseModel):
    name: str
    text: str
    sha256: str

    @property
    def version(self) -> str:
        """Short content hash, recorded in provenance."""
        return self.sha256[:12]


def available() -> list[str]:
    return sorted(
        p.name[:-3] for p in resources.files(__package__).iterdir() if p.name.endswith(".md")
    )


@cache
def load(name: str) -> Instruction:
    """The instruction `prompts/<name>.md`."""
    path = resources.files(__package__) / f"{name}.md"
    if not path.is_file():
        raise UserError(
            f"unknown instruction {name!r}", hint=f"use one of {', '.join(available())}"
        )
    text = path.read_text(encoding="utf-8")
    return Instruction(name=name, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def data_path(name: str):
    """A data file of this package (for example `axes.yaml`)."""
    return resources.files(__package__) / name
