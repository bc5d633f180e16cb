"""Rut checks: the cost of judging one new image against a growing history (it must stay flat
in every layout: the windows are read from an index), `zit ruts` on a growing folder of 1024x1024
PNGs (flat memory, flat time per image), and images per second for each embedder on CPU."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.core import Figure, benchmark, interleaved, paired, spread_of

HISTORY_SIZES = (1_000, 10_000, 100_000)
IDEAS = 10  # the history spreads over this many ideas
OLDEST = 500  # the oldest images, ideas taking turns: they fill every window in every layout
VECTOR_DIM = 64  # small stored vectors keep 100k-image stores quick to build; reads are alike
LAYOUTS = ("interleaved", "one idea newest", "other embedder newest")


def _filled_store(folder: Path, size: int, layout: str):
    """A history of `size` images over IDEAS ideas with stored vectors, in one of the layouts
    that once made a window slow: ideas taking turns; all but the OLDEST images of the idea
    being judged (its wider window lies behind them all); all but the OLDEST embedded only by
    another embedder."""
    from zit_agent.agent.history import HistoryStore

    store = HistoryStore(folder / f"history-{layout.replace(' ', '-')}-{size}.sqlite")
    rng = np.random.default_rng(size)
    vectors = rng.standard_normal((size, VECTOR_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def idea(i: int) -> str:
        return "idea 0" if layout == "one idea newest" and i >= OLDEST else f"idea {i % IDEAS}"

    hashes = [f"{size}-{i}" for i in range(size)]
    store.add_images(
        [{"path": f"{h}.png", "content_hash": h, "idea": idea(i), "seed": i}
         for i, h in enumerate(hashes)]
    )  # fmt: skip
    by_hash = dict(zip(hashes, vectors, strict=True))
    if layout == "other embedder newest":
        store.put_embeddings("other", dict(list(by_hash.items())[OLDEST:]))
        by_hash = dict(list(by_hash.items())[:OLDEST])
    store.put_embeddings("hash", by_hash)
    return store


def _check_one(store, new_vector: np.ndarray, thresholds) -> None:
    """What the agent does per new image: read the idea's window and the wider one, judge."""
    from zit_agent.agent.ruts import judge
    from zit_agent.defaults import AGENT

    idea = "idea 0"
    window, _ = store.recent_vectors("hash", limit=AGENT.window - 1, idea=idea)
    wider, _ = store.recent_vectors("hash", limit=AGENT.wider_window, other_than_idea=idea)
    judge(
        np.concatenate([window, new_vector[None]]),
        embedder="hash",
        thresholds=thresholds,
        wider=wider,
    )


@benchmark("rut-check")
def rut_check(quick: bool) -> list[Figure]:
    """Judging one new image (the idea's window and the wider window, as the agent reads them)
    against histories of 1,000 to 100,000 images in three layouts, each against its own
    1,000-image history (target: ratio <= 1.5 at every size)."""
    from zit_agent.agent.ruts import thresholds_for

    thresholds = thresholds_for("hash")
    new_vector = np.ones(VECTOR_DIM, dtype=np.float32) / np.sqrt(VECTOR_DIM)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {(layout, n): _filled_store(Path(tmp), n, layout)
                  for layout in LAYOUTS for n in HISTORY_SIZES}  # fmt: skip
        calls = {key: (lambda s=s: _check_one(s, new_vector, thresholds))
                 for key, s in stores.items()}  # fmt: skip
        timings = interleaved(calls, repeats=15 if quick else 60, warmup=3)
        for store in stores.values():
            store.close()
    smallest = HISTORY_SIZES[0]
    figures = []
    for (layout, n), t in timings.items():
        base = timings[(layout, smallest)].median
        figures.append(Figure(
            f"rut check, {layout}, {n:,} stored images", t.median * 1000, "ms", base * 1000,
            f"{smallest:,} stored, same layout", target="ratio <= 1.5",
            met=t.median / base <= 1.5, spread=t.spread,
        ))  # fmt: skip
    return figures


# -- zit ruts on a folder -------------------------------------------------------------------------
FOLDER_SIZES = (200, 2_000)
FOLDER_SIDE = 1024
FOLDER_BASES = 16  # distinct pictures; every file is made distinct by a text chunk of its own
PEAK_TARGET_MB = 600


def _png_folder(folder: Path, count: int, bases: list[bytes]) -> Path:
    """`count` distinct PNG files (distinct bytes, so each is hashed, decoded and embedded): the
    base pictures in turn, each file with its own text chunk right after the header."""
    import struct
    import zlib

    folder.mkdir(parents=True)
    header_end = 8 + 25  # signature + IHDR chunk
    for i in range(count):
        data = b"n\0" + str(i).encode()
        chunk = struct.pack(">I", len(data)) + b"tEXt" + data
        chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data))
        base = bases[i % len(bases)]
        (folder / f"ComfyUI_{i:05d}_.png").write_bytes(
            base[:header_end] + chunk + base[header_end:]
        )
    return folder


def _ruts_runs(root: Path, count: int, bases: list[bytes], repeats: int):
    """`zit ruts FOLDER --json` in fresh processes with fresh homes (so every image is embedded)."""
    import sys

    from benchmarks.bench_memory import measure

    folder = _png_folder(root / f"in-{count}", count, bases)
    runs = []
    for n in range(repeats):
        home = root / f"home-{count}-{n}"
        env = {**os.environ, "ZIT_HOME": str(home), "ZIT_CONFIG": os.devnull,
               "HF_HUB_OFFLINE": "1"}  # fmt: skip
        cmd = [sys.executable, "-m", "zit_agent.agent", "ruts", str(folder), "--json"]
        runs.append(measure(cmd, env, root))
    return runs


@benchmark("ruts-folder")
def ruts_folder(quick: bool) -> list[Figure]:
    """`zit ruts` on folders of 200 and 2,000 1024x1024 PNGs (sketch pictures: flat colour, so
    small files; each is decoded in full all the same), fresh processes and homes: peak RSS
    (target under 600 MB at 2,000) and CPU seconds per image beyond a 2-image run (target: at
    2,000 within 1.2x of 200). CPU time, because on a shared machine the wall time of a long run
    moves with the other work; wall time is in `extra`."""
    import io
    import statistics

    repeats = 1 if quick else 3
    bases = []
    for image in _sketch_images(FOLDER_BASES, FOLDER_SIDE):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        bases.append(buffer.getvalue())
    with tempfile.TemporaryDirectory(prefix="zit-bench-ruts-") as tmp:
        root = Path(tmp)
        fixed = _ruts_runs(root, 2, bases, repeats)
        runs = {n: _ruts_runs(root, n, bases, repeats) for n in FOLDER_SIZES}
    fixed_cpu = statistics.median(r.cpu_s for r in fixed)
    fixed_wall = statistics.median(r.seconds for r in fixed)
    per_image = {n: [(r.cpu_s - fixed_cpu) / n for r in rs] for n, rs in runs.items()}
    wall = {n: [(r.seconds - fixed_wall) / n for r in rs] for n, rs in runs.items()}
    peak = {n: [r.peak_mb for r in rs] for n, rs in runs.items()}
    small, large = FOLDER_SIZES
    figures = []
    for n in FOLDER_SIZES:
        figures.append(Figure(
            f"zit ruts, {n:,} PNGs of {FOLDER_SIDE}x{FOLDER_SIDE}: peak RSS",
            statistics.median(peak[n]), "MB", statistics.median(peak[small]),
            f"{small:,} PNGs", target=f"< {PEAK_TARGET_MB} MB",
            met=statistics.median(peak[n]) < PEAK_TARGET_MB, spread=spread_of(peak[n]),
            extra={"repeats": repeats, "bytes_per_file": round(statistics.mean(map(len, bases)))},
        ))  # fmt: skip
    cpu_ms = {n: statistics.median(v) * 1000 for n, v in per_image.items()}
    figures.append(Figure(
        f"zit ruts, CPU ms per image at {large:,} PNGs", cpu_ms[large], "ms", cpu_ms[small],
        f"{small:,} PNGs", target="ratio <= 1.2", met=cpu_ms[large] <= 1.2 * cpu_ms[small],
        spread=spread_of(per_image[large]),
        extra={"wall_ms_per_image": {n: round(statistics.median(v) * 1000, 1)
                                     for n, v in wall.items()},
               "two_image_run": {"cpu_s": round(fixed_cpu, 2), "wall_s": round(fixed_wall, 2)},
               "repeats": repeats},
    ))  # fmt: skip
    return figures


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


def _face_photos(size: int) -> list:
    """The tests' real photographs (tests/backends/data/faces), each scaled onto a size x size
    canvas: one face per image, as a portrait render would show it."""
    from PIL import Image, ImageOps

    folder = Path(__file__).resolve().parents[1] / "tests" / "backends" / "data" / "faces"
    images = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as photo:
            images.append(ImageOps.pad(photo.convert("RGB"), (size, size), color=(128, 128, 128)))
    return images


@benchmark("faces")
def faces(quick: bool) -> list[Figure]:
    """Face analysis (HOG detector on a 640 px copy, 5 landmarks, 128-d descriptor) per
    1024x1024 image on CPU, run in turn with the hash embedder on the same images (the paired
    ratio: how many hash embeddings one face analysis costs). Model loading excluded (once per
    process, about a second)."""
    from zit_agent.backends.analyzers import faces_unavailable, load_faces
    from zit_agent.backends.embedders import HashEmbedder

    if (why := faces_unavailable()) is not None:
        raise RuntimeError(why)
    images = _face_photos(1024)
    analyzer, embedder = load_faces(), HashEmbedder()
    fns = {"faces": lambda: analyzer.analyze(images), "hash": lambda: embedder.embed(images)}
    timings = interleaved(fns, repeats=3 if quick else 7)
    per_image = {name: 1000 * t.median / len(images) for name, t in timings.items()}
    ratio = paired(timings["faces"], timings["hash"])
    return [
        Figure(
            "face analysis, 1024x1024 image",
            per_image["faces"],
            "ms/image",
            per_image["hash"],
            "hash embedder, same images",
            spread=timings["faces"].spread,
            paired_ratio=ratio.median,
        )
    ]
