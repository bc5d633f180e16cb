"""The rut detector: pure numpy on unit-length image vectors (newest last).

For a window of images (one idea or session, the last `window` of them) it computes:
- the pairwise cosine similarity matrix and its mean over pairs (`mean_similarity`);
- the newest image's highest similarity to the others (`max_similarity`);
- the Vendi score: exp of the entropy of the eigenvalues of K/n (K the similarity matrix);
  n identical images give 1, n orthogonal ones give n ("how many different images");
- the near-duplicate rate: the share of images with at least one other at or above
  `thresholds.duplicate`, and the clusters of such images (connected groups);
- optionally, against a wider window (the last N images across ideas), the newest image's highest
  similarity there: the same face or layout coming back for a different idea.

The reading is `rut` when the mean similarity reaches `thresholds.rut`, `warn` when it reaches
`thresholds.warn`, else `ok`; a newest image that nearly duplicates one in the wider window reads at
least `warn`. With `thresholds.consecutive = 2` the verdict says `rut` only after two rut readings
in a row (pass the previous report); a single one says `warn`.

Only the window is ever looked at, so the cost of checking one new image grows with the window,
never with the whole history.

Rut kinds (`judge_kinds`): the embedder's reading is the `layout` kind; an analyzer's observations
(`backends.analyzers`: faces with identity descriptors, shot size and head pose) add `identity`
(one person recurring), `shot` (one shot-size bin) and `angle` (one head-pose bin). Each reads
`ok | warn | rut | unmeasured` (unmeasured: too few faces, so nothing is claimed); the overall
verdict is the worst measured kind (`with_kinds`).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from zit_agent.axes import AxisSummary, summarize
from zit_agent.defaults import AGENT

if TYPE_CHECKING:
    from zit_agent.backends.analyzers import Observation

Verdict = Literal["ok", "warn", "rut"]
KindVerdict = Literal["ok", "warn", "rut", "unmeasured"]
KINDS = ("layout", "identity", "shot", "angle")
MEASURED_KINDS = ("identity", "shot", "angle")  # read from an analyzer's observations
# Identity: dlib's threshold (99.38% on LFW): descriptors closer than 0.6 are one person. Measured
# on the real test photographs: one man 0.23-0.45 apart, two different men 0.82-0.88.
IDENTITY_DISTANCE = 0.6
# A kind's share: identity, the images of the window showing the most frequent person; shot and
# angle, the images with a face that fall in the most frequent bin. Rut from 3 in 4, warn from half
# (identity) or 3 in 5 (bins): "the same woman in 7 of 8 images" is a rut, 4 of 8 a warning.
RUT_SHARE = 0.75
IDENTITY_WARN_SHARE = 0.5
BIN_WARN_SHARE = 0.6
MIN_MEASURED = 2  # images with a face needed before a kind is read


class Thresholds(BaseModel):
    """Similarity thresholds of one embedder family (cosine similarity, 1 = identical)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn: float = Field(description="Mean pairwise similarity from which the reading is warn.")
    rut: float = Field(description="Mean pairwise similarity from which the reading is rut.")
    duplicate: float = Field(description="Pairs at or above this are near-duplicates.")
    consecutive: int = Field(1, ge=1, description="Rut readings in a row before the verdict.")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not -1.0 <= self.warn <= self.rut <= 1.0 or not -1.0 <= self.duplicate <= 1.0:
            raise ValueError("thresholds need -1 <= warn <= rut <= 1 and -1 <= duplicate <= 1")
        return self


# Starting points, per embedder family. hash: PROVISIONAL, calibrated only on the sketch stand-in's
# drawings and synthetic layouts (tests/agent/test_ruts.py), never on real Z-Image outputs; dreamsim: FACTS.md section 8 (distance < 0.15 over a window is
# a rut, 0.15-0.19 a warning); dinov2/clip/siglip/vision: uncalibrated guesses (CLIP and SigLIP
# are semantic, so their similarities run high). Override per call or with `zit ruts --rut/--warn`.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "hash": Thresholds(warn=0.65, rut=0.8, duplicate=0.92),
    "dreamsim": Thresholds(warn=0.81, rut=0.85, duplicate=0.95),
    "dinov2": Thresholds(warn=0.75, rut=0.85, duplicate=0.95),
    "clip": Thresholds(warn=0.88, rut=0.93, duplicate=0.98),
    "siglip": Thresholds(warn=0.88, rut=0.93, duplicate=0.98),
    "vision": Thresholds(warn=0.8, rut=0.9, duplicate=0.97),
}


def thresholds_for(family: str) -> Thresholds:
    """The default thresholds of an embedder family (`embedder.family`)."""
    return DEFAULT_THRESHOLDS.get(family, DEFAULT_THRESHOLDS["vision"])


class WiderReading(BaseModel):
    count: int = Field(description="Images in the wider window.")
    max_similarity: float = Field(description="The newest image's highest similarity there.")
    closest: str | None = Field(None, description="Label of that most similar image.")


class KindReport(BaseModel):
    """One kind's reading over the window."""

    verdict: KindVerdict
    reason: str
    count: int = Field(0, description="Images in the window.")
    measured: int = Field(0, description="Images the kind could be read on (with a face).")
    share: float | None = Field(None, description="The most frequent person's or bin's share.")
    dominant: str | None = Field(None, description="That bin (shot, angle).")
    bins: dict[str, int] = Field(default_factory=dict, description="Images per bin.")
    sub_bins: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="angle: images per yaw bin and per pitch bin; shot: per framing third.",
    )
    entropy: float | None = Field(None, description="Shannon entropy of the bins, in bits.")
    clusters: list[list[str]] = Field(
        default_factory=list, description="identity: labels of the images of each person seen twice"
    )
    faces: list[dict[str, Any]] = Field(
        default_factory=list,
        description="identity: each face's label, box, image size and person (cluster index)",
    )
    wider: str | None = Field(None, description="identity: a face matched in the wider window.")


class RutReport(BaseModel):
    verdict: Verdict
    reading: Verdict = Field(description="This window's own reading, before `consecutive`.")
    streak: int = Field(0, description="Rut readings in a row, this one included.")
    reason: str
    embedder: str
    thresholds: Thresholds
    count: int = Field(description="Images in the window.")
    labels: list[str] = Field(
        default_factory=list, description="The window's images, oldest first."
    )
    mean_similarity: float | None = None
    max_similarity: float | None = None
    vendi: float = 0.0
    near_duplicate_rate: float = 0.0
    clusters: list[list[str]] = Field(default_factory=list)
    wider: WiderReading | None = None
    axes: AxisSummary | None = Field(None, description="Unstated/repeated axes, when texts known.")
    kinds: dict[str, KindReport] = Field(
        default_factory=dict, description="Per kind (layout, identity, shot, angle), when judged."
    )

    @property
    def axes_to_vary(self) -> list[str]:
        return self.axes.to_vary if self.axes else []


# -- the measures --------------------------------------------------------------------------------
def similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarities of unit-length rows."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return np.clip(vectors @ vectors.T, -1.0, 1.0)


def mean_pairwise(sim: np.ndarray) -> float:
    n = sim.shape[0]
    if n < 2:
        raise ValueError("mean pairwise similarity needs two or more images")
    upper = np.triu_indices(n, k=1)
    return float(sim[upper].mean())


def vendi_score(sim: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n): 1 for identical images, n for orthogonal ones."""
    n = sim.shape[0]
    if n == 0:
        return 0.0
    eigenvalues = np.clip(np.linalg.eigvalsh(sim / n), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    eigenvalues = eigenvalues / eigenvalues.sum()
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def duplicate_clusters(sim: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups (two or more) of images linked by similarities at or above `threshold`."""
    n = sim.shape[0]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(sim >= threshold, k=1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


# -- the verdict ---------------------------------------------------------------------------------
def judge(
    vectors: np.ndarray,
    *,
    embedder: str,
    thresholds: Thresholds,
    window: int = AGENT.window,
    labels: list[str] | None = None,
    texts: list[str] | None = None,
    wider: np.ndarray | None = None,
    wider_labels: list[str] | None = None,
    previous: RutReport | None = None,
) -> RutReport:
    """Judge the last `window` rows of `vectors` (newest last).

    `labels` and `texts` (prompts) run parallel to `vectors`; texts let the report name the axes
    the window leaves unstated or repeats. `wider`: vectors of recent images of other ideas (newest
    last, the window's own images excluded). `previous`: the last report of the same window, for
    `thresholds.consecutive`.
    """
    vectors = np.asarray(vectors)
    labels = labels or [str(i) for i in range(len(vectors))]
    _check_parallel(len(vectors), labels=labels, texts=texts)
    if window < 2:
        raise ValueError("the window must hold two or more images")
    vectors, labels = vectors[-window:], labels[-window:]
    texts = texts[-window:] if texts else None
    base = {
        "embedder": embedder,
        "thresholds": thresholds,
        "count": len(vectors),
        "labels": labels,
        "axes": summarize(texts) if texts else None,
    }
    if len(vectors) < 2:
        return RutReport(verdict="ok", reading="ok", reason="fewer than two images", **base)

    sim = similarity_matrix(vectors)
    mean = mean_pairwise(sim)
    clusters = duplicate_clusters(sim, thresholds.duplicate)
    wider_reading = _wider(vectors[-1], wider, wider_labels)
    reading, reason = _reading(mean, thresholds, wider_reading)
    streak = _streak(reading, previous)
    verdict = _verdict(reading, streak, thresholds)
    if verdict != reading:
        reason += f" (rut reading {streak} of {thresholds.consecutive} in a row)"
    return RutReport(
        verdict=verdict,
        reading=reading,
        streak=streak,
        reason=reason,
        mean_similarity=mean,
        max_similarity=float(sim[-1, :-1].max()),
        vendi=vendi_score(sim),
        near_duplicate_rate=sum(len(c) for c in clusters) / len(vectors),
        clusters=[[labels[i] for i in c] for c in clusters],
        wider=wider_reading,
        **base,
    )


def _check_parallel(n: int, **lists: list[str] | None) -> None:
    for name, values in lists.items():
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} vectors")


def _wider(
    newest: np.ndarray, wider: np.ndarray | None, labels: list[str] | None
) -> WiderReading | None:
    if wider is None or len(wider) == 0:
        return None
    sims = np.clip(np.asarray(wider, dtype=np.float64) @ newest.astype(np.float64), -1.0, 1.0)
    best = int(sims.argmax())
    return WiderReading(
        count=len(wider),
        max_similarity=float(sims[best]),
        closest=labels[best] if labels else str(best),
    )


def _reading(
    mean: float, thresholds: Thresholds, wider: WiderReading | None
) -> tuple[Verdict, str]:
    if mean >= thresholds.rut:
        return "rut", f"mean similarity {mean:.3f} >= rut threshold {thresholds.rut}"
    if mean >= thresholds.warn:
        return "warn", f"mean similarity {mean:.3f} >= warn threshold {thresholds.warn}"
    if wider is not None and wider.max_similarity >= thresholds.duplicate:
        return "warn", (
            f"the newest image nearly duplicates {wider.closest} from the wider window "
            f"({wider.max_similarity:.3f} >= {thresholds.duplicate})"
        )
    return "ok", f"mean similarity {mean:.3f} < warn threshold {thresholds.warn}"


def _streak(reading: Verdict, previous: RutReport | None) -> int:
    if reading != "rut":
        return 0
    return (previous.streak if previous is not None and previous.reading == "rut" else 0) + 1


def _verdict(reading: Verdict, streak: int, thresholds: Thresholds) -> Verdict:
    if reading == "rut" and streak < thresholds.consecutive:
        return "warn"
    return reading


# -- rut kinds -----------------------------------------------------------------------------------
SEVERITY = {"ok": 0, "warn": 1, "rut": 2}


def worst(kinds: dict[str, KindReport]) -> tuple[Verdict, list[str]]:
    """The worst measured verdict and the kinds that read it."""
    measured = {k: r.verdict for k, r in kinds.items() if r.verdict != "unmeasured"}
    if not measured:
        return "ok", []
    top = max(measured.values(), key=SEVERITY.__getitem__)
    return top, [k for k, v in measured.items() if v == top]


def unmeasured_kinds(reason: str, count: int = 0) -> dict[str, KindReport]:
    """Every analyzer kind unmeasured, for one reason (no analyzer here: how to install it)."""
    return {k: KindReport(verdict="unmeasured", reason=reason, count=count) for k in MEASURED_KINDS}


def layout_kind(report: RutReport) -> KindReport:
    return KindReport(
        verdict=report.verdict,
        reason=f"{report.embedder}: {report.reason}",
        count=report.count,
        measured=report.count,
        share=report.mean_similarity,
    )


def with_kinds(report: RutReport, kinds: dict[str, KindReport]) -> RutReport:
    """The report with its kinds (layout from its own reading) and the overall verdict: the worst
    measured kind."""
    kinds = {"layout": layout_kind(report), **kinds}
    verdict, which = worst(kinds)
    reason = report.reason
    if verdict != "ok" and which != ["layout"]:
        reason = "; ".join(f"{k} {kinds[k].verdict}: {kinds[k].reason}" for k in which)
    return report.model_copy(update={"kinds": kinds, "verdict": verdict, "reason": reason})


def judge_kinds(
    observations: list[Observation],
    labels: list[str],
    *,
    wider: list[Observation] | None = None,
    wider_labels: list[str] | None = None,
) -> dict[str, KindReport]:
    """`identity`, `shot` and `angle` over one window's observations (newest last). `wider`: other
    ideas' recent images: a face of the newest image seen there too reads at least `warn`."""
    _check_parallel(len(observations), labels=labels)
    return {
        "identity": judge_identity(observations, labels, wider=wider, wider_labels=wider_labels),
        "shot": judge_shot(observations),
        "angle": judge_angle(observations),
    }


def _descriptors(observations: list[Observation]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All faces' descriptors, and (image index, face index) for each."""
    owners = [
        (i, j) for i, o in enumerate(observations) for j, f in enumerate(o.faces) if f.descriptor
    ]
    rows = [observations[i].faces[j].descriptor for i, j in owners]
    if not rows:
        return np.zeros((0, 0), dtype=np.float64), owners
    return np.asarray(rows, dtype=np.float64), owners


def person_clusters(descriptors: np.ndarray, threshold: float = IDENTITY_DISTANCE) -> list[int]:
    """A person index per face: faces linked by descriptor distances below `threshold`."""
    n = len(descriptors)
    if n == 0:
        return []
    distances = np.linalg.norm(descriptors[:, None, :] - descriptors[None, :, :], axis=-1)
    close = (distances < threshold).astype(float)
    groups = duplicate_clusters(close, 0.5)
    person = list(range(n))
    for group in groups:
        for i in group:
            person[i] = min(group)
    order = {p: k for k, p in enumerate(dict.fromkeys(person))}
    return [order[p] for p in person]


def judge_identity(
    observations: list[Observation],
    labels: list[str],
    *,
    wider: list[Observation] | None = None,
    wider_labels: list[str] | None = None,
) -> KindReport:
    count = len(observations)
    with_face = sum(1 for o in observations if o.faces)
    base = {"count": count, "measured": with_face}
    if with_face < MIN_MEASURED:
        return KindReport(
            verdict="unmeasured",
            reason=f"faces found in {with_face} of {count} images: no person to compare",
            **base,
        )
    descriptors, owners = _descriptors(observations)
    if not owners:
        return KindReport(
            verdict="unmeasured", reason="the faces carry no identity descriptors", **base
        )
    person = person_clusters(descriptors)
    images_of: dict[int, list[int]] = {}
    for (image, _), p in zip(owners, person, strict=True):
        images_of.setdefault(p, [])
        if image not in images_of[p]:
            images_of[p].append(image)
    top, top_images = max(images_of.items(), key=lambda item: len(item[1]))
    share = len(top_images) / count
    faces = [
        {
            "label": labels[i],
            "box": observations[i].faces[j].box,
            "width": observations[i].width,
            "height": observations[i].height,
            "person": p,
        }
        for (i, j), p in zip(owners, person, strict=True)
    ]
    clusters = [[labels[i] for i in sorted(imgs)] for imgs in images_of.values() if len(imgs) > 1]
    seen = f"one person in {len(top_images)} of {count} images"
    if len(top_images) >= 2 and share >= RUT_SHARE:
        verdict, reason = "rut", f"{seen} (>= {RUT_SHARE:.0%})"
    elif len(top_images) >= 2 and share >= IDENTITY_WARN_SHARE:
        verdict, reason = "warn", f"{seen} (>= {IDENTITY_WARN_SHARE:.0%})"
    else:
        verdict = "ok"
        reason = f"{len(images_of)} different people in {with_face} images with faces; {seen}"
    matched = _wider_match(observations[-1], wider, wider_labels)
    if matched is not None:
        reason += f"; the newest image's person also appears in {matched} (another idea)"
        verdict = "warn" if verdict == "ok" else verdict
    return KindReport(
        verdict=verdict,
        reason=reason,
        share=round(share, 4),
        clusters=clusters,
        faces=faces,
        wider=matched,
        **base,
    )


def _wider_match(
    newest: Observation, wider: list[Observation] | None, labels: list[str] | None
) -> str | None:
    if not wider or not newest.faces:
        return None
    mine, _ = _descriptors([newest])
    theirs, owners = _descriptors(wider)
    if not len(mine) or not len(theirs):
        return None
    distances = np.linalg.norm(mine[:, None, :] - theirs[None, :, :], axis=-1)
    best = np.unravel_index(int(distances.argmin()), distances.shape)
    if distances[best] >= IDENTITY_DISTANCE:
        return None
    image = owners[int(best[1])][0]
    return labels[image] if labels else str(image)


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    shares = np.array([c / total for c in counts.values() if c])
    return float(abs(-(shares * np.log2(shares)).sum()))


def judge_bins(kind: str, values: list[str | None], count: int) -> KindReport:
    """A kind read as bins: rut when one bin holds RUT_SHARE of the images measured."""
    found = [v for v in values if v]
    counts = Counter(found)
    base = {"count": count, "measured": len(found), "bins": dict(counts.most_common())}
    if len(found) < MIN_MEASURED:
        return KindReport(
            verdict="unmeasured",
            reason=f"faces found in {len(found)} of {count} images: no {kind} to compare",
            **base,
        )
    dominant, top = counts.most_common(1)[0]
    share = top / len(found)
    seen = f"{dominant} in {top} of {len(found)} images with a face"
    if share >= RUT_SHARE:
        verdict, reason = "rut", f"{seen} (>= {RUT_SHARE:.0%})"
    elif share >= BIN_WARN_SHARE:
        verdict, reason = "warn", f"{seen} (>= {BIN_WARN_SHARE:.0%})"
    else:
        verdict, reason = "ok", f"{len(counts)} {kind} bins; {seen}"
    return KindReport(
        verdict=verdict,
        reason=reason,
        share=round(share, 4),
        dominant=dominant,
        entropy=round(_entropy(counts), 4),
        **base,
    )


def judge_shot(observations: list[Observation]) -> KindReport:
    """Shot-size bins of each image's largest face (and, as numbers, where it sits)."""
    mains = [o.main_face for o in observations]
    report = judge_bins("shot", [f and f.shot for f in mains], len(observations))
    framing = dict(Counter(f.framing for f in mains if f).most_common())
    return report.model_copy(update={"sub_bins": {"framing": framing}})


def judge_angle(observations: list[Observation]) -> KindReport:
    """Head pose bins (yaw bin and pitch bin together) of each image's largest face."""
    mains = [o.main_face for o in observations]
    report = judge_bins(
        "angle", [f and f"{f.yaw_bin}, {f.pitch_bin}" for f in mains], len(observations)
    )
    faces = [f for f in mains if f]
    sub_bins = {
        "yaw": dict(Counter(f.yaw_bin for f in faces).most_common()),
        "pitch": dict(Counter(f.pitch_bin for f in faces).most_common()),
    }
    return report.model_copy(update={"sub_bins": sub_bins})


# -- many images, grouped by idea (`zit ruts`, the server's rut check) ---------------------------
REPORT_FIELDS = (
    "verdict",
    "reason",
    "embedder",
    "count",
    "mean_similarity",
    "max_similarity",
    "vendi",
    "near_duplicate_rate",
    "clusters",
    "wider",
    "kinds",
)


class Group(NamedTuple):
    """One judged group: its idea (None for all images), its newest `window` images and the
    newest images of the other ideas (its wider window), as indices into the items."""

    idea: str | None
    window: list[int]
    wider: list[int]


def group_windows(items: list[dict[str, Any]], window: int) -> list[Group]:
    """All images, then one group per idea (first seen first). Linear in the images: each idea's
    wider window is collected from the newest end, past that idea's own images only."""
    ideas: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item["idea"]:
            ideas.setdefault(item["idea"], []).append(i)
    groups = [Group(None, list(range(max(0, len(items) - window), len(items))), [])]
    for idea, mine in ideas.items():
        others: list[int] = []
        for i in range(len(items) - 1, -1, -1):
            if len(others) == AGENT.wider_window:
                break
            if items[i]["idea"] != idea:
                others.append(i)
        groups.append(Group(idea, mine[-window:], others[::-1]))
    return groups


def judged_vectors(store, model, items: list[dict[str, Any]], groups: list[Group], load) -> dict:
    """Embed every image not embedded yet (in bounded chunks, stored as they go), then read back
    the vectors of the images the groups judge: memory holds a chunk and the windows, never
    the folder's vectors. `load(item_path)` opens an image."""
    by_hash = {item["hash"]: item["path"] for item in items}

    def load_hash(content_hash: str):
        return load(by_hash[content_hash])

    store.embed_missing([item["hash"] for item in items], model, load_hash)
    judged = sorted({i for group in groups for i in (*group.window, *group.wider)})
    found = store.vectors([items[i]["hash"] for i in judged], model, load_hash)
    return dict(zip(judged, found, strict=True))


def judged_observations(store, analyzer, items: list[dict[str, Any]], groups: list[Group], load):
    """The analyzer's observations of the images the groups judge (only those: each is analysed
    once and cached in the history store by content hash), by item index."""
    judged = sorted({i for group in groups for i in (*group.window, *group.wider)})
    by_hash = {items[i]["hash"]: items[i]["path"] for i in judged}
    found = store.observations(
        [items[i]["hash"] for i in judged], analyzer, lambda h: load(by_hash[h])
    )
    return dict(zip(judged, found, strict=True))


# -- the images a rut check reads (`zit ruts`, `/api/ruts`, the MCP tool) -------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def collect_images(paths: list[Path], roots: list[Path] | None = None) -> list[Path]:
    """The image files named or inside the folders named (not recursive), in name order; with
    `roots`, only paths inside them (a server judges its own images only)."""
    from zit_agent.errors import UserError

    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if roots is not None and not any(path.resolve().is_relative_to(r) for r in roots):
            raise UserError(
                f"{given} is outside ZIT_HOME", hint="this server judges its own images only"
            )
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                key=lambda p: p.name,
            )
            if not found:
                raise UserError(
                    f"no images in {path}", hint=f"give files ending in {', '.join(IMAGE_SUFFIXES)}"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"no such file or folder: {path}", hint="check the path")
    if len(files) < 2:
        raise UserError("need two or more images to compare", hint="give more images or a folder")
    return files


def image_item(source: Path | bytes, label: str | None = None) -> dict[str, Any]:
    """One image to judge (a file, or uploaded bytes named `label`): checked readable without a
    full decode (a decompression bomb or a damaged file is one line), its content hash, and the
    idea and description of zit's PNG record when it has one."""
    from PIL import Image, UnidentifiedImageError

    from zit_agent.backends.provenance import read_record
    from zit_agent.errors import UserError
    from zit_agent.sequence import described_text

    data = io.BytesIO(source) if isinstance(source, bytes) else None
    label = label or str(source)
    try:
        with Image.open(data or source) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:  # Pillow only warns up to 2x
                raise Image.DecompressionBombError(f"{image.width}x{image.height}")
            image.verify()
    except Image.DecompressionBombError:
        raise UserError(
            f"{label} is too large to judge (more than {Image.MAX_IMAGE_PIXELS:,} pixels)",
            hint="judge images of a normal size, or downscale this one",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        # ValueError: a zTXt or iCCP chunk that inflates past Pillow's limit
        raise UserError(
            f"{label} is not a readable image ({type(err).__name__})",
            hint="give PNG, JPEG, WebP or BMP files",
        ) from None
    if data is not None:
        data.seek(0)
        digest = hashlib.sha256(data.getvalue()).hexdigest()
    else:
        from zit_agent.agent.history import file_hash

        digest = file_hash(source)
    record = read_record(data or source) or {}
    text = record.get("text")
    return {
        "path": label if data is not None else source,
        "hash": digest,
        "idea": record.get("idea"),
        "text": described_text(text) if text else None,
    }


def judge_images(
    store, embedder, analyzer, items: list[dict[str, Any]], window: int, load, *,
    thresholds: Thresholds | None = None, kinds_note: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`zit ruts`' reading of `items` (the CLI, the server's `/api/ruts` and the MCP tool all
    call this): the groups, the vectors and observations of what they judge (each image embedded
    and analysed once, cached in `store` by content hash), each group judged per kind.
    `thresholds`: the embedder family's unless given; `analyzer` None: the kinds read
    `unmeasured` with `kinds_note`."""
    groups = group_windows(items, window)
    vectors = judged_vectors(store, embedder, items, groups, load=load)
    observations = None
    if analyzer is not None:
        observations = judged_observations(store, analyzer, items, groups, load=load)
    thresholds = thresholds or thresholds_for(embedder.family)
    return judge_groups(
        items, vectors, groups, embedder.name, thresholds, window, observations, kinds_note
    )


def judge_groups(
    items,
    vectors,
    groups,
    embedder: str,
    thresholds,
    window: int,
    observations: dict[int, Observation] | None = None,
    kinds_note: str | None = None,
) -> dict[str, Any]:
    """The report over all images, plus one per idea when the images carry ideas (each idea's
    wider window: the newest images of the other ideas). `vectors` maps an item's index to its
    vector, for the indices the groups name; `observations` likewise to an analyzer's
    observation (then each report has its kinds); `kinds_note`: why there are none (the kinds
    read `unmeasured` with it)."""
    import numpy as np

    def report(group: Group) -> RutReport:
        texts = [items[i]["text"] for i in group.window]
        labels = [str(items[i]["path"]) for i in group.window]
        found = judge(
            np.stack([vectors[i] for i in group.window]),
            embedder=embedder,
            thresholds=thresholds,
            window=window,
            labels=labels,
            texts=texts if all(texts) else None,
            wider=np.stack([vectors[i] for i in group.wider]) if group.wider else None,
            wider_labels=[str(items[i]["path"]) for i in group.wider],
        )
        if observations is not None:
            kinds = judge_kinds(
                [observations[i] for i in group.window],
                labels,
                wider=[observations[i] for i in group.wider],
                wider_labels=[str(items[i]["path"]) for i in group.wider],
            )
        elif kinds_note is not None:
            kinds = unmeasured_kinds(kinds_note, len(group.window))
        else:
            return found
        return with_kinds(found, kinds)

    everything, *per_idea = groups
    result = report_summary(report(everything))
    result["groups"] = [{"idea": g.idea, **report_summary(report(g))} for g in per_idea]
    return result


def report_summary(report: RutReport) -> dict[str, Any]:
    data = report.model_dump(include=set(REPORT_FIELDS))
    data["thresholds"] = report.thresholds.model_dump()
    data["kinds"] = {k: r.model_dump() for k, r in report.kinds.items()} or None
    data["axes"] = (
        {"unstated": report.axes.unstated, "repeated": report.axes.repeated}
        if report.axes
        else None
    )
    return data
