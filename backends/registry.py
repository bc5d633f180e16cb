"""Where each kind of backend is registered: writers, image backends, embedders and analyzers.

A registration is a name and a `"module:attribute"` path to a factory, imported only when that
backend is used (so `zit --help` imports no model library, and no module imports a backend it does
not run). The built-ins register below; other packages add their own through entry points in the
groups `zit_agent.writers`, `zit_agent.image_backends`, `zit_agent.embedders` and
`zit_agent.analyzers`, in the style of
simonw/llm's plugins:

    [project.entry-points."zit_agent.image_backends"]
    mybackend = "my_package.backend:load"

Factories take keyword arguments only:
- writers: `factory(target, *, download, threads, backend)` for a spec `KIND:TARGET` (`backend`:
  the loaded image backend, for a writer that shares its model);
- image backends: `factory(*, model, tokenizer, download, **model_options)` returning
  `(backend, tokenizer)` (the tokenizer of the encoder the backend feeds); a factory may carry
  a `check(render_options)` attribute, what the backend's `check` does without a model, so a
  request it would refuse fails before the model loads (`preload_check`), and an `options`
  attribute, the loader keywords it takes (`loader_options`; none when absent);
- embedders: `factory(target, *, settings)` for a spec `NAME` or `NAME:TARGET`;
- analyzers: `factory(target, *, settings)` likewise (`backends.analyzers.Analyzer`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from zit_agent.errors import UserError

WRITERS: dict[str, str] = {
    "gguf": "zit_agent.backends.writers:load_gguf",
    "hf": "zit_agent.backends.writers:load_hf",
    "encoder": "zit_agent.backends.writers:load_encoder",  # the loaded Z-Image's own encoder
}
IMAGE_BACKENDS: dict[str, str] = {
    "zimage": "zit_agent.backends.zimage:load_backend",
    # A stand-in renderer for tests and the demo (not an image model); it lives with the tiny models.
    "sketch": "zit_agent.backends.tiny.sketch:load_backend",
}
EMBEDDERS: dict[str, str] = {
    "hash": "zit_agent.backends.embedders:load_hash",
    "hf": "zit_agent.backends.embedders:load_hf",
    "dreamsim": "zit_agent.backends.embedders:load_dreamsim",
}
ANALYZERS: dict[str, str] = {
    "faces": "zit_agent.backends.analyzers:load_faces",
}
GROUPS = {
    "writer": ("zit_agent.writers", WRITERS),
    "image backend": ("zit_agent.image_backends", IMAGE_BACKENDS),
    "embedder": ("zit_agent.embedders", EMBEDDERS),
    "analyzer": ("zit_agent.analyzers", ANALYZERS),
}


@cache
def registered(kind: str) -> dict[str, str]:
    """The built-ins of `kind` plus those that installed packages register."""
    group, builtins = GROUPS[kind]
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    return {**found, **builtins}  # a plugin cannot replace a built-in


def factory(kind: str, name: str) -> Callable[..., Any]:
    table = registered(kind)
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}", hint=f"use one of {', '.join(table)}")
    module, _, attribute = table[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def preload_check(name: str) -> Callable[[Any], None] | None:
    """The render-option check image backend `name` runs before its model loads (its factory's
    `check`), or None when it declares none (its loaded `check` still runs at render)."""
    return getattr(factory("image backend", name), "check", None)


def loader_options(name: str) -> tuple[str, ...]:
    """The loader keywords image backend `name` declares it takes (dtype, device, ...): its
    factory's `options`; a backend that declares none takes none."""
    return tuple(getattr(factory("image backend", name), "options", ()))
