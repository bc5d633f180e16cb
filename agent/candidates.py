"""Candidates on early previews: which of M previewed seeds to finish.

The image backend renders M seeds to the preview step and shows one preview each
(`ImageBackend.render_candidates`); this module embeds the previews with the rut judge's embedder
and keeps the n that are most different from each other AND from the recent history window (the
wider window: the newest images of any idea, what this user already made). Greedy farthest-point:
each pick is the candidate whose nearest neighbour among the history and the candidates already
kept is farthest (cosine distance, 1 - cos, on the embedder's L2-normalised vectors); ties go to
the earlier seed. With no history the first pick is the first seed.

Previews are early x0 predictions, blurrier than the finished images the history holds, so a
preview's distance to the history reads low for every candidate alike; what counts is the order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from zit_agent.defaults import AGENT

if TYPE_CHECKING:
    from zit_agent.agent.history import HistoryStore
    from zit_agent.backends.base import Embedder, ImageBackend, RenderedImage, RenderOptions


class Candidate(BaseModel):
    seed: int
    kept: bool
    rank: int | None = None  # the order it was chosen in (0 first); None: not kept
    history_distance: float | None = None  # to the nearest recent image (None: no history)
    candidate_distance: float | None = None  # to the nearest other candidate's preview
    # when it was chosen: to the nearest recent or already kept image (None: nothing there yet)
    kept_distance: float | None = None


class CandidateReport(BaseModel):
    """What `--json` and each kept image's record say about a candidates render."""

    previewed: int
    kept: int
    preview_step: int
    steps: int  # denoising steps spent in all (M*K + n*(S-K) on Z-Image)
    plain_steps: int  # what n plain images cost (n*S)
    preview: str  # what a preview is
    embedder: str
    history: int  # recent images compared with
    candidates: list[Candidate]


def choose_diverse(
    vectors: np.ndarray, history: np.ndarray | None, keep: int
) -> tuple[list[int], list[Candidate]]:
    """The `keep` rows of `vectors` most different from each other and from `history` (greedy
    farthest-point), in the order chosen, and each row's distances (seeds filled in later)."""
    count = len(vectors)
    vectors = np.asarray(vectors, dtype=np.float64)
    pair = 1.0 - vectors @ vectors.T
    np.fill_diagonal(pair, np.inf)
    if history is not None and len(history):
        to_history = (1.0 - vectors @ np.asarray(history, dtype=np.float64).T).min(axis=1)
    else:
        to_history = np.full(count, np.inf)
    nearest = to_history.copy()  # each row's distance to what is already there
    chosen: list[int] = []
    at_choice: dict[int, float] = {}
    for _ in range(min(keep, count)):
        open_rows = [i for i in range(count) if i not in chosen]
        best = max(open_rows, key=lambda i: (nearest[i], -i))
        at_choice[best] = float(nearest[best])
        chosen.append(best)
        nearest = np.minimum(nearest, pair[best])
    candidates = [
        Candidate(
            seed=0,
            kept=i in at_choice,
            rank=chosen.index(i) if i in at_choice else None,
            history_distance=_finite(to_history[i]),
            candidate_distance=_finite(pair[i].min()) if count > 1 else None,
            kept_distance=_finite(at_choice.get(i, np.inf)),
        )
        for i in range(count)
    ]
    return chosen, candidates


def _finite(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def history_window(store: HistoryStore | None, embedder: Embedder) -> np.ndarray | None:
    """The newest `AGENT.wider_window` images of any idea that have this embedder's vector."""
    if store is None:
        return None
    vectors, rows = store.recent_vectors(embedder.name, limit=AGENT.wider_window)
    return vectors if len(rows) else None


def render_with_candidates(
    backend: ImageBackend,
    embedder: Embedder,
    store: HistoryStore | None,
    token_ids: list[int],
    seeds: list[int],
    options: RenderOptions,
    *,
    keep: int,
    preview_step: int,
) -> tuple[list[RenderedImage], CandidateReport]:
    """Render `seeds` as candidates and finish the `keep` most different; each kept image's
    record gets the report (every candidate, its seed, distances, kept flag, the steps spent)."""
    history = history_window(store, embedder)
    found: dict[str, Any] = {}

    def choose(previews: list[Any]) -> list[int]:
        vectors = embedder.embed(previews)
        chosen, candidates = choose_diverse(vectors, history, keep)
        found["candidates"] = candidates
        return chosen

    result = backend.render_candidates(token_ids, seeds, options, preview_step, choose)
    candidates = [
        c.model_copy(update={"seed": s}) for c, s in zip(found["candidates"], seeds, strict=True)
    ]
    report = CandidateReport(
        previewed=len(seeds),
        kept=len(result.kept),
        preview_step=preview_step,
        steps=result.steps,
        plain_steps=len(result.kept) * options.steps,
        preview=result.preview,
        embedder=embedder.name,
        history=0 if history is None else len(history),
        candidates=candidates,
    )
    for image in result.kept:
        image.record["candidates"] = report.model_dump()
    return result.kept, report
