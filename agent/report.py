"""What a run leaves behind: the summary (`generate --json`, the demo's `summary.json`) and an HTML
page of the attempts.

The HTML helpers are generic, for any report with images (the eval report uses them too):
`page(title, sections)` wraps sections in one self-contained page (inline CSS), `section(title,
body)`, `image_grid(paths, base, captions)` shows images with captions, paths relative to the page,
`table(headers, rows)`. Files are written with `agent.files` (atomic).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zit_agent.agent.state import AgentState, Attempt

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
.grid { display: flex; flex-wrap: wrap; gap: .75rem; }
figure { margin: 0; width: 200px; } figure img { width: 200px; height: auto; border: 1px solid #ccc; }
figcaption { font-size: .75rem; color: #555; word-break: break-word; }
table { border-collapse: collapse; font-size: .85rem; }
td, th { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
.ok { color: #17702c; font-weight: bold; } .warn { color: #a86b00; font-weight: bold; }
.rut { color: #b3261e; font-weight: bold; } .agent { background: #fff3c4; }
.note { background: #f4f6f8; padding: .6rem .8rem; border-left: 3px solid #8aa; }
.unmeasured { color: #777; } .faces { display: flex; flex-wrap: wrap; gap: .4rem; align-items: end; }
.face { width: 72px; height: 72px; border: 1px solid #ccc; background-repeat: no-repeat; }
"""


# -- the summary ---------------------------------------------------------------------------------
def rut_episodes(verdicts: Sequence[str | None]) -> tuple[int, int]:
    """(ruts detected, ruts escaped): a rut episode starts at a `rut` reading and is escaped when
    a later attempt reads `ok`."""
    detected = escaped = 0
    in_rut = False
    for verdict in verdicts:
        if verdict == "rut" and not in_rut:
            detected, in_rut = detected + 1, True
        elif verdict == "ok" and in_rut:
            escaped, in_rut = escaped + 1, False
    return detected, escaped


def attempt_details(attempt: Attempt) -> dict[str, Any]:
    scores = attempt.scores.model_dump() if attempt.scores else None
    return {
        "attempt": attempt.number,
        "verdict": attempt.scores.verdict if attempt.scores else None,
        "scores": scores,
        "levers": [lever.model_dump() for lever in attempt.levers],
        "images": attempt.images,
        "shots": [
            {
                "description": shot.description.full_text,
                "agent_stated": shot.description.agent_stated,
                "stated_axes": shot.description.stated_axes,
                "writer": shot.description.writer,
                "token_count": len(shot.sequence_ids),
                "token_ids": shot.sequence_ids,
                "seeds": shot.seeds,
                "images": shot.images,
                "steps_spent": shot.steps_spent,
                "candidates": shot.candidates,
            }
            for shot in attempt.shots
        ],
        "steps_spent": sum(shot.steps_spent for shot in attempt.shots),
        "render": attempt.knobs.model_dump(),
        # What the writer-side rut check found before this attempt (the `writer` lever's values).
        "writer_rut": next((lv.values for lv in attempt.levers if lv.name == "writer"), None),
    }


def summary(state: AgentState) -> dict[str, Any]:
    """The run as JSON: the keys of `zit generate --json` and the demo's `summary.json`."""
    verdicts = [a.scores.verdict if a.scores else None for a in state.attempts]
    detected, escaped = rut_episodes(verdicts)
    final = state.attempts[state.final_attempt] if state.final_attempt is not None else None
    return {
        "idea": state.idea,
        "images": final.images if final else [],
        "attempts": len(state.attempts),
        "ruts_detected": detected,
        "ruts_escaped": escaped,
        "final_verdict": state.final_verdict,
        "final_attempt": final.number if final else None,
        "exhausted": state.exhausted,
        "message": state.message,
        "run": state.run_id,
        "per_attempt": [attempt_details(a) for a in state.attempts],
    }


# -- the attempts page ---------------------------------------------------------------------------
def run_page(state: AgentState, page_path: Path, extra_sections: Iterable[str] = ()) -> str:
    """The HTML page of a run: the outcome, the rut found and how it was escaped, every attempt."""
    data = summary(state)
    base = page_path.parent
    intro = (
        f"<p>Idea: <b>{_e(state.idea)}</b></p>"
        f"<p class='note'>{data['attempts']} attempt(s); ruts detected {data['ruts_detected']}, "
        f"escaped {data['ruts_escaped']}; final verdict {_verdict(state.final_verdict)}. "
        f"{_e(state.message)}</p>"
    )
    sections = [section("Outcome", intro + _story(state))]
    sections += [_attempt_section(a, base) for a in state.attempts]
    sections += list(extra_sections)
    return page(f"zit: {state.idea}", sections)


def _story(state: AgentState) -> str:
    first_rut = next((a for a in state.attempts if a.scores and a.scores.verdict == "rut"), None)
    if first_rut is None:
        return "<p>No rut was found.</p>"
    scores = first_rut.scores
    parts = [
        f"<p>The rut: attempt {first_rut.number} read {_verdict('rut')} (mean similarity "
        f"{scores.mean_similarity:.3f}, Vendi {scores.vendi:.2f} of {len(first_rut.images)}); "
        f"the axes the prompts left unstated or repeated (as stated, not measured): "
        f"{_e(', '.join(scores.axes) or 'none named')}.</p>"
    ]
    later = state.attempts[first_rut.number :]
    rows = [
        [str(a.number), lever.name, _e(lever.detail), _e(lever.effect or "")]
        for a in later
        for lever in a.levers
    ]
    if rows:
        parts.append(
            "<p>How the agent got out:</p>" + table(["attempt", "lever", "what", "effect"], rows)
        )
    return "".join(parts)


def _attempt_section(attempt: Attempt, base: Path) -> str:
    scores = attempt.scores
    head = f"Attempt {attempt.number}"
    reading = (
        f"<p>Verdict {_verdict(scores.verdict)}: mean similarity {scores.mean_similarity:.3f}, "
        f"max {scores.max_similarity:.3f}, Vendi {scores.vendi:.2f}, near-duplicates "
        f"{scores.near_duplicate_rate:.0%} ({_e(scores.embedder)} embedder).</p>"
        if scores
        else "<p>Not judged (rut checks off).</p>"
    )
    levers = "".join(
        f"<li><b>{_e(lever.name)}</b>: {_e(lever.detail)}"
        + (f" &rarr; {_e(lever.effect)}" if lever.effect else "")
        + "</li>"
        for lever in attempt.levers
    )
    paths, captions = [], []
    for shot in attempt.shots:
        for path, seed in zip(shot.images, shot.seeds, strict=False):
            paths.append(Path(path))
            captions.append(f"seed {seed}: " + _description_html(shot.description))
    body = (
        reading
        + (kinds_html(scores.kinds, base) if scores and scores.kinds else "")
        + (f"<ul>{levers}</ul>" if levers else "")
        + image_grid(paths, base, captions, escape=False)
    )
    return section(head, body)


def kinds_html(kinds: dict[str, dict[str, Any]], base: Path) -> str:
    """The rut kinds measured on the images (a table), and the faces of each person seen in more
    than one image, cropped from the images (so the recurring face shows at a glance)."""
    rows = []
    for kind, found in kinds.items():
        bins = ", ".join(f"{_e(b)} {n}" for b, n in (found.get("bins") or {}).items())
        rows.append([_e(kind), _verdict(found["verdict"]), _e(found["reason"]), bins])
    parts = [table(["kind", "verdict", "reading (measured)", "bins"], rows)]
    faces = (kinds.get("identity") or {}).get("faces") or []
    by_person: dict[int, list[dict[str, Any]]] = {}
    for face in faces:
        by_person.setdefault(face["person"], []).append(face)
    for person, found in by_person.items():
        if len({f["label"] for f in found}) < 2:
            continue
        crops = "".join(face_crop(f, base) for f in found)
        parts.append(
            f"<p>Person {person + 1}, in {len({f['label'] for f in found})} images:</p>"
            f"<div class='faces'>{crops}</div>"
        )
    return "".join(parts)


def face_crop(face: dict[str, Any], base: Path, size: int = 72) -> str:
    """One face cut out of its image by CSS (no file written): the image scaled so the face box
    fills `size` pixels, shifted to the box."""
    left, top, right, bottom = face["box"]
    scale = size / max(right - left, bottom - top, 1)
    src = html.escape(quote(os.path.relpath(face["label"], base)), quote=True)
    style = (
        f"background-image:url('{src}');"
        f"background-size:{face['width'] * scale:.0f}px {face['height'] * scale:.0f}px;"
        f"background-position:{-left * scale:.0f}px {-top * scale:.0f}px"
    )
    return f"<div class='face' style=\"{style}\" title='{_e(face['label'])}'></div>"


def _description_html(desc) -> str:
    text = _e(desc.text)
    if desc.agent_phrase:
        text += f"<span class='agent' title='stated by the agent'>{_e(desc.agent_phrase)}</span>"
    return text


def _verdict(verdict: str | None) -> str:
    return f"<span class='{_e(verdict or '')}'>{_e(verdict or 'none')}</span>"


# -- generic helpers -----------------------------------------------------------------------------
def page(title: str, sections: Iterable[str]) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def image_grid(
    paths: Sequence[Path], base: Path, captions: Sequence[str] | None = None, *, escape: bool = True
) -> str:
    """Images as a wrapping grid, linked relative to `base` (the page's folder)."""
    figures = []
    for i, path in enumerate(paths):
        src = html.escape(os.path.relpath(path, base), quote=True)
        caption = captions[i] if captions and i < len(captions) else ""
        caption = _e(caption) if escape else caption
        figures.append(
            f"<figure><a href='{src}'><img src='{src}' loading='lazy' alt=''></a>"
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return f"<div class='grid'>{''.join(figures)}</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table; cells are inserted as given (escape them first)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
