"""ControlNet Union for Z-Image: loading the model, reading the control map, recording its use.

The model is diffusers' `ZImageControlNetModel` (Z-Image-Turbo-Fun-Controlnet-Union 1.x and 2.x),
from a diffusers folder, a Hugging Face repo id or a single `.safetensors` file. A single file
needs a config: a `config.json` beside it, else the one diffusers names for the file's detected
version (`hlky/Z-Image-Turbo-Fun-Controlnet-Union*`, from the hub cache).

A control map is used as is (`preprocess="none"`: a canny, depth, pose, HED or MLSD map made
elsewhere), or made from a photo with the built-in canny preprocessor (OpenCV, at the render size).
With a map the composition is fixed on purpose; the provenance record says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.backends.hub import looks_like_repo_id, resolve_dir
from zit_agent.defaults import LIMITS, RENDER
from zit_agent.errors import ModelNotFoundError, UserError

if TYPE_CHECKING:
    from PIL import Image

PREPROCESSORS = ("none", "canny")
MAP_HINT = "give a control map image (PNG/JPEG) of the composition"


def load_controlnet(spec: str | Path, *, torch_dtype, download: bool = False):
    """`ZImageControlNetModel` from a folder, a repo id or a single `.safetensors` file."""
    from diffusers import ZImageControlNetModel

    from zit_agent.backends.single_file import is_file_spec, weight_file

    if is_file_spec(spec):
        path = weight_file(spec, "ControlNet", download=download)
        return _from_single_file(ZImageControlNetModel, path, torch_dtype, download)
    root = resolve_dir(spec, what="ControlNet", download=download)
    folder = root / "controlnet" if (root / "controlnet" / "config.json").is_file() else root
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"ControlNet: {root} has no config.json (not a diffusers ControlNet folder)",
            hint="give a Z-Image ControlNet folder, repo id or .safetensors file",
        )
    try:
        return ZImageControlNetModel.from_pretrained(folder, torch_dtype=torch_dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(
            f"ControlNet: cannot load {folder}: {_first_line(err)}",
            hint="give a Z-Image ControlNet Union folder (diffusers layout)",
        ) from None


def _from_single_file(cls, path: Path, torch_dtype, download: bool):
    if path.suffix.lower() != ".safetensors":
        raise UserError(
            f"ControlNet {path.name}: a ControlNet file must be .safetensors",
            hint="give the ControlNet Union .safetensors file or its diffusers folder",
        )
    config = path.parent if (path.parent / "config.json").is_file() else None
    try:
        return cls.from_single_file(
            str(path),
            config=str(config) if config else None,
            torch_dtype=torch_dtype,
            local_files_only=not download,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        if config is None and _is_missing_config(err):
            raise ModelNotFoundError(
                f"ControlNet {path.name}: its config is not on this machine ({_first_line(err)})",
                hint="put the model's config.json beside the file, or fetch it with "
                "`hf download hlky/Z-Image-Turbo-Fun-Controlnet-Union config.json` "
                "(-2.0 / -2.1 for Union 2.x)",
            ) from None
        raise UserError(
            f"ControlNet {path.name} does not load: {_first_line(err)}",
            hint="give a Z-Image-Turbo-Fun-Controlnet-Union .safetensors file",
        ) from None


def _is_missing_config(err: BaseException) -> bool:
    text = str(err).lower()
    return "config" in text or "offline" in text or "connect" in text or "local" in text


def check_controlnet_fits(controlnet, transformer) -> None:
    """A ControlNet's blocks must have the DiT's width and heads."""
    cn, dit = controlnet.config, transformer.config
    for field in ("dim", "n_heads", "n_kv_heads"):
        if cn.get(field) != dit.get(field):
            raise UserError(
                f"the ControlNet's {field} is {cn.get(field)}, the transformer's {dit.get(field)}",
                hint="use a ControlNet made for this Z-Image model",
            )


def controlnet_id(spec: str | Path) -> str:
    return str(spec) if looks_like_repo_id(str(spec)) else str(Path(spec).expanduser().resolve())


# -- control maps --------------------------------------------------------------------------------
def check_control(image: str | None, scale: float, preprocess: str) -> None:
    """What can be checked without a model: the file, the scale, the preprocessor."""
    low, high = LIMITS.control_scale
    if not low <= scale <= high:
        raise UserError(
            f"control scale {scale} is out of range",
            hint=f"use {low}..{high} (the model card suggests 0.65-0.80)",
        )
    if preprocess not in PREPROCESSORS:
        raise UserError(
            f"unknown control preprocessor {preprocess!r}",
            hint=f"use one of {', '.join(PREPROCESSORS)} (depth, pose, HED: give a ready map)",
        )
    if image is not None and not Path(image).expanduser().is_file():
        raise UserError(f"control image {image} does not exist", hint=MAP_HINT)


def control_map(path: str | Path, width: int, height: int, preprocess: str) -> Image.Image:
    """The control map for a render: the image as is (the pipeline resizes it), or its canny
    edges computed at the render size (white edges on black, three channels)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    try:
        with Image.open(path) as img:
            if img.width * img.height > Image.MAX_IMAGE_PIXELS:  # Pillow only warns up to 2x
                raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
            image = img.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"control image {path} does not exist", hint=MAP_HINT) from None
    except Image.DecompressionBombError as err:
        raise UserError(
            f"control image {path} is too large ({err})".split(", could be")[0],
            hint=f"give a map of at most {Image.MAX_IMAGE_PIXELS:,} pixels, about the render size",
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"control image {path} is not readable: {err}", hint=MAP_HINT) from None
    if preprocess == "canny":
        return canny(image.resize((width, height), Image.Resampling.BICUBIC))
    return image


def canny(image: Image.Image) -> Image.Image:
    """Canny edges of `image` (OpenCV, thresholds from the defaults table)."""
    try:
        import cv2
    except ImportError:
        raise UserError(
            "the canny preprocessor needs OpenCV", hint="pip install opencv-python-headless"
        ) from None
    import numpy as np
    from PIL import Image

    low, high = RENDER.canny_thresholds
    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def control_record(
    image: str, scale: float, preprocess: str, controlnet: str | None
) -> dict[str, Any]:
    """The provenance of a controlled render: a map fixed the composition."""
    path = Path(image).expanduser().resolve()
    return {
        "image": str(path),
        "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "scale": scale,
        "preprocess": preprocess,
        "controlnet": controlnet,
        "fixes_composition": True,
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
