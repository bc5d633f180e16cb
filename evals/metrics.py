"""Eval metrics: per idea and configuration, then per configuration with bootstrap intervals.

The diversity figures of one idea's images (mean pairwise distance, Vendi score, near-duplicate
rate, rut verdict) come from the rut detector (`agent.ruts`); this module adds only what an eval
needs on top: fidelity, cost, bootstrap 95% intervals over ideas, and paired differences against a
baseline configuration (the same ideas, so idea-to-idea spread cancels).

Fidelity is a CLIP image-text score (cosine of image and idea embeddings, clipped at 0) when a CLIP
model is on this machine, else the share of an idea's locked attributes that the final description
still states. Every summary names the method used.

Rut kinds measured on faces (`backends.analyzers`, when dlib is here): per idea, whether its images
read an identity rut (one person in most of them) and the entropy of their shot-size bins (bits;
0: every face the same shot size); per configuration the "identity rut rate" and "shot entropy".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from zit_agent.errors import UserError
from zit_agent.evals.suite import attribute_present

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CLIP_CANDIDATES = ("openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14")


class Interval(BaseModel):
    """A mean with its bootstrap 95% interval over `n` values (ideas)."""

    mean: float
    low: float
    high: float
    n: int

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


# -- intervals -----------------------------------------------------------------------------------
def bootstrap_interval(
    values: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> Interval | None:
    """Percentile bootstrap interval of the mean; None for no values, a point for one value."""
    import numpy as np

    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if data.size == 0:
        return None
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return Interval(mean=mean, low=mean, high=mean, n=int(data.size))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[picks].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), n=int(data.size))


def paired_difference(
    values: dict[str, float | None], baseline: dict[str, float | None], **bootstrap: Any
) -> Interval | None:
    """Mean of `values[k] - baseline[k]` over the keys (ideas) both have, with its interval."""
    keys = [
        k for k in values if values[k] is not None and baseline.get(k) is not None
    ]  # paired: only ideas measured under both configurations
    return bootstrap_interval([values[k] - baseline[k] for k in keys], **bootstrap)


# -- diversity of one idea's images --------------------------------------------------------------
def diversity(vectors: np.ndarray, embedder: Any) -> dict[str, Any]:
    """Diversity figures of one idea's images (L2-normalised embeddings, one row each), read by the
    rut detector with the embedder's default thresholds over all of them as one window."""
    from zit_agent.agent import ruts

    if len(vectors) < 2:  # a failed job left one image: nothing to compare
        return {"mean_distance": None, "vendi": None, "near_duplicate_rate": None, "verdict": None}
    report = ruts.judge(
        vectors,
        embedder=embedder.name,
        thresholds=ruts.thresholds_for(embedder.family),
        window=len(vectors),
    )
    return {
        "mean_distance": 1.0 - float(report.mean_similarity),
        "vendi": float(report.vendi),
        "near_duplicate_rate": float(report.near_duplicate_rate),
        "verdict": report.verdict,
    }


def kind_figures(observations: list[Any]) -> dict[str, Any]:
    """An idea's identity rut (1.0 / 0.0; None: fewer than two images with a face) and shot-size
    entropy (bits; None likewise), from an analyzer's observations of its images."""
    from zit_agent.agent import ruts

    if len(observations) < 2:
        return {"identity_rut": None, "shot_entropy": None}
    kinds = ruts.judge_kinds(observations, [str(i) for i in range(len(observations))])
    identity, shot = kinds["identity"], kinds["shot"]
    return {
        "identity_rut": None
        if identity.verdict == "unmeasured"
        else float(identity.verdict == "rut"),
        "shot_entropy": shot.entropy,
    }


# -- fidelity ------------------------------------------------------------------------------------
def attribute_retention(locked: Sequence[str], description: str) -> float | None:
    """Share of `locked` attributes `description` still states; None when nothing is locked."""
    if not locked:
        return None
    return sum(attribute_present(a, description) for a in locked) / len(locked)


class ClipScorer:
    """CLIP image-text score: max(cosine(image, text), 0) with a CLIP model's projections."""

    method = "clip"

    def __init__(self, model: Any, processor: Any, source: str):
        self.model = model
        self.processor = processor
        self.source = source

    @classmethod
    def from_pretrained(cls, spec: str | Path, *, download: bool = False) -> ClipScorer:
        from transformers import CLIPModel, CLIPProcessor

        from zit_agent.backends.hub import resolve_dir

        path = resolve_dir(spec, what="CLIP model", download=download)
        try:
            model = CLIPModel.from_pretrained(str(path)).eval()
            processor = CLIPProcessor.from_pretrained(str(path))
        except (OSError, ValueError) as err:
            raise UserError(
                f"cannot load a CLIP model from {path}: {err}",
                hint="give a transformers CLIP directory or repo id, or use fidelity: attributes",
            ) from None
        return cls(model, processor, str(spec))

    def score(self, images: list[Image.Image], texts: list[str]) -> list[float]:
        import torch

        inputs = self.processor(
            text=texts, images=images, return_tensors="pt", padding=True, truncation=True
        )
        with torch.no_grad():
            out = self.model(**inputs)
        img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
        txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
        return [max(float(c), 0.0) for c in (img * txt).sum(dim=-1)]


def local_clip(spec: str = "auto") -> str | None:
    """The CLIP model fidelity uses: `clip:SPEC` as given, or for `auto` the first well-known CLIP
    repo in the local Hugging Face cache (nothing is downloaded); None: use attributes."""
    if spec.startswith("clip:"):
        return spec[len("clip:") :]
    if spec != "auto":
        return None
    from zit_agent.backends.hub import resolve_dir
    from zit_agent.errors import ModelNotFoundError

    for repo in CLIP_CANDIDATES:
        try:
            resolve_dir(repo, what="CLIP model", allow_patterns=["config.json"])
        except ModelNotFoundError:
            continue
        return repo
    return None


# -- cost ----------------------------------------------------------------------------------------
STAGES = ("write", "encode", "render", "judge")


def cost_of(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean cost per image of one idea and configuration: writer tokens, seconds per stage,
    sequence length."""
    n = len(records) or 1
    cost = {
        "writer_prompt_tokens": sum(r["cost"]["writer_prompt_tokens"] for r in records) / n,
        "writer_new_tokens": sum(r["cost"]["writer_new_tokens"] for r in records) / n,
        "sequence_tokens": sum(r["sequence"]["count"] for r in records) / n,
        # denoising steps per kept image (candidates' previews and rejected attempts included)
        "denoise_steps": sum(r["cost"].get("denoise_steps") or 0.0 for r in records) / n,
    }
    for stage in STAGES:
        cost[f"seconds_{stage}"] = sum(r["cost"]["seconds"].get(stage, 0.0) for r in records) / n
    return cost


# -- aggregation ---------------------------------------------------------------------------------
DIVERSITY_KEYS = ("mean_distance", "vendi", "near_duplicate_rate")
KIND_KEYS = ("identity_rut", "shot_entropy")
COST_KEYS = (
    "writer_prompt_tokens",
    "writer_new_tokens",
    "sequence_tokens",
    "denoise_steps",
    *(f"seconds_{s}" for s in STAGES),
)
TIMING_KEYS = tuple(f"seconds_{s}" for s in STAGES)


def aggregate(
    groups: dict[str, dict[str, dict[str, Any]]], baseline: str
) -> dict[str, dict[str, Any]]:
    """Per configuration: each metric's interval over ideas and its paired difference against
    `baseline`. `groups[config][idea]` holds one idea's figures (see `group_figures`)."""
    keys = (*DIVERSITY_KEYS, "rut", *KIND_KEYS, "fidelity", *COST_KEYS)
    out: dict[str, dict[str, Any]] = {}
    for config, ideas in groups.items():
        metrics: dict[str, Any] = {}
        for key in keys:
            per_idea = {idea: figures.get(key) for idea, figures in ideas.items()}
            interval = bootstrap_interval([v for v in per_idea.values() if v is not None])
            base = {idea: f.get(key) for idea, f in groups.get(baseline, {}).items()}
            diff = paired_difference(per_idea, base) if config != baseline and base else None
            metrics[key] = {
                "interval": interval.model_dump() if interval else None,
                "vs_baseline": diff.model_dump() if diff else None,
            }
        metrics["rut_rate"] = metrics.pop("rut")
        metrics["identity_rut_rate"] = metrics.pop("identity_rut")
        out[config] = metrics
    return out


def group_figures(
    records: list[dict[str, Any]],
    images: list[Image.Image],
    vectors: np.ndarray,
    embedder: Any,
    clip: ClipScorer | None,
    analyzer: Any = None,
) -> dict[str, Any]:
    """One idea under one configuration: diversity of its images, the rut kinds measured on their
    faces (with an analyzer), fidelity, cost."""
    figures = diversity(vectors, embedder)
    figures["rut"] = None if figures["verdict"] is None else float(figures["verdict"] == "rut")
    observations = analyzer.analyze(images) if analyzer is not None else []
    figures.update(kind_figures(observations))
    figures["fidelity"] = group_fidelity(records, images, clip)
    figures.update(cost_of(records))
    return figures


def group_fidelity(
    records: list[dict[str, Any]], images: list[Image.Image], clip: ClipScorer | None
) -> float | None:
    """Mean fidelity of one group: CLIP against the idea text, else locked-attribute retention
    of each image's final description (None when the idea locks nothing)."""
    if clip is not None:
        scores = clip.score(images, [r["idea"]["text"] for r in records])
    else:
        retained = (attribute_retention(r["idea"]["locked"], r["description"]) for r in records)
        scores = [s for s in retained if s is not None]
    return sum(scores) / len(scores) if scores else None


def summarize(
    records: list[dict[str, Any]],
    root: Path,
    *,
    baseline: str,
    embedder: Any,
    clip: ClipScorer | None,
    analyzer: Any = "faces",
) -> dict[str, Any]:
    """Per-idea figures and per-config intervals of a run's image records. `analyzer`: a name
    (`faces`, `none`) or an analyzer; without one the kind figures are None."""
    from PIL import Image

    if analyzer is None or isinstance(analyzer, str):
        from zit_agent.backends.analyzers import load_default_analyzer

        analyzer, _ = load_default_analyzer(analyzer)

    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for (config, idea), members in group_records(records).items():
        images = [Image.open(root / r["image"]).convert("RGB") for r in members]
        vectors = embedder.embed(images)
        groups.setdefault(config, {})[idea] = group_figures(
            members, images, vectors, embedder, clip, analyzer
        )
    return {"per_idea": groups, "configs": aggregate(groups, baseline)}


def group_records(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records by (config, idea id), in the order given, each group by seed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["config"], record["idea"]["id"]), []).append(record)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in groups.items()}
