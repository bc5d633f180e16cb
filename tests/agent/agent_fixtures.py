"""Shared parts for the agent tests (graph, escape, chat, demo, generate): a run context with the
fake writer or no writer, the sketch renderer, the hash embedder and a history store; tiny models
built once per test session.

Not a conftest (tests/agent/ is shared): test modules import what they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zit_agent.agent.nodes import AgentContext
from zit_agent.agent.state import AgentState, RenderKnobs
from zit_agent.backends.base import ImageBackend

IDEA = "a portrait of a woman in a cafe"
SIZE = 128
_BUILT: dict[str, Path] = {}


def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny random Qwen3 GGUF writer, built once per test session."""
    if "gguf" not in _BUILT:
        from zit_agent.backends.tiny.qwen3 import build_tiny_qwen3_gguf

        _BUILT["gguf"] = build_tiny_qwen3_gguf(tmp_path_factory.mktemp("writer") / "tiny.gguf")
    return _BUILT["gguf"]


def tiny_zimage(tmp_path_factory) -> Path:
    """A tiny random Z-Image diffusers folder, built once per test session."""
    if "zimage" not in _BUILT:
        from zit_agent.backends.tiny.zimage import build_tiny_zimage

        _BUILT["zimage"] = build_tiny_zimage(tmp_path_factory.mktemp("zimage"))
    return _BUILT["zimage"]


class EventLog(list):
    """An `on_event` that keeps (kind, data) pairs."""

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.append((kind, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self]


def sketch_context(tokenizer, out: Path, *, writer=None, backend=None, store=None) -> AgentContext:
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.run import Runner
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend

    runner = Runner.from_parts(
        tokenizer, backend or SketchBackend(tokenizer), writer=writer, embedder=HashEmbedder()
    )
    return AgentContext(
        runner=runner,
        out_dir=out / "images",
        base_options=RenderOptions(width=SIZE, height=SIZE),
        store=store or HistoryStore(out / "history.sqlite"),
        on_event=EventLog(),
    )


def initial_state(**overrides: Any) -> AgentState:
    values: dict[str, Any] = {
        "idea": IDEA,
        "shape": "plain",
        "n": 4,
        "seed": 0,
        "max_attempts": 5,
        "run_id": "test",
        "knobs": RenderKnobs(width=SIZE, height=SIZE),
    }
    return AgentState(**{**values, **overrides})


class ConstantBackend(ImageBackend):
    """A fake image backend (tests only): the same image whatever it is asked, so every attempt
    is a rut. It records the options of each call."""

    name = "constant"

    def __init__(self):
        self.calls: list[tuple[list[int], list[int], Any]] = []

    def render(self, token_ids, seeds, options):
        from PIL import Image

        from zit_agent.backends.base import RenderedImage

        self.calls.append((list(token_ids), list(seeds), options))
        image = Image.linear_gradient("L").resize((options.width, options.height)).convert("RGB")
        return [RenderedImage(image=image, seed=s, record={"seed": s}) for s in seeds]


def sketch_runner(tokenizer, *, backend=None, writer=None):
    """The run API over ready parts: the sketch renderer (or `backend`), the hash embedder."""
    from zit_agent.agent.run import Parts, PartsSpec, Runner
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend
    from zit_agent.settings import load_settings

    parts = Parts(
        PartsSpec(backend="sketch"), tokenizer, backend or SketchBackend(tokenizer), writer,
        HashEmbedder(),
    )  # fmt: skip
    return Runner(load_settings(), parts)
