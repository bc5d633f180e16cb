"""What the routes do: thin calls of the run API (`zit_agent.agent.run`, `zit_agent.agent.chat`).

Each `*_job` function checks a request completely (bad input is a 422 before anything waits in the
queue) and returns the work the job queue runs. The lookups (sessions, images, eval runs) read
what the CLI writes: the same sessions database, history store and ZIT_HOME folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from zit_agent.agent.serve.app import Conflict, NotFound, ServeState
from zit_agent.agent.serve.models import (
    AttemptView,
    GenerateResponse,
    ImageRef,
    RenderResponse,
    RutsResponse,
    SessionSummary,
    SessionView,
    ShotView,
    TokensRequest,
    TokensResponse,
)
from zit_agent.agent.serve.views import generate_response, image_ref, session_view
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from zit_agent.agent.history import HistoryStore, ImageRow
    from zit_agent.agent.run import Runner
    from zit_agent.agent.serve.jobs import Job
    from zit_agent.agent.state import AgentState

Work = Callable[["Job"], BaseModel]
IMAGE_ID = re.compile(r"[0-9a-f]{64}")
COMPARED_PARTS = ("backend", "writer", "image_model")  # a session keeps the parts it started with
EVAL_DEPTH = 4  # how deep under ZIT_HOME eval runs are looked for
SKIPPED_FOLDERS = {"images", "jobs", "work", "sessions.locks"}


def merged(state: ServeState, request: dict[str, Any]) -> BaseModel:
    """The server's options (`zit serve --steps 4 ...`) with those a request set on top."""
    from zit_agent.options import given, run_options

    request = {k: v for k, v in request.items() if v is not None}
    for spec in request.get("lora") or []:
        check_request_path(state, _lora_path(spec) if isinstance(spec, str) else "", "lora")
    if request.get("control") is not None:
        check_request_path(state, str(request["control"]), "control")
    return run_options(**{**given(state.options), **request})


def check_request_path(state: ServeState, path: str, what: str) -> None:
    """A file a request names (a LoRA, a control map) must lie under the server's ZIT_HOME: a
    path elsewhere gets one answer whether or not it exists, so no client can learn which of
    the server's files exist. The check looks at the path only (links followed), never at the
    file; inside ZIT_HOME the usual checks follow."""
    home = Path(state.settings.home).resolve()
    try:  # resolved as the run resolves it (from the server's folder); `~` is not expanded
        resolved = Path(path).resolve() if path and not path.startswith("~") else None
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        resolved = None
    if resolved is None or not resolved.is_relative_to(home):
        raise UserError(
            f"a request's {what} must name a file under the server's ZIT_HOME",
            hint=f"put the file under {home} on the server and name it there",
        )


def _lora_path(spec: str) -> str:
    """The path of `PATH` or `PATH:STRENGTH` (as `agent.run.parse_lora` splits it)."""
    head, sep, tail = spec.rpartition(":")
    return head if sep and head and re.fullmatch(r"[-+]?[0-9.eE]+", tail) else spec


def check_command_paths(state: ServeState, text: str) -> None:
    """The paths of `/lora PATH:S` and `/control PATH` sent over HTTP (see `check_request_path`)."""
    raw = text.strip()
    name, _, arg = raw[1:].partition(" ") if raw.startswith("/") else ("", "", "")
    arg = arg.strip()
    if name.lower() == "lora" and arg:
        check_request_path(state, _lora_path(arg), "/lora")
    elif name.lower() == "control" and arg and arg.lower() != "none":
        check_request_path(state, arg, "/control")


# -- generate ------------------------------------------------------------------------------------
def generate_job(state: ServeState, idea: str, options: BaseModel, *, ruts: bool) -> Work:
    """The rut-avoiding loop, or the plain path (no writer, no ruts, Z-Image): as `zit generate`."""
    from zit_agent.agent.run import check_request, run_id_for

    runner = state.require()
    check_request(state.settings, options, ruts=ruts, idea=idea)
    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")

    def work(job: Job) -> GenerateResponse:
        run = f"{run_id_for(idea)}-{job.id[:6]}"
        with contextlib.closing(state.store()) as store:
            if runner.plain_path(options, ruts=ruts):
                return _plain(state, runner, job, idea, options, store, run)
            final = runner.generate(
                idea, options, out_dir=state.serve_dir, ruts=ruts, on_event=job.on_event,
                checkpointer=state.saver, store=store, run_id=run,
            )  # fmt: skip
        return generate_response(final)

    return work


def _plain(state, runner: Runner, job: Job, idea: str, options, store, run: str):
    from zit_agent.backends.provenance import read_record

    job.on_event("render", {"attempt": 1, "images": options.count or 1})
    result = runner.render_plain(idea, options, out_dir=state.serve_dir)
    job.on_event("rendered", {"attempt": 1, "images": result["images"]})
    refs = [
        record_image(
            store, path, idea=idea, seed=seed, session=run, settings=result["options"],
            sequence_hash=(read_record(path) or {}).get("token_sha256"),
        )
        for path, seed in zip(result["images"], result["seeds"], strict=True)
    ]  # fmt: skip
    ideas = result.get("ideas") or [idea] * len(refs)  # a wildcard template: each seed's own
    shots = [
        ShotView(description=text, token_count=result["token_count"], seeds=[seed], images=[ref])
        for text, seed, ref in zip(ideas, result["seeds"], refs, strict=True)
    ] if "ideas" in result else [ShotView(
        description=idea, token_count=result["token_count"], seeds=result["seeds"], images=refs
    )]  # fmt: skip
    return GenerateResponse(
        run=run, idea=idea, images=refs, message="rendered once: the idea's plain sequence",
        attempts=[AttemptView(number=1, shots=shots, images=refs, count=len(refs))],
    )  # fmt: skip


def record_image(store: HistoryStore, path: str | Path, **fields: Any) -> ImageRef:
    row = store.add_image(path, **fields)
    return image_ref(row.content_hash, fields.get("seed"))


# -- chat sessions -------------------------------------------------------------------------------
def chat_job(state: ServeState, name: str, text: str, options: BaseModel, *, new: bool) -> Work:
    """A session's first turn (`new`: the idea) or a later one (text or a command), through
    `ChatSession.turn`, as `zit chat --session NAME --message TEXT`."""
    from zit_agent.agent.chat import check_session_name, stored_parts
    from zit_agent.agent.commands import Local, parse_command
    from zit_agent.agent.run import check_request

    runner = state.require()
    check_session_name(name)
    stored = stored_parts(state.saver, name)
    if new and stored:
        raise Conflict(f"session {name!r} exists", hint="send it a message, or pick another name")
    if not new and not stored:
        raise NotFound(f"no session named {name!r}", hint="start one first")
    _check_parts(runner, stored, name)
    check_command_paths(state, text)  # before anything looks at the file
    if new:
        check_request(state.settings, options, ruts=bool(options.ruts))
    else:
        parse_command(text)  # bad input is refused before it waits in the queue

    def work(job: Job) -> SessionView:
        session = runner.chat(
            name, state.saver, out_dir=state.chat_dir(name), on_event=job.on_event
        )
        if new and session.status() != "new":
            raise Conflict(f"session {name!r} exists", hint="pick another name")
        result = session.turn(text, options)
        view = session_view(name, session.state(), session.status())
        if isinstance(result, Local):
            view.answer = local_answer(session.state(), result.kind)
        return view

    return work


def _check_parts(runner: Runner, stored: dict[str, Any], name: str) -> None:
    """Sessions never mix parts: one started with other models is refused, not continued with
    this server's."""
    mine = runner.parts.spec.model_dump()
    for key in COMPARED_PARTS:
        if stored and stored.get(key) != mine[key]:
            raise Conflict(
                f"session {name!r} was started with {key} {stored.get(key)!r}; this server runs "
                f"{mine[key]!r}",
                hint=f"continue it with `zit chat --session {name}`, or serve those parts",
            )


def local_answer(state: AgentState | None, kind: str) -> str:
    """What `/help`, `/show`, `/tokens`, `/history` and `/quit` answer."""
    from zit_agent.agent.commands import help_text

    if kind == "help" or state is None:
        return help_text()
    if kind == "show":
        return "\n\n".join(shot.sequence_text for shot in state.shots)
    if kind == "tokens":
        return "\n".join(f"{len(s.sequence_ids)} tokens: {s.sequence_ids}" for s in state.shots)
    if kind == "history":
        return "\n".join(f"{i}. {turn.message}" for i, turn in enumerate(state.turns, 1))
    return "the session stays as it is: come back to it any time"


def read_session(state: ServeState, name: str) -> SessionView:
    from zit_agent.agent.chat import check_session_name

    check_session_name(name)
    found, status = _session_state(state, name)
    if found is None:
        raise NotFound(f"no session named {name!r}", hint="start one first")
    return session_view(name, found, status)


def list_sessions(state: ServeState, limit: int = 100) -> list[SessionSummary]:
    from zit_agent.agent.session import thread_names

    summaries = []
    for name in thread_names(state.saver, "chat")[:limit]:
        found, status = _session_state(state, name)
        if found is not None:
            summaries.append(
                SessionSummary(name=name, status=status, idea=found.idea, turns=len(found.turns))
            )
    return summaries


def _session_state(state: ServeState, name: str):
    from zit_agent.agent.chat import read_state, read_status

    app, config = _thread(state, f"chat:{name}")
    return read_state(app, config), read_status(app, config)


def _thread(state: ServeState, thread_id: str):
    from zit_agent.agent.graph import run_config
    from zit_agent.agent.run import compiled_graph
    from zit_agent.agent.state import AgentState

    return compiled_graph(state.saver), run_config(AgentState(idea="-"), thread_id)


# -- tokens --------------------------------------------------------------------------------------
def tokens(state: ServeState, request: TokensRequest) -> TokensResponse:
    """As `zit tokens --json`, with the server's tokenizer (and its DiT's ceiling)."""
    from zit_agent.options import run_options
    from zit_agent.sequence import assemble, assembled_json, sequence_of_parts

    runner = state.require()
    sequence = sequence_of_parts(
        request.idea, system=request.system, think=request.think,
        assistant=request.assistant, close=request.close,
    )  # fmt: skip
    budget = runner.budget(run_options(max_tokens=request.max_tokens))
    result = assemble(sequence, runner.parts.tokenizer, max_tokens=budget)
    return TokensResponse(**assembled_json(result, runner.parts.tokenizer.source))


# -- images --------------------------------------------------------------------------------------
def find_image(state: ServeState, image_id: str) -> tuple[ImageRow, Path]:
    """The history store's record of an image and its file: only a PNG inside ZIT_HOME whose bytes
    still have this hash. Anything else is not found (404), whatever the id says."""
    from zit_agent.agent.history import file_hash

    if not IMAGE_ID.fullmatch(image_id):
        raise NotFound("no such image")
    with contextlib.closing(state.store()) as store:
        rows = store.images_by_hash(image_id)
    for row in rows:
        path = inside(state.settings.home, row.path)
        if path is not None and path.suffix == ".png" and file_hash(path) == image_id:
            return row, path
    raise NotFound(f"no image {image_id[:12]}")


def inside(root: Path, path: str | Path) -> Path | None:
    """`path` resolved (links followed) when it is a file inside `root`; else None."""
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(Path(root).resolve()):
        return None
    return resolved


def recent_images(state: ServeState, limit: int) -> list[dict[str, Any]]:
    """The newest images of the history store that can be served, newest first."""
    with contextlib.closing(state.store()) as store:
        rows = store.images(limit=limit)
    home, seen, found = state.settings.home, set(), []
    for row in reversed(rows):
        if row.content_hash in seen or inside(home, row.path) is None:
            continue
        seen.add(row.content_hash)
        found.append({"ref": image_ref(row.content_hash, row.seed), "row": row})
    return found


def image_record(state: ServeState, image_id: str) -> dict[str, Any]:
    from zit_agent.backends.provenance import read_record

    row, path = find_image(state, image_id)
    return {
        "image": image_ref(image_id, row.seed).model_dump(),
        "idea": row.idea,
        "session": row.session,
        "created_at": row.created_at,
        "provenance": read_record(path),
    }


def render_again_job(state: ServeState, image_id: str, seed: int | None) -> Work:
    """An image rendered again from its record: its stored token ids, every setting the record
    says (sampler, scheduler, shift, negative prompt, LoRAs, conditioning noise, control map),
    and, for its own seed, the batch it was rendered in (the same pixels). What cannot be kept is
    named in the answer (`not_kept`, `exact: false`), never silently dropped."""
    from zit_agent.backends.provenance import read_record

    runner = state.require()
    row, path = find_image(state, image_id)
    record = read_record(path) or {}
    request, not_kept = recorded_request(state, runner, row, record)

    def work(job: Job) -> RenderResponse:
        job.on_event("render", {"attempt": 1, "images": 1})
        path, item, note = runner.rerender(
            {**record, "idea": row.idea}, out_dir=state.serve_dir, source=f"image {image_id}",
            request=request, seed=seed,
        )  # fmt: skip
        lost = not_kept + parts_not_kept(record, item.record)
        paths = [path]
        job.on_event("rendered", {"attempt": 1, "images": [str(p) for p in paths]})
        with contextlib.closing(state.store()) as store:
            refs = [
                record_image(
                    store, paths[0], idea=row.idea, seed=item.seed,
                    sequence_hash=item.record.get("token_sha256") or row.sequence_hash,
                    settings=request.options.model_dump(exclude={"negative_ids"}),
                    session=f"again-{image_id[:16]}",
                )
            ]  # fmt: skip
        return RenderResponse(
            images=refs, token_count=len(request.token_ids), exact=not lost and note is None,
            not_kept=lost, note=note,
        )  # fmt: skip

    return work


def recorded_request(
    state: ServeState, runner: Runner, row: ImageRow, record: dict[str, Any]
) -> tuple[Any, list[str]]:
    """The record as a `RenderRequest` this server can render, and what of it cannot be kept
    here (another model, a ControlNet it lacks, a map or LoRA file gone): dropped and named.
    Bad records are 422s before the job waits in the queue."""
    from zit_agent.backends.provenance import (
        control_changed,
        encode_ids,
        record_token_ids,
        render_request,
    )

    if record.get("token_ids") is not None:
        ids = record_token_ids(record)
    else:  # an older record, or the sketch stand-in's: the ids its session or run stored
        ids = stored_sequence(state, runner, row, record)
    seed = record.get("seed") if record.get("seed") is not None else (row.seed or 0)
    packed = {"token_ids": encode_ids(ids), "token_count": len(ids), "token_sha256": None}
    request = render_request({**record, **packed, "seed": seed})
    options, not_kept = request.options, []
    backend = runner.parts.backend
    if options.control_image:
        why = control_changed(record)
        if backend.controlnet is None:
            why = "this server has no ControlNet"
        elif request.controlnet not in (None, backend.controlnet):
            why = f"this server's ControlNet is {backend.controlnet}"
        if why:
            not_kept.append(f"control map {options.control_image} ({why})")
            options = options.model_copy(update={"control_image": None})
    loras = [(options.lora, options.lora_strength)] if options.lora else []
    loras += list(options.extra_loras)
    kept = [(lora, strength) for lora, strength in loras if Path(lora).is_file()]
    if len(kept) < len(loras):
        not_kept += [
            f"LoRA {lora} (the file is gone)" for lora, _ in loras if lora not in dict(kept)
        ]
        first = kept[0] if kept else (None, 1.0)
        options = options.model_copy(
            update={"lora": first[0], "lora_strength": first[1], "extra_loras": kept[1:]}
        )
    runner.parts.backend.check(options)  # a bad record is a 422 before the queue
    return replace(request, options=options), not_kept


def parts_not_kept(record: dict[str, Any], rendered: dict[str, Any]) -> list[str]:
    """The model and dtype a record names that this server rendered with others."""
    return [
        f"{key} {record[key]} (this server renders with {rendered[key]})"
        for key in ("model", "dtype")
        if record.get(key) is not None and rendered.get(key) not in (None, record[key])
    ]


def stored_sequence(state: ServeState, runner: Runner, row: ImageRow, record: dict) -> list[int]:
    """The exact ids an image rendered: from its session's or run's checkpointed state, else its
    idea's plain sequence when that hashes the same. Never a guess: not found otherwise."""
    from zit_agent.agent.chat import read_state
    from zit_agent.backends.provenance import token_sha256
    from zit_agent.sequence import ChatSequence, assemble

    wanted = row.sequence_hash or record.get("token_sha256")
    if not wanted:
        raise NotFound("this image's token ids were not recorded")
    for thread in (f"chat:{row.session}", f"generate:{row.session}") if row.session else ():
        found = read_state(*_thread(state, thread))
        shots = [shot for a in found.attempts for shot in a.shots] if found else []
        for shot in shots:
            if shot.sequence_ids and token_sha256(shot.sequence_ids) == wanted:
                return list(shot.sequence_ids)
    if row.idea:
        budget = record.get("token_count") or state.settings.render_value("max_tokens")
        with contextlib.suppress(UserError):
            plain = assemble(
                ChatSequence.plain(row.idea), runner.parts.tokenizer, max_tokens=budget
            )
            if token_sha256(plain.ids) == wanted:
                return plain.ids
    raise NotFound("this image's token ids are not stored (its session or run is gone)")


# -- image edits (image-to-image, inpainting) ----------------------------------------------------
def save_upload(state: ServeState, data: bytes, what: str, *, mask: bool = False) -> str:
    """An uploaded init image or mask, checked and kept under the server's folder by content
    (`uploads/SHA256.png`), so the records name a file that stays and a rerender finds it. A mask
    with transparency is OpenAI's kind (transparent: edit): it becomes zit's (white: redraw)."""
    from PIL import Image, UnidentifiedImageError

    from zit_agent.files import write_atomic

    try:
        with Image.open(io.BytesIO(data)) as upload:
            upload.load()
            image = upload.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(
            f"the {what} is not a readable image ({type(err).__name__})",
            hint="upload a PNG, JPEG or WebP file",
        ) from None
    if mask:
        image = openai_mask(image)
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    folder = state.serve_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(png).hexdigest()}.png"
    if not path.is_file():
        write_atomic(path, png)
    return str(path)


def openai_mask(image):
    """OpenAI's mask (fully transparent pixels are edited) as zit's (white: redraw, black:
    keep); a mask with no fully transparent pixel (the page's brush mask: white strokes on
    black) is taken as zit's own already."""
    import numpy as np
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if (alpha == 0).any():
            return Image.fromarray(np.where(alpha == 0, 255, 0).astype(np.uint8))
    return image.convert("L")


def edit_job(
    state: ServeState, prompt: str, image: bytes, mask: bytes | None, values: dict[str, Any]
) -> Work:
    """OpenAI's image edit: the prompt rendered from the uploaded image (image-to-image), inside
    the mask when one is given (inpainting); the image's size unless `size` says otherwise."""
    from zit_agent.backends.refine import render_size_for

    state.require()
    init = save_upload(state, image, "image")
    mask_path = save_upload(state, mask, "mask", mask=True) if mask is not None else None
    if not values.get("size"):
        values["size"] = "{}x{}".format(*render_size_for(init))
    options = merged(state, {**values, "init": init, "mask": mask_path, "ruts": False})
    return generate_job(state, prompt, options, ruts=False)


def vary_job(
    state: ServeState, image_id: str, strength: float, count: int, seed: int | None
) -> Work:
    """Variations of a recorded image: its token ids and settings from the image itself, new
    seeds (as `zit vary`)."""
    from types import SimpleNamespace

    from zit_agent.agent.run import image_record as record_of
    from zit_agent.agent.run import seeds_of
    from zit_agent.backends.provenance import render_request
    from zit_agent.backends.refine import check_strength

    runner = state.require()
    row, path = find_image(state, image_id)
    render_request(record_of(path))  # a record with its token ids, or a one-line error
    check_strength(strength)
    seeds = seeds_of(SimpleNamespace(seed=seed), count)

    def work(job: Job) -> RenderResponse:
        job.on_event("render", {"attempt": 1, "images": len(seeds)})
        result = runner.vary(path, strength=strength, seeds=seeds, out_dir=state.serve_dir)
        job.on_event("rendered", {"attempt": 1, "images": result["images"]})
        with contextlib.closing(state.store()) as store:
            refs = [
                record_image(
                    store, p, idea=row.idea, seed=s, sequence_hash=result["token_sha256"],
                    settings={"init": str(path), "strength": strength},
                    session=f"vary-{image_id[:16]}",
                )
                for p, s in zip(result["images"], seeds, strict=True)
            ]  # fmt: skip
        return RenderResponse(images=refs, token_count=result["token_count"], exact=True)

    return work


# -- rut checks of uploaded images ---------------------------------------------------------------
def ruts_job(state: ServeState, uploads: list[tuple[str, bytes]], window: int) -> Work:
    """`zit ruts --json` over uploaded images, with the server's embedder and analyzer."""
    from zit_agent.agent.ruts import image_item, judge_images

    runner = state.require()
    if len(uploads) < 2:
        raise UserError("need two or more images to compare", hint="upload more images")
    items, by_path = [], {}
    for name, data in uploads:
        item = image_item(data, os.path.basename(name or "image")[:120] or "image")
        if item["path"] in by_path:  # two uploads of one name stay apart
            item["path"] = f"{item['path']} ({len(items) + 1})"
        items.append(item)
        by_path[item["path"]] = data

    def work(job: Job) -> RutsResponse:
        from PIL import Image

        embedder = runner.parts.embedder
        job.on_event("embed", {"images": len(items), "embedder": embedder.name})
        with contextlib.closing(state.store()) as store:
            result = judge_images(
                store, embedder, runner.parts.analyzer, items, window,
                lambda path: Image.open(io.BytesIO(by_path[path])).convert("RGB"),
                kinds_note=runner.parts.analyzer_note,
            )  # fmt: skip
        return RutsResponse(**result, notes=runner.parts.notes)

    return work


# -- eval runs -----------------------------------------------------------------------------------
def eval_runs(state: ServeState) -> list[dict[str, Any]]:
    """Eval runs under ZIT_HOME (folders with a report.html), each with an opaque id."""
    home = Path(state.settings.home)
    found = []
    if not home.is_dir():
        return found
    for folder, subfolders, files in os.walk(home):
        depth = len(Path(folder).relative_to(home).parts)
        subfolders[:] = [
            d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith(".")
        ] if depth < EVAL_DEPTH else []  # fmt: skip
        if "report.html" in files and inside(home, Path(folder) / "report.html"):
            relative = Path(folder).relative_to(home).as_posix()
            key = hashlib.sha256(relative.encode()).hexdigest()[:16]
            modified = (Path(folder) / "report.html").stat().st_mtime
            found.append({"id": key, "name": relative, "modified": modified})
    return sorted(found, key=lambda run: -run["modified"])


def eval_report(state: ServeState, run_id: str) -> Path:
    for run in eval_runs(state):
        if run["id"] == run_id:
            path = inside(
                state.settings.home, Path(state.settings.home) / run["name"] / "report.html"
            )
            if path is not None:
                return path
    raise NotFound("no such eval run")
