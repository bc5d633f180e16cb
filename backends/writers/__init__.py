"""Writers: a local Qwen3 turns the writer's messages into generated token ids (a `Draft`).

- `LlamaCppWriter` (`gguf:PATH` or `gguf:ORG/REPO/FILE.gguf`): llama.cpp through llama-cpp-python,
  the default.
- `TransformersWriter` (`hf:DIR_OR_REPO`): transformers' `generate()`.
- `FakeWriter`: scripted drafts for tests and agent logic (a fake, no model).

`load_writer(spec)` picks and loads one. Heavy libraries are imported only when a writer loads.
"""

from __future__ import annotations

from typing import Any

from zit_agent.backends.base import Writer
from zit_agent.errors import UserError

SPEC_HINT = "use gguf:PATH, gguf:ORG/REPO/FILE.gguf or hf:DIR_OR_REPO"


def load_writer(
    spec: str, *, download: bool = False, threads: int | None = None, **opts: Any
) -> Writer:
    """The writer named by `spec`; `opts` go to its `from_pretrained` (e.g. `n_ctx`, `device`,
    `open_think`). `threads`: CPU threads of a llama.cpp writer (default: the physical cores
    free for it, `llama.default_threads`). A missing model raises `ModelNotFoundError` with the
    way to get it."""
    kind, target = parse_spec(spec)
    if kind == "gguf":
        from zit_agent.backends.writers.llama import LlamaCppWriter

        return LlamaCppWriter.from_pretrained(target, download=download, n_threads=threads, **opts)
    from zit_agent.backends.writers.hf import TransformersWriter

    return TransformersWriter.from_pretrained(target, download=download, **opts)


def parse_spec(spec: str) -> tuple[str, str]:
    """`gguf:X` or `hf:X` -> (kind, X); a bare `*.gguf` path is a gguf spec."""
    kind, _, target = spec.partition(":")
    if not target and spec.endswith(".gguf"):
        kind, target = "gguf", spec
    if not target.strip():
        raise UserError(f"bad writer spec {spec!r}", hint=SPEC_HINT)
    if kind not in ("gguf", "hf"):
        raise UserError(f"unknown writer kind {kind!r} in {spec!r}", hint=SPEC_HINT)
    return kind, target
