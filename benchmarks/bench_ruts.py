"""Rut checks: the cost of judging one new image against a growing history (it must stay flat,
the check is windowed), and images per second for each embedder on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.core import Figure, benchmark, interleaved

HISTORY_SIZES = (10, 100, 1_000, 10_000)
IDEAS = 10  # the history spreads over this many ideas
WIDER = 64  # images of other ideas in the wider window
BASELINE_SIZE = 100  # the smallest history that fills both windows


def _filled_store(folder: Path, size: int, dim: int):
    """A history of `size` images with stored hash-sized vectors, spread over IDEAS ideas."""
    from zit_agent.agent.history import HistoryStore

    store = HistoryStore(folder / f"history-{size}.sqlite")
    rng = np.random.default_rng(size)
    vectors = rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hashes = [f"{size}-{i}" for i in range(size)]
    for i, h in enumerate(hashes):
        store.add_image(f"{h}.png", content_hash=h, idea=f"idea {i % IDEAS}", seed=i)
    store.put_embeddings("hash", dict(zip(hashes, vectors, strict=True)))
    return store


def _check_one(store, new_vector: np.ndarray, thresholds) -> None:
    """What the agent does per new image: read the two windows, judge."""
    from zit_agent.agent.ruts import DEFAULT_WINDOW, judge

    idea = "idea 0"
    window, _ = store.recent_vectors("hash", limit=DEFAULT_WINDOW - 1, idea=idea)
    wider, _ = store.recent_vectors("hash", limit=WIDER, other_than_idea=idea)
    judge(
        np.concatenate([window, new_vector[None]]),
        embedder="hash",
        thresholds=thresholds,
        wider=wider,
    )


@benchmark("rut-check")
def rut_check(quick: bool) -> list[Figure]:
    """Judging one new image against histories of 10 to 10,000 images, against the 100-image
    history: the smallest whose windows are full (target: ratio <= 1.5 at every size). The
    10-image history is cheaper only because its windows are not full yet."""
    from zit_agent.agent.ruts import thresholds_for
    from zit_agent.backends.embedders import HashEmbedder

    dim = HashEmbedder().dim
    thresholds = thresholds_for("hash")
    new_vector = np.ones(dim, dtype=np.float32) / np.sqrt(dim)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: _filled_store(Path(tmp), n, dim) for n in HISTORY_SIZES}
        calls = {n: (lambda s=s: _check_one(s, new_vector, thresholds)) for n, s in stores.items()}
        timings = interleaved(calls, repeats=15 if quick else 60, warmup=3)
        for store in stores.values():
            store.close()
    base = timings[BASELINE_SIZE].median
    return [
        Figure(
            f"rut check, {n:,} stored images",
            t.median * 1000,
            "ms",
            base * 1000,
            f"{BASELINE_SIZE} stored images",
            target="ratio <= 1.5",
            met=t.median / base <= 1.5,
            spread=t.spread,
        )
        for n, t in timings.items()
    ]


def _sketch_images(count: int, size: int):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y, r = rng.uniform(0, size, 3) / [1, 1, 3]
            draw.ellipse(
                [x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3))
            )
        images.append(image)
    return images


def _tiny_dinov2(folder: Path):
    """A random DINOv2 of the real architecture at ViT-S/14 width (384 hidden, 6 layers, 224 px):
    a stand-in for the cost of dinov2-small, whose weights are not on this machine."""
    import torch
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    from zit_agent.backends.embedders import HFVisionEmbedder

    torch.manual_seed(0)
    config = Dinov2Config(
        image_size=224,
        patch_size=14,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
    )
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessorPil(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}
    ).save_pretrained(folder)
    return HFVisionEmbedder.from_pretrained(folder)


@benchmark("embedders")
def embedders(quick: bool) -> list[Figure]:
    """Images per second on CPU for each embedder, on 512x512 images, against the cost of just
    converting and shrinking them (PIL grey + 32x32 resize)."""
    from PIL import Image

    from zit_agent.backends.embedders import HashEmbedder

    images = _sketch_images(16 if quick else 64, 512)

    def shrink_only():
        return [im.convert("L").resize((32, 32), Image.Resampling.BOX) for im in images]

    with tempfile.TemporaryDirectory() as tmp:
        fns = {"shrink": shrink_only, "hash": lambda: HashEmbedder().embed(images)}
        fns["dinov2 (ViT-S/14 size, random)"] = (lambda e: lambda: e.embed(images))(
            _tiny_dinov2(Path(tmp))
        )
        timings = interleaved(fns, repeats=3 if quick else 7)
    rate = {name: len(images) / t.median for name, t in timings.items()}
    return [
        Figure(
            f"embedder {name}",
            rate[name],
            "images/s",
            rate["shrink"],
            "PIL grey + 32x32 resize",
            spread=timings[name].spread,
        )
        for name in fns
        if name != "shrink"
    ]
