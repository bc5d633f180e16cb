"""Image embedders for rut detection: images in, L2-normalised float32 vectors out (one row each).

- `hash`: weight-free and fast. A wavelet hash (imagehash.whash, 64 bits as +-1) and a
  mean-subtracted 32x32 grey thumbnail, each unit length, concatenated with weights so that the cosine
  of two vectors is `w * hash_agreement + (1 - w) * thumbnail_cosine` (w = 0.4). The hash keeps its
  low-frequency band (`remove_max_haar_ll=False`): with it removed, the bits of flat regions flip on
  noise and two renders of one flat layout disagree. The hash is robust to small shifts and colour
  changes; the thumbnail keeps the coarse layout. Together they separate "same layout" from
  "different layout" (FACTS.md section 8; calibration in docs/ruts.md).
- `hf:<dir or repo>`: a transformers vision model (DINOv2, CLIP or SigLIP): its image processor,
  the pooled output (CLIP/SigLIP: the projected image features), normalised.
- `dreamsim`: DreamSim, when the `dreamsim` package is installed (it fetches its own weights).

`load_embedder(name)` builds one by name; `default_embedder_name(settings)` is the configured one
(`embedder` setting) or `hash`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zit_agent.backends.base import Embedder
from zit_agent.errors import ModelNotFoundError, UserError

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.settings import Settings

EMBEDDER_HELP = "use hash, hf:DIR_OR_REPO (DINOv2, CLIP or SigLIP) or dreamsim"
HASH_SCALE = 128
HF_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class HashEmbedder(Embedder):
    """Wavelet hash + mean-subtracted grey thumbnail (see the module docstring)."""

    family = "hash"

    def __init__(self, hash_size: int = 8, thumb_size: int = 32, hash_weight: float = 0.4):
        if not 0.0 <= hash_weight <= 1.0:
            raise ValueError("hash_weight must be within [0, 1]")
        self.hash_size = hash_size
        self.thumb_size = thumb_size
        self.hash_weight = hash_weight
        default = (hash_size, thumb_size, hash_weight) == (8, 32, 0.4)
        # Other parameters give other vectors: a distinct name keeps stored embeddings apart.
        self.name = "hash" if default else f"hash-{hash_size}-{thumb_size}-{hash_weight:g}"

    @property
    def dim(self) -> int:
        return self.hash_size**2 + self.thumb_size**2

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise_rows(np.stack([self._vector(im) for im in images]))

    def _vector(self, image: Image.Image) -> np.ndarray:
        import imagehash
        from PIL import Image

        grey = image.convert("L")
        # A fixed 128 px working scale: the same hash at any image size, and a 1024 px image
        # costs ~10 ms instead of ~90 ms (the default scale is the image's own size).
        bits = imagehash.whash(
            grey, hash_size=self.hash_size, image_scale=HASH_SCALE, remove_max_haar_ll=False
        ).hash.flatten()
        signs = np.where(bits, 1.0, -1.0) / np.sqrt(bits.size)
        thumb = np.asarray(
            grey.resize((self.thumb_size, self.thumb_size), Image.Resampling.BOX), dtype=np.float64
        ).flatten()
        thumb -= thumb.mean()
        norm = np.linalg.norm(thumb)
        thumb = thumb / norm if norm > 1e-9 else thumb  # a flat image has no layout
        w = self.hash_weight
        return np.concatenate([np.sqrt(w) * signs, np.sqrt(1.0 - w) * thumb])


class HFVisionEmbedder(Embedder):
    """A transformers vision model: image processor -> model -> pooled output -> unit vectors."""

    def __init__(self, model: Any, processor: Any, name: str, batch_size: int = 16):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.batch_size = batch_size
        self.family = _family(getattr(model.config, "model_type", ""))

    @classmethod
    def from_pretrained(cls, spec: str | Path, *, download: bool = False) -> HFVisionEmbedder:
        """From a local directory or a repo id in the Hugging Face cache (`download` to fetch)."""
        from zit_agent.backends.hub import resolve_dir

        root = resolve_dir(spec, what="image embedder", allow_patterns=HF_FILES, download=download)
        if not (root / "config.json").is_file():
            raise ModelNotFoundError(
                f"image embedder: {root} has no config.json",
                hint="point hf: at a transformers vision model directory (DINOv2, CLIP, SigLIP)",
            )
        from transformers import AutoImageProcessor, AutoModel

        from zit_agent.backends.quiet import quiet_libraries

        quiet_libraries()
        try:
            processor = AutoImageProcessor.from_pretrained(str(root))
            model = AutoModel.from_pretrained(str(root))
        except (OSError, ValueError) as err:
            raise ModelNotFoundError(
                f"image embedder: cannot load a vision model from {root}: {err}",
                hint="it needs config.json, weights and preprocessor_config.json",
            ) from None
        return cls(model, processor, name=f"hf:{spec}")

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
                rows.append(self._pooled(pixels.to(self.model.dtype)).float().numpy())
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return normalise_rows(np.concatenate(rows))

    def _pooled(self, pixels):
        if hasattr(self.model, "get_image_features"):  # CLIP / SigLIP: projected image features
            features = self.model.get_image_features(pixel_values=pixels)
            return features if hasattr(features, "shape") else features.pooler_output
        out = self.model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state.mean(dim=1)


def _family(model_type: str) -> str:
    for family in ("dinov2", "siglip", "clip"):
        if family in model_type:
            return family
    return "vision"


class DreamSimEmbedder(Embedder):
    """DreamSim (`pip install dreamsim`): its distance is 1 - the cosine of these vectors."""

    family = "dreamsim"
    name = "dreamsim"

    def __init__(self, model: Any, preprocess: Any):
        self.model = model
        self.preprocess = preprocess

    @classmethod
    def load(cls, cache_dir: Path) -> DreamSimEmbedder:
        if importlib.util.find_spec("dreamsim") is None:
            raise UserError(
                "the dreamsim embedder needs the dreamsim package",
                hint=f"pip install dreamsim, or {EMBEDDER_HELP}",
            )
        from dreamsim import dreamsim

        model, preprocess = dreamsim(pretrained=True, cache_dir=str(cache_dir), device="cpu")
        return cls(model, preprocess)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = torch.cat([self.preprocess(im.convert("RGB")) for im in images])
            return normalise_rows(self.model.embed(batch).float().numpy())


def default_embedder_name(settings: Settings | None = None) -> str:
    """The configured embedder (`embedder` setting, `ZIT_EMBEDDER`), else `hash`."""
    return getattr(settings, "embedder", None) or "hash"


def load_embedder(name: str, settings: Settings | None = None):
    """An embedder by name: `hash`, `hf:<dir or repo>`, `dreamsim`, or a registered one."""
    from zit_agent.backends.registry import registered

    kind, _, target = name.partition(":")
    if kind not in registered("embedder"):
        raise UserError(f"unknown embedder {name!r}", hint=EMBEDDER_HELP)
    from zit_agent.backends.registry import factory

    return factory("embedder", kind)(target.strip(), settings=settings)


def load_hash(target: str, *, settings: Settings | None) -> HashEmbedder:
    return HashEmbedder()


def load_hf(target: str, *, settings: Settings | None) -> HFVisionEmbedder:
    if not target:
        raise UserError("the hf embedder needs a model: hf:DIR_OR_REPO", hint=EMBEDDER_HELP)
    return HFVisionEmbedder.from_pretrained(
        target, download=bool(getattr(settings, "download", False))
    )


def load_dreamsim(target: str, *, settings: Settings | None) -> DreamSimEmbedder:
    home = settings.home if settings is not None else Path.home() / ".cache"
    return DreamSimEmbedder.load(home / "dreamsim")


def load_default_embedder(settings: Settings | None = None) -> tuple[Any, list[str]]:
    """The configured embedder when its files are present, else `hash`; plus notes on why."""
    name = default_embedder_name(settings)
    if name == "hash":
        return HashEmbedder(), []
    try:
        return load_embedder(name, settings), []
    except UserError as err:
        return HashEmbedder(), [f"configured embedder {name} unavailable ({err}); using hash"]
