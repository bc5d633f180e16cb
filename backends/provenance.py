"""Provenance on every image: what made it, inside the PNG and in a JSON file beside it.

A PNG written by `save_image` carries two text chunks:
- `zit`: the JSON record (see `RECORD_KEYS`), read back with `read_record`;
- `parameters`: an A1111-style summary, so common image tools (A1111, ComfyUI, Civitai, exiftool)
  show the prompt and settings.

The same record is written as `<name>.json` beside the image. Both files are written atomically: a
hidden temporary file in the same folder, then a link to the final name, which fails instead of
overwriting when that name was taken meanwhile. Names are never reused (`stem`, `stem-1`, ...).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import time
import zlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.files import temp_path, write_atomic

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.backends.base import RenderedImage

RECORD_CHUNK = "zit"
PARAMETERS_CHUNK = "parameters"
RECORD_KEYS = (
    "idea",
    "text",
    "token_count",
    "token_sha256",
    "seed",
    "width",
    "height",
    "steps",
    "guidance",
    "layer",
    "sampler",
    "shift",
    "lora",
    "lora_strength",
    "noise",
    "model",
    "model_revision",
    "writer",
    "versions",
    "timings",
)
VERSIONED_PACKAGES = ("zit-agent", "torch", "diffusers", "transformers", "peft")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT_BYTES = 1 << 24  # an inflated text chunk (a record is a few kB)


def token_sha256(ids: list[int]) -> str:
    """A stable hash of a token-id sequence (the ids as comma-separated decimal text)."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


@functools.cache
def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def a1111_parameters(record: dict[str, Any]) -> str:
    """The record as A1111's `parameters` text: prompt, optional negative prompt, settings line."""
    prompt = record.get("text") or record.get("idea") or ""
    settings = {
        "Steps": record.get("steps"),
        "Sampler": record.get("sampler"),
        "CFG scale": record.get("guidance"),
        "Seed": record.get("seed"),
        "Size": f"{record.get('width')}x{record.get('height')}",
        "Model": record.get("model"),
        "Shift": record.get("shift"),
        "Text encoder layer": record.get("layer"),
    }
    if record.get("lora"):
        settings["Lora"] = f"{Path(record['lora']).name}:{record.get('lora_strength')}"
    noise = record.get("noise")
    if noise and noise.get("strength"):
        settings["Conditioning noise"] = noise["strength"]
    line = ", ".join(f"{k}: {_a1111_value(v)}" for k, v in settings.items() if v is not None)
    lines = [prompt]
    if record.get("negative_text"):
        lines.append(f"Negative prompt: {record['negative_text']}")
    lines.append(line)
    return "\n".join(lines)


def _a1111_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if "," in text or ":" in text else text


def save_image(image: Image.Image, record: dict[str, Any], out_dir: Path, stem: str) -> Path:
    """Write `image` as `<out_dir>/<stem>[-N].png` with `record` inside and beside it.

    Returns the PNG's path. Never overwrites: the first free name is taken.
    """
    from PIL import PngImagePlugin

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECORD_CHUNK, json.dumps(record, ensure_ascii=False, sort_keys=True))
    info.add_itxt(PARAMETERS_CHUNK, a1111_parameters(record))
    json_bytes = (json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()

    png_tmp = temp_path(out_dir / f"{stem}.png")
    try:
        with open(png_tmp, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=info)
            fh.flush()
            os.fsync(fh.fileno())
        png_path = _link_to_free_name(png_tmp, out_dir, stem)
    finally:
        png_tmp.unlink(missing_ok=True)
    write_atomic(png_path.with_suffix(".json"), json_bytes)
    return png_path


def save_rendered(
    rendered: list[RenderedImage],
    out_dir: Path,
    *,
    idea: str | None,
    writer: dict[str, Any] | None = None,
    prefix: str | None = None,
) -> list[Path]:
    """Save a backend's images with their records completed by what the caller knows (the idea,
    the writer). Names: `<time>-<idea slug>-s<seed>.png`."""
    prefix = prefix or time.strftime("%Y%m%d-%H%M%S")
    paths = []
    for item in rendered:
        record = {**item.record, "idea": idea, "writer": writer, "seed": item.seed}
        stem = f"{prefix}-{slug(idea or 'image')}-s{item.seed}"
        paths.append(save_image(item.image, record, out_dir, stem))
    return paths


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of `text` (letters of any script kept)."""
    words = re.findall(r"\w+", text.lower())
    return "-".join(words)[:limit].strip("-") or "image"


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The `zit` record of a PNG written by `save_image`; None when it has none."""
    try:
        text = png_text(path, RECORD_CHUNK)
    except (OSError, ValueError, zlib.error):
        return None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def png_text(path: str | Path, keyword: str) -> str | None:
    """The text of a PNG's `keyword` text chunk (tEXt, zTXt or iTXt, before or after the image
    data), or None. Reads the file chunk by chunk and seeks past the image data: no pixel is
    decoded (Pillow's `.text` decodes the whole image first)."""
    wanted = keyword.encode("latin-1")
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
        while len(header := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return None
            if kind not in TEXT_CHUNKS:
                f.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
                continue
            data = f.read(length)
            f.seek(4, os.SEEK_CUR)
            name, _, rest = data.partition(b"\0")
            if name == wanted:
                return _chunk_text(kind, rest)
    return None


def _chunk_text(kind: bytes, rest: bytes) -> str:
    """The text of a tEXt, zTXt or iTXt chunk, after its keyword (PNG spec, section 11.3.4)."""
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    """zlib data, refused past MAX_TEXT_BYTES (a small file must not inflate to gigabytes)."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"a PNG text chunk inflates past {MAX_TEXT_BYTES} bytes")
    return text


# -- atomic, non-overwriting writes --------------------------------------------------------------
def _link_to_free_name(tmp: Path, folder: Path, stem: str) -> Path:
    """Give `tmp` the first free name `stem.png`, `stem-1.png`, ... (a name counts as taken when
    its PNG or its JSON exists). `os.link` fails if the name appeared meanwhile: no overwrite."""
    n = 0
    while True:
        name = stem if n == 0 else f"{stem}-{n}"
        target = folder / f"{name}.png"
        n += 1
        if target.exists() or target.with_suffix(".json").exists():
            continue
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError:  # a filesystem without hard links: fall back to rename
            if target.exists():
                continue
            os.replace(tmp, target)
        return target
