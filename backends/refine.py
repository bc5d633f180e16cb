"""Refining from an image: the init image, its strength and an optional inpainting mask.

What every image backend shares for image-to-image and inpainting (docs/refine.md): the checks
that need no model (`check_refine`), reading the init image and the mask at the render size
(`load_init`, `load_mask`), and the provenance of a refined render (`refine_record`).

- The init image is resized to the render size when its size differs (a warning says so).
- The mask must have the init image's own size; white (>= 128) is redrawn, black kept. An empty
  mask (nothing to redraw) and a full one (that is plain image-to-image) are refused.
- `strength` is the share of the schedule run from the init image: above 0 (0 would return the
  init unchanged), up to 1 (from pure noise: the init image has no effect).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.backends.base import RenderOptions

log = logging.getLogger("zit.refine")

INIT_HINT = "give a PNG, JPEG or WebP image to start from"
MASK_HINT = "give a black-and-white mask of the image's size (white: redraw, black: keep)"
MASK_THRESHOLD = 128  # diffusers binarizes the mask at 0.5


def open_image(path: str | Path, what: str, hint: str) -> Image.Image:
    """The image at `path`, loaded; a one-line `UserError` when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist", hint=hint)
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{what} {path} is not a readable image: {first}", hint=hint) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """The init image's (width, height)."""
    return open_image(path, "init image", INIT_HINT).size


def render_size_for(path: str | Path) -> tuple[int, int]:
    """The render size an init image gives when no size is asked for: its own, rounded down to
    multiples of 16 (at least 16)."""
    width, height = image_size(path)
    return max(16, width // 16 * 16), max(16, height // 16 * 16)


def check_refine(options: RenderOptions) -> None:
    """What can be checked without a model: the files, the strength, the mask's size and cover."""
    if options.mask_image and not options.init_image:
        raise UserError("a mask needs an init image", hint="give the image to repaint with {init}")
    if not options.init_image:
        return
    check_strength(options.strength)
    init = open_image(options.init_image, "init image", INIT_HINT)
    if options.mask_image:
        mask_share(options.mask_image, init.size)


def check_strength(strength: float) -> None:
    from zit_agent.defaults import RENDER

    if not 0.0 < strength <= 1.0:
        raise UserError(
            f"strength {strength} is out of range"
            + (": 0 would return the init image unchanged" if strength == 0 else ""),
            hint=f"use a value above 0 up to 1 (subtle {RENDER.vary_subtle}, "
            f"strong {RENDER.vary_strong})",
        )


def mask_share(path: str | Path, size: tuple[int, int]) -> float:
    """The share of the mask that is redrawn, checked: the init image's size, neither empty nor
    full."""
    import numpy as np

    mask = open_image(path, "mask", MASK_HINT)
    if mask.size != tuple(size):
        raise UserError(
            f"the mask is {mask.size[0]}x{mask.size[1]}, the init image {size[0]}x{size[1]}",
            hint="draw the mask at the image's size",
        )
    share = float((np.asarray(mask.convert("L")) >= MASK_THRESHOLD).mean())
    if share == 0.0:
        raise UserError(f"the mask {path} is empty: nothing to redraw", hint=MASK_HINT)
    if share == 1.0:
        raise UserError(
            f"the mask {path} covers the whole image",
            hint="leave out the mask to change the whole image (image-to-image with {strength})",
        )
    return share


def load_init(path: str | Path, width: int, height: int) -> Image.Image:
    """The init image in RGB at the render size (resized, with a warning, when it differs)."""
    from PIL import Image

    image = open_image(path, "init image", INIT_HINT).convert("RGB")
    if image.size != (width, height):
        log.warning(
            "the init image is %dx%d: resized to the render size %dx%d",
            *image.size,
            width,
            height,
        )
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def load_mask(path: str | Path, width: int, height: int) -> Image.Image:
    """The mask in grayscale at the render size (nearest neighbour: it stays black and white)."""
    from PIL import Image

    mask = open_image(path, "mask", MASK_HINT).convert("L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    return mask


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


def refine_record(options: RenderOptions) -> dict[str, Any] | None:
    """The provenance of a refined render (None without an init image): the init image (path,
    sha256, size, and the zit record it carries, when it is a zit image), the strength, the mask
    (path, sha256, share redrawn)."""
    from zit_agent.backends.provenance import read_record

    if not options.init_image:
        return None
    path = Path(options.init_image).expanduser().resolve()
    init = open_image(path, "init image", INIT_HINT)
    source = read_record(path)
    record: dict[str, Any] = {
        "image": str(path),
        "sha256": file_sha256(path),
        "size": list(init.size),
        "resized": init.size != (options.width, options.height),
        "strength": options.strength,
        "zit_record": _record_path(path) if source is not None else None,
        "source_token_sha256": source.get("token_sha256") if source else None,
        "source_seed": source.get("seed") if source else None,
        "mask": None,
        "mask_sha256": None,
        "mask_share": None,
    }
    if options.mask_image:
        mask = Path(options.mask_image).expanduser().resolve()
        record.update(
            mask=str(mask),
            mask_sha256=file_sha256(mask),
            mask_share=round(mask_share(mask, init.size), 4),
        )
    return record


def _record_path(png: Path) -> str:
    """Where a zit image's record is: the JSON beside it when there is one, else the PNG (whose
    `zit` chunk holds the same record)."""
    beside = png.with_suffix(".json")
    return str(beside if beside.is_file() else png)


def record_fields(options: RenderOptions) -> dict[str, Any]:
    """The top-level record keys that `provenance.render_request` reads back as `RenderOptions`
    (so a rerender refines from the same files), and the detailed `init` block."""
    if not options.init_image:
        return {"init_image": None, "strength": None, "mask_image": None, "init": None}
    detail = refine_record(options)
    assert detail is not None
    return {
        "init_image": detail["image"],
        "strength": options.strength,
        "mask_image": detail["mask"],
        "init": detail,
    }


def check_init_unchanged(record: dict[str, Any]) -> None:
    """Before rendering a record again: its init image and mask are there and unchanged."""
    detail = record.get("init")
    if not isinstance(detail, dict):
        return
    for key, digest, what in (
        ("image", "sha256", "init image"),
        ("mask", "mask_sha256", "mask"),
    ):
        path = detail.get(key)
        if not path:
            continue
        if not Path(path).is_file():
            raise UserError(
                f"this image was refined from the {what} {path}, which is not there",
                hint=f"put the {what} back at that path to render it again",
            )
        if detail.get(digest) and file_sha256(path) != detail[digest]:
            raise UserError(
                f"the {what} {path} has changed since this image was made (sha256 differs)",
                hint=f"put the original {what} back to render the same image",
            )
