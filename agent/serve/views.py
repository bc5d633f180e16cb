"""The agent's state as the API's and the page's views: turns, attempts, shots, image references.

Images appear by id (their content hash, as the history store records them), never by path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zit_agent.agent.serve.models import (
    AttemptView,
    GenerateResponse,
    ImageRef,
    LeverView,
    SessionView,
    ShotView,
    TurnView,
)

if TYPE_CHECKING:
    from zit_agent.agent.state import AgentState, Attempt, Shot


def image_url(image_id: str) -> str:
    return f"/images/{image_id}.png"


def image_ref(image_id: str, seed: int | None = None) -> ImageRef:
    return ImageRef(id=image_id, url=image_url(image_id), seed=seed)


def shot_images(shot: Shot) -> list[ImageRef]:
    from zit_agent.agent.serve.jobs import image_id_of

    hashes = shot.image_hashes
    if len(hashes) != len(shot.images):  # recorded without a history store
        hashes = [image_id_of(path) for path in shot.images]
    seeds = shot.seeds if len(shot.seeds) == len(shot.images) else [None] * len(shot.images)
    return [image_ref(h, s) for h, s in zip(hashes, seeds, strict=True) if h]


def shot_view(shot: Shot) -> ShotView:
    desc = shot.description
    return ShotView(
        description=desc.full_text,
        think=desc.think,
        writer=desc.writer,
        agent_phrase=desc.agent_phrase,
        token_count=len(shot.sequence_ids),
        seeds=shot.seeds,
        images=shot_images(shot),
    )


def attempt_view(attempt: Attempt) -> AttemptView:
    scores = attempt.scores
    shots = [shot_view(shot) for shot in attempt.shots]
    return AttemptView(
        number=attempt.number,
        verdict=scores.verdict if scores else None,
        reason=scores.reason if scores else "",
        mean_similarity=scores.mean_similarity if scores else None,
        vendi=scores.vendi if scores else None,
        count=scores.count if scores else len(attempt.images),
        kinds={kind: found["verdict"] for kind, found in scores.kinds.items()} if scores else {},
        levers=[
            LeverView(name=lv.name, detail=lv.detail, effect=lv.effect) for lv in attempt.levers
        ],
        shots=shots,
        images=[ref for shot in shots for ref in shot.images],
    )


def session_view(name: str, state: AgentState | None, status: str) -> SessionView:
    if state is None:
        return SessionView(name=name, status=status, idea="", turns=0)
    turns = [
        TurnView(
            number=i,
            message=turn.message,
            verdict=turn.verdict,
            error=turn.error,
            shots=[shot_view(shot) for shot in turn.shots],
            attempts=[attempt_view(state.attempts[a]) for a in turn.attempts],
            settings=turn.knobs.model_dump(),
        )
        for i, turn in enumerate(state.turns, 1)
    ]
    return SessionView(
        name=name, status=status, idea=state.idea, turns=len(turns), ruts=state.ruts,
        history=turns,
    )  # fmt: skip


def generate_response(state: AgentState) -> GenerateResponse:
    from zit_agent.agent.report import rut_episodes

    attempts = [attempt_view(a) for a in state.attempts]
    final = attempts[state.final_attempt] if state.final_attempt is not None else None
    detected, escaped = rut_episodes([a.verdict for a in attempts])
    return GenerateResponse(
        run=state.run_id,
        idea=state.idea,
        images=final.images if final else [],
        final_verdict=state.final_verdict,
        message=state.message,
        ruts_detected=detected,
        ruts_escaped=escaped,
        attempts=attempts,
    )


def descriptions_by_image(state: AgentState) -> dict[str, str]:
    """The description each final image rendered (OpenAI's `revised_prompt`)."""
    if state.final_attempt is None:
        return {}
    found = {}
    for shot in state.attempts[state.final_attempt].shots:
        for ref in shot_images(shot):
            found[ref.id] = shot.description.full_text
    return found
