"""Writers: a local Qwen3 turns the writer's messages into generated token ids (a `Draft`).

- `LlamaCppWriter` (`gguf:PATH` or `gguf:ORG/REPO/FILE.gguf`): llama.cpp through llama-cpp-python,
  the default.
- `TransformersWriter` (`hf:DIR_OR_REPO`): transformers' `generate()`.
- `EncoderWriter` (`encoder`): the loaded Z-Image model's own text encoder (no second model).
- `FakeWriter`: scripted drafts for tests and agent logic (a fake, no model).

`load_writer(spec)` picks one through the registry (`backends.registry`) and loads it. Heavy
libraries are imported only when a writer loads.
"""

from __future__ import annotations

from typing import Any

from zit_agent.backends.base import Writer
from zit_agent.errors import UserError

SPEC_HINT = "use gguf:PATH, gguf:ORG/REPO/FILE.gguf, hf:DIR_OR_REPO or encoder"
ENCODER_SPEC = "encoder"


def load_writer(
    spec: str,
    *,
    download: bool = False,
    threads: int | None = None,
    backend: Any = None,
    **opts: Any,
) -> Writer:
    """The writer named by `spec`; `opts` go to its `from_pretrained` (e.g. `n_ctx`, `device`,
    `open_think`). `threads`: CPU threads of a llama.cpp writer (default: the physical cores
    free for it, `llama.default_threads`).
    `backend`: the loaded image backend, which the `encoder` writer writes with. A missing model
    raises `ModelNotFoundError` with the way to get it."""
    from zit_agent.backends.registry import factory

    kind, target = parse_spec(spec)
    return factory("writer", kind)(
        target, download=download, threads=threads, backend=backend, **opts
    )


def load_gguf(target: str, *, download: bool, threads: int | None, backend: Any, **opts) -> Writer:
    from zit_agent.backends.writers.llama import LlamaCppWriter

    return LlamaCppWriter.from_pretrained(target, download=download, n_threads=threads, **opts)


def load_hf(target: str, *, download: bool, threads: int | None, backend: Any, **opts) -> Writer:
    from zit_agent.backends.writers.hf import TransformersWriter

    return TransformersWriter.from_pretrained(target, download=download, **opts)


def load_encoder(target: str, *, download: bool, threads: int | None, backend: Any, **opts):
    from zit_agent.backends.writers.encoder import EncoderWriter

    return EncoderWriter.from_backend(backend, open_think=opts.get("open_think", False))


def parse_spec(spec: str) -> tuple[str, str]:
    """`KIND:X` -> (kind, X) for a registered writer kind; a bare `*.gguf` path is a gguf spec;
    `encoder` -> ("encoder", "")."""
    from zit_agent.backends.registry import registered

    if spec.strip().lower() == ENCODER_SPEC:
        return ENCODER_SPEC, ""
    kind, _, target = spec.partition(":")
    if not target and spec.endswith(".gguf"):
        kind, target = "gguf", spec
    if not target.strip():
        raise UserError(f"bad writer spec {spec!r}", hint=SPEC_HINT)
    if kind not in registered("writer"):
        raise UserError(f"unknown writer kind {kind!r} in {spec!r}", hint=SPEC_HINT)
    return kind, target
