"""Provenance on every image: what made it, inside the PNG and in a JSON file beside it.

A PNG written by `save_image` carries two text chunks:
- `zit`: the JSON record (see `RECORD_KEYS`), read back with `read_record`. It holds the exact token
  ids rendered (`token_ids`, and `negative_token_ids` when CFG used a negative), packed as
  little-endian uint32, zlib-compressed, base64 (about 2.6 characters an id), so `render_request` can render the same sequence again; `text` (the
  decoded ids) is for reading only: decoding is lossy where a token splits a character.
- `parameters`: an A1111-style summary, so common image tools (A1111, ComfyUI, Civitai, exiftool)
  show a readable prompt (the sequence's description, or the idea; never chat markup), A1111's
  sampler name and its CFG scale (diffusers' guidance + 1: both mean "off" at their lowest).

`batch` says the batch the image was denoised in (`{"seeds": [...], "index": i}`) and, on the CPU,
`torch_threads` the thread count: a seed rendered inside a batch can differ by one 8-bit level from
the same seed alone (and a batch with another thread count), so rendering a record again renders
that batch with those threads and keeps image `index` (`render_recorded`).

The same record is written as `<name>.json` beside the image. Both files are written atomically: a
hidden temporary file in the same folder, then a link to the final name, which fails instead of
overwriting when that name was taken meanwhile. Names are never reused (`stem`, `stem-1`, ...).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import BaseModel, ConfigDict

from zit_agent.defaults import LIMITS
from zit_agent.errors import UserError
from zit_agent.files import check_dir, temp_path, write_atomic

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.backends.base import ImageBackend, RenderedImage, RenderOptions

RECORD_CHUNK = "zit"
PARAMETERS_CHUNK = "parameters"
RECORD_KEYS = (
    "idea",
    "text",
    "prompt",
    "token_count",
    "token_sha256",
    "token_ids",
    "seed",
    "batch",
    "torch_threads",
    "width",
    "height",
    "steps",
    "guidance",
    "layer",
    "sampler",
    "scheduler",
    "sigmas",
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
IDS_ENCODING = "zlib-uint32le-base64"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT_BYTES = 1 << 24  # an inflated text chunk (a record is a few kB)


def token_sha256(ids: list[int]) -> str:
    """A stable hash of a token-id sequence (the ids as comma-separated decimal text)."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


# -- token ids in the record ---------------------------------------------------------------------
def encode_ids(ids: list[int]) -> dict[str, str]:
    """Token ids packed for a record (see the module docstring)."""
    data = zlib.compress(struct.pack(f"<{len(ids)}I", *ids), 9)
    return {"encoding": IDS_ENCODING, "data": base64.b64encode(data).decode("ascii")}


def id_fields(ids: list[int]) -> dict[str, Any]:
    """The record's fields for the exact ids an image was rendered from: every record has them
    (a backend that does not write them gets them from `Runner.render`)."""
    return {
        "token_count": len(ids),
        "token_sha256": token_sha256(ids),
        "token_ids": encode_ids(ids),
    }


def decode_ids(packed: Any, what: str = "token ids") -> list[int]:
    """The ids `encode_ids` packed; a `UserError` when the value is not such a packing, or holds
    more ids than Z-Image reads (a record cannot make zit unpack gigabytes)."""
    if not isinstance(packed, dict) or packed.get("encoding") != IDS_ENCODING:
        raise UserError(f"the record's {what} are not {IDS_ENCODING} data", hint=_EDITED)
    limit = 4 * LIMITS.token_ceiling
    try:
        unpacker = zlib.decompressobj()
        data = unpacker.decompress(base64.b64decode(str(packed.get("data")), validate=True), limit)
    except (binascii.Error, ValueError, zlib.error):
        data = b"?"
    if len(data) % 4 or not unpacker.eof:
        raise UserError(
            f"the record's {what} are damaged or hold over {LIMITS.token_ceiling} ids",
            hint=_EDITED,
        )
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def record_token_ids(record: dict[str, Any]) -> list[int]:
    """The exact ids a record's image was rendered from, checked against its count and hash."""
    if record.get("token_ids") is None:
        raise UserError(
            "the image's record has no token ids (it was made by an older zit)",
            hint="render it again from its idea; only newer images can be rerendered",
        )
    ids = decode_ids(record["token_ids"])
    if record.get("token_sha256") not in (None, token_sha256(ids)) or record.get(
        "token_count"
    ) not in (None, len(ids)):
        raise UserError("the record's token ids do not match its hash and count", hint=_EDITED)
    return ids


_EDITED = "the image's zit record was edited or damaged; use the original file"

# A record is a file anyone can edit: each number in it that reaches a loop, an allocation or a
# file name is held to the bounds of the run option that sets it (core/options.py), and each text
# field must be text.
RECORD_OPTIONS = {
    "steps": "steps",
    "guidance": "guidance",
    "layer": "layer",
    "seed": "seed",
    "control_scale": "control_scale",
}
NOISE_OPTIONS = {
    "strength": "noise",
    "fraction": "noise_fraction",
    "steps_share": "noise_steps",
    "seed": "noise_seed",
}
TEXT_FIELDS = ("idea", "text", "prompt", "negative", "model", "dtype", "lora", "control_image")


def check_record_types(record: dict[str, Any], where: str = "") -> None:
    """Each text field of a record is text (or absent): `"idea": 5` is refused by name (and by
    the file's, `where`)."""
    for key in TEXT_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise UserError(f"{where}the record's {key} is not text", hint=_EDITED)


def check_record_bounds(record: dict[str, Any]) -> None:
    """The record's numbers within their options' bounds: `steps: 1000000`, `guidance: 1e308`,
    `seed: -5` or `2**64` are refused with the field's name, as the same value given as an option
    would be. Numbers must be finite (`Infinity`, `NaN`)."""
    from pydantic import ValidationError

    from zit_agent.options import RunOptions

    values = {option: record.get(key) for key, option in RECORD_OPTIONS.items()}
    noise = record.get("noise")
    if noise is not None and not isinstance(noise, dict):
        raise UserError("the record's noise is not a mapping", hint=_EDITED)
    for key, option in NOISE_OPTIONS.items():
        values[option] = (noise or {}).get(key)
    named = {option: key for key, option in RECORD_OPTIONS.items()}
    named.update({option: f"noise.{key}" for key, option in NOISE_OPTIONS.items()})
    for option, value in values.items():
        if isinstance(value, bool):  # pydantic takes true as 1
            raise UserError(f"the record's {named[option]} is not a number", hint=_EDITED)
    try:
        RunOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        key = named.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "record"
        raise UserError(f"the record's {key} is invalid: {first['msg']}", hint=_EDITED) from None


@dataclass(frozen=True)
class RenderRequest:
    """What rendering a record's image again takes (see `render_request`)."""

    token_ids: list[int]
    seed: int
    options: RenderOptions
    model: str | None
    dtype: str | None
    batch: list[int] | None = None  # the seeds of the batch it was rendered in (None: unrecorded)
    index: int = 0  # its place in `batch`
    threads: int | None = None  # torch's CPU threads it was rendered with (None: unrecorded, GPU)
    controlnet: str | None = None  # the ControlNet a controlled image was rendered with


def render_request(record: dict[str, Any]) -> RenderRequest:
    """The sequence, seed and render options a record was made with.

    Every `RenderOptions` field the record holds is taken over by name, so a field added to both
    travels without code here.
    """
    from pydantic import ValidationError

    from zit_agent.backends.base import RenderOptions

    check_record_types(record)
    check_record_bounds(record)
    ids = record_token_ids(record)
    fields = {
        name: record[name]
        for name in RenderOptions.model_fields
        if name not in ("negative_ids", "early_ids") and record.get(name) is not None
    }
    if record.get("negative_token_ids") is not None:
        fields["negative_ids"] = decode_ids(record["negative_token_ids"], "negative token ids")
    if record.get("early_token_ids") is not None:  # an early prompt (the first steps)
        fields["early_ids"] = decode_ids(record["early_token_ids"], "early token ids")
    seed = record.get("seed")
    try:
        options = RenderOptions(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(
            f"the record's {'.'.join(map(str, first['loc']))} is invalid: {first['msg']}",
            hint=_EDITED,
        ) from None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError("the record has no integer seed", hint=_EDITED)
    batch, index = record_batch(record, seed)
    options, controlnet = _with_control(record, options)
    model = record.get("model")
    return RenderRequest(
        token_ids=ids,
        seed=seed,
        options=options,
        model=model if isinstance(model, str) and model != "<memory>" else None,
        dtype=record.get("dtype") if isinstance(record.get("dtype"), str) else None,
        batch=batch,
        index=index,
        threads=_record_threads(record),
        controlnet=controlnet,
    )


UNRECORDED_BATCH = (
    "the record does not say the batch the image was rendered in (made by an older zit): "
    "rendered alone, its pixels may differ from the original's by one level"
)


def render_recorded(
    backend: ImageBackend,
    request: RenderRequest,
    options: RenderOptions | None = None,
    seed: int | None = None,
) -> tuple[RenderedImage, str | None]:
    """A record's image rendered again, and a note when its pixels may differ from the original.

    The same seed and options: the record's batch is rendered again and image `index` kept, on
    the CPU with the record's torch thread count (a batch's pixels can move by a level with
    another count), so the pixels are the original's. Another seed or other options make a new
    image, rendered alone. A record without a batch renders alone, with `UNRECORDED_BATCH`
    as the note (a backend without batches, like the sketch stand-in, needs none).
    """
    options = options or request.options
    seed = request.seed if seed is None else seed
    same = seed == request.seed and options == request.options
    batching = backend.batches
    with backend.using_cpu_threads(request.threads):
        if same and batching and request.batch is not None:
            image = backend.render_batch(request.token_ids, request.batch, request.index, options)
            return image, None
        [image] = backend.render(request.token_ids, [seed], options)
    return image, UNRECORDED_BATCH if same and batching and request.batch is None else None


def batch_field(seeds: list[int], index: int) -> dict[str, Any]:
    """The record's `batch`: the seeds denoised together, and this image's place among them."""
    return {"seeds": list(seeds), "index": index}


def record_batch(record: dict[str, Any], seed: int) -> tuple[list[int] | None, int]:
    """The seeds of the batch a record's image was rendered in and its index there; (None, 0)
    for a record without one (made before zit recorded batches). A `UserError` for a batch that
    is not a list of at most `LIMITS.max_count` seeds holding the record's seed at its index."""
    found = record.get("batch")
    if found is None:
        return None, 0
    seeds = found.get("seeds") if isinstance(found, dict) else None
    index = found.get("index") if isinstance(found, dict) else None
    if (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= LIMITS.max_count
        or not all(_is_seed(s) for s in seeds)
        or not isinstance(index, int)
        or isinstance(index, bool)
        or not 0 <= index < len(seeds)
        or seeds[index] != seed
    ):
        raise UserError(
            f"the record's batch is invalid (not 1..{LIMITS.max_count} seeds holding its seed "
            "at its index)",
            hint=_EDITED,
        )
    return seeds, index


def _record_threads(record: dict[str, Any]) -> int | None:
    threads = record.get("torch_threads")
    if threads is None:
        return None
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
        raise UserError("the record's torch_threads is not 1..256", hint=_EDITED)
    return threads


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= LIMITS.max_seed


def _with_control(
    record: dict[str, Any], options: RenderOptions
) -> tuple[RenderOptions, str | None]:
    """`options` with the control map, scale and preprocessor of a controlled image's record,
    and the ControlNet it named (the map file is checked where it is read)."""
    control = record.get("control")
    if control is None:
        return options, None
    if not isinstance(control, dict):
        raise UserError("the record's control block is invalid", hint=_EDITED)
    image, scale = control.get("image"), control.get("scale")
    preprocess, controlnet = control.get("preprocess", "none"), control.get("controlnet")
    if (
        not isinstance(image, str)
        or not isinstance(scale, int | float)
        or isinstance(scale, bool)
        or not isinstance(preprocess, str)
        or not isinstance(controlnet, str | None)
    ):
        raise UserError("the record's control block is invalid", hint=_EDITED)
    changed = {"control_image": image, "control_scale": float(scale), "preprocess": preprocess}
    return options.model_copy(update=changed), controlnet


def control_changed(record: dict[str, Any]) -> str | None:
    """Why a controlled image's map file cannot be used again (gone, or other bytes than the
    record's sha256 says); None when it can, or the image had none."""
    control = record.get("control")
    if not isinstance(control, dict) or not isinstance(control.get("image"), str):
        return None
    path = Path(control["image"])
    if not path.is_file():  # nor a FIFO, which would block the read
        return "the file is gone"
    try:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return "the file is gone"
    if digest != control.get("image_sha256"):
        return "the file changed since the image was made: its sha256 differs"
    return None


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
    """The record as A1111's `parameters` text: prompt, optional negative prompt, settings line.

    The prompt is the readable one (`prompt`, else the idea), never the chat sequence: pasted
    into A1111 or ComfyUI, which wrap prompts in the template themselves, markup would be wrapped
    twice. The exact sequence stays in the `zit` chunk.
    """
    prompt = record.get("prompt") or record.get("idea") or ""
    guidance = record.get("guidance")
    settings = {
        "Steps": record.get("steps"),
        "Sampler": _a1111_sampler(record.get("sampler")),
        "Schedule type": record.get("scheduler"),
        "CFG scale": guidance + 1 if isinstance(guidance, int | float) else None,
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
    if record.get("negative_prompt"):
        lines.append(f"Negative prompt: {record['negative_prompt']}")
    lines.append(line)
    return "\n".join(lines)


def _a1111_sampler(name: Any) -> str | None:
    from zit_agent.backends.samplers import SAMPLERS

    sampler = SAMPLERS.get(str(name)) if name is not None else None
    return sampler.a1111 if sampler else name


def _a1111_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if "," in text or ":" in text else text


class ImageRecord(BaseModel):
    """Everything written about one image, inside its PNG and in the JSON beside it: the
    backend's record of the render (token ids, seed, batch, settings, versions, timings: its own
    keys, kept as they are, see `RECORD_KEYS`) plus what the caller knows (the fields below).
    Made by `ImageRecord.of` and written by `save_image` only; read back as plain data
    (`read_record`), since a file on disk may come from an older zit or be edited."""

    model_config = ConfigDict(extra="allow")  # the backend's keys (a plugin's too)

    seed: int
    idea: str | None = None
    writer: dict[str, Any] | None = None  # the writer's provenance (model, sampling, tokens)
    agent: dict[str, Any] | None = None  # the agent loop: run, attempt, shot, shape, stated axes
    render: dict[str, Any] | None = None  # the render options the agent loop rendered with
    wildcards: dict[str, Any] | None = None  # a template, this image's expansion, its seed
    candidates: dict[str, Any] | None = None  # the candidates report (`agent.candidates`)
    eval: dict[str, Any] | None = None  # the suite, config and job that made it
    varied_from: str | None = None  # the image an image-to-image variation started from
    rerendered_from: str | None = None  # the image whose record was rendered again

    @classmethod
    def of(cls, backend: dict[str, Any], seed: int, **caller: Any) -> ImageRecord:
        """A backend's record of one image (`RenderedImage.record`) and its seed, completed by
        the caller's fields."""
        return cls.model_validate({**backend, "seed": seed, **caller})

    def data(self) -> dict[str, Any]:
        """The record as written: the backend's keys and the caller fields that were given."""
        return self.model_dump(mode="json", exclude_unset=True)


def save_image(image: Image.Image, record: ImageRecord, out_dir: Path, stem: str) -> Path:
    """Write `image` as `<out_dir>/<stem>[-N].png` with `record` inside and beside it.

    Returns the PNG's path. Never overwrites: the first free name is taken.
    """
    from PIL import PngImagePlugin

    out_dir = check_dir(Path(out_dir), "the output folder")
    record_data = record.data()
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECORD_CHUNK, json.dumps(record_data, ensure_ascii=False, sort_keys=True))
    info.add_itxt(PARAMETERS_CHUNK, a1111_parameters(record_data))
    text = json.dumps(record_data, ensure_ascii=False, indent=2, sort_keys=True)
    json_bytes = (text + "\n").encode()

    png_tmp = temp_path(out_dir / f"{stem}.png")
    try:
        with open(png_tmp, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=info)
            fh.flush()
            os.fsync(fh.fileno())
        png_path = _link_to_free_name(png_tmp, out_dir, stem)
    except OSError as err:  # a full disk, a file-size limit, a folder made read-only meanwhile
        raise _write_error(out_dir, err) from None
    finally:
        png_tmp.unlink(missing_ok=True)
    try:
        write_atomic(png_path.with_suffix(".json"), json_bytes)
    except OSError as err:
        png_path.unlink(missing_ok=True)  # an image is kept only with its record beside it
        raise _write_error(out_dir, err) from None
    return png_path


def move_image(png: Path, out_dir: Path, stem: str) -> Path:
    """Move a PNG that `save_image` wrote, and its record beside it, into `out_dir` as
    `<stem>[-N].png` (never overwriting): renamed, not written again. Returns the new path."""
    out_dir = check_dir(Path(out_dir), "the output folder")
    png = Path(png)
    try:
        target = _link_to_free_name(png, out_dir, stem)
    except OSError as err:
        raise _write_error(out_dir, err) from None
    try:
        os.replace(png.with_suffix(".json"), target.with_suffix(".json"))
    except OSError as err:
        if png.exists():  # linked, not renamed: the original still has its record
            target.unlink(missing_ok=True)
        raise _write_error(out_dir, err) from None
    png.unlink(missing_ok=True)
    return target


def _write_error(folder: Path, err: OSError) -> UserError:
    return UserError(
        f"cannot write the image to {folder}: {err.strerror or err}",
        hint="free some space or choose another output folder",
    )


def save_rendered(
    rendered: list[RenderedImage],
    out_dir: Path,
    *,
    idea: str | None,
    writer: dict[str, Any] | None = None,
    prefix: str | None = None,
    **caller: Any,
) -> list[Path]:
    """Save a backend's images with their records completed by what the caller knows (the idea,
    the writer, any other `ImageRecord` field). Names: `<time>-<idea slug>-s<seed>.png`."""
    prefix = prefix or time.strftime("%Y%m%d-%H%M%S")
    paths = []
    for item in rendered:
        record = ImageRecord.of(item.record, item.seed, idea=idea, writer=writer, **caller)
        stem = f"{prefix}-{slug(idea or 'image')}-s{item.seed}"
        paths.append(save_image(item.image, record, out_dir, stem))
    return paths


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of `text` (letters of any script kept)."""
    words = re.findall(r"\w+", text.lower())
    return "-".join(words)[:limit].strip("-") or "image"


def read_record(path: str | Path | BinaryIO) -> dict[str, Any] | None:
    """The `zit` record of a PNG written by `save_image` (a path or an open binary file); None
    when it has none."""
    try:
        text = png_text(path, RECORD_CHUNK)
    except (OSError, ValueError, IndexError, zlib.error):  # a damaged chunk: no record
        return None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested 100,000 deep
        return None
    if not isinstance(record, dict):
        return None
    check_record_types(record, "" if hasattr(path, "read") else f"{path}: ")
    return record


def png_text(path: str | Path | BinaryIO, keyword: str) -> str | None:
    """The text of a PNG's `keyword` text chunk (tEXt, zTXt or iTXt, before or after the image
    data), or None. Reads the file chunk by chunk and seeks past the image data: no pixel is
    decoded (Pillow's `.text` decodes the whole image first)."""
    wanted = keyword.encode("latin-1")
    opened = contextlib.nullcontext(path) if hasattr(path, "read") else open(path, "rb")  # noqa: SIM115
    with opened as f:
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
    if len(rest) < 2:
        raise ValueError("an iTXt chunk without its compression fields")
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
