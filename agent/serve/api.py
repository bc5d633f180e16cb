"""The HTTP API: OpenAI-compatible images and models, and zit's own JSON API (sessions, tokens,
ruts, images, jobs). Documented by FastAPI at /docs.

Routes that run model work submit one job and, by default, answer when it is done (JSON). With
`Accept: text/event-stream` they answer at once with the job's progress as server-sent events
(`queued`, `start`, the agent's `write`/`assemble`/`render`/`step`/`rendered`/`judge`/`escape`/
`finish`, then `done` with the JSON body, `failed` or `cancelled`). Either way the client that
asked owns the job: when it disconnects, the job is cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from zit_agent.agent.serve import work
from zit_agent.agent.serve.app import Conflict, ServeState, sse
from zit_agent.agent.serve.jobs import PING, Job
from zit_agent.agent.serve.models import (
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    ImagesRequest,
    ImagesResponse,
    JobView,
    ModelCard,
    ModelList,
    OpenAIImage,
    RenderAgain,
    RenderResponse,
    RutsResponse,
    SessionCreate,
    SessionMessage,
    SessionSummary,
    SessionView,
    TokensRequest,
    TokensResponse,
    VaryRequest,
    options_of,
)
from zit_agent.defaults import AGENT, LIMITS, RENDER, SERVE
from zit_agent.errors import UserError

ERRORS = {
    status: {"model": ErrorBody}
    for status in (401, 404, 409, 413, 422, 429, 503)
}  # fmt: skip
router = APIRouter(responses=ERRORS)
WAIT_CHECK_S = 0.25  # how often a waiting request looks for its client's disconnect


def zit(request: Request) -> ServeState:
    return request.app.state.zit


# -- answering with a job ------------------------------------------------------------------------
async def answer(request: Request, job: Job) -> Any:
    """The job's result when done (JSON), or its events as they come (server-sent events)."""
    state = zit(request)
    if "text/event-stream" in request.headers.get("accept", ""):
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Zit-Job": job.id}
        return StreamingResponse(
            stream(state, job, owner=True), media_type="text/event-stream", headers=headers
        )
    await wait_owned(request, state, job)
    return finished(job)


async def stream(state: ServeState, job: Job, *, owner: bool, after: int = -1):
    try:
        async for event in job.follow(after, keepalive=SERVE.keepalive_s):
            yield ": ping\n\n" if event is PING else sse(event)
    finally:  # the client went away (or the job ended)
        if owner and not job.done:
            state.jobs.cancel(job)


async def wait_owned(request: Request, state: ServeState, job: Job) -> None:
    """Wait for the job; a client that went away cancels it. Looked for when idle and, while
    events stream (a 64-image job's steps), at most every `WAIT_CHECK_S`."""
    checked = time.monotonic()
    async for event in job.follow(keepalive=WAIT_CHECK_S):
        if event is not PING and time.monotonic() - checked < WAIT_CHECK_S:
            continue
        checked = time.monotonic()
        if await request.is_disconnected():
            state.jobs.cancel(job)
            return


def finished(job: Job) -> Any:
    if job.status == "done":
        return job.result
    if job.status == "failed":
        raise job.error
    raise Conflict("the job was cancelled before it finished", hint="send the request again")


async def run_job(request: Request, kind: str, make_work, label: str) -> Any:
    """Check the request, queue its job, answer with it. While the models load, the job waits
    for them first and checks the request then (a bad one fails as its job's 422)."""
    state = zit(request)
    if state.status == "loading":
        return await answer(request, state.submit_loading(kind, make_work, label))
    job_work = await asyncio.to_thread(make_work)  # checks may read files and the databases
    return await answer(request, state.submit(kind, job_work, label))


# -- health --------------------------------------------------------------------------------------
@router.get("/health", tags=["server"])
def health(request: Request) -> dict[str, Any]:
    """Always open (no token): loading, ready, failed or stopping, and the queue."""
    state = zit(request)
    jobs = state.jobs
    return {
        "status": state.status,
        "queue": {
            "waiting": jobs.waiting if jobs else 0,
            "size": state.queue_size,
            "running": bool(jobs and jobs.running),
        },
        "uptime_s": round(time.time() - state.started, 1),
    }


# -- OpenAI-compatible ---------------------------------------------------------------------------
def served_model(state: ServeState) -> str:
    """The one model id this server answers to: the image model's name (or the backend's)."""
    from pathlib import PurePath

    from zit_agent.agent.run import parts_spec

    spec = state.runner.parts.spec if state.runner else parts_spec(state.settings, state.options)
    if spec.backend != "zimage":
        return spec.backend
    return (
        spec.image_model
        if not spec.image_model.startswith(("/", ".", "~"))
        else PurePath(spec.image_model).name
    )


@router.get("/v1/models", response_model=ModelList, tags=["openai"])
def models(request: Request) -> ModelList:
    state = zit(request)
    return ModelList(data=[ModelCard(id=served_model(state), created=int(state.started))])


@router.post(
    "/v1/images/generations", response_model=ImagesResponse, response_model_exclude_none=True,
    tags=["openai"],
)  # fmt: skip
async def images_generations(body: ImagesRequest, request: Request) -> ImagesResponse:
    """OpenAI's images API. The prompt is the idea; with n > 1 the rut loop runs (unless
    `ruts: false`) and the images are the final attempt's. zit options go beside OpenAI's."""
    state = zit(request)
    served = served_model(state)
    if body.model not in (None, served):
        raise work.NotFound(f"the model {body.model!r} does not exist here", hint=f"use {served}")
    ruts = body.ruts if body.ruts is not None else body.n > 1
    values = {**options_of(body), "count": body.n, "ruts": ruts}
    values["size"] = None if body.size in (None, "auto") else body.size
    options = work.merged(state, values)
    result: GenerateResponse = await run_job(
        request, "generate", lambda: work.generate_job(state, body.prompt, options, ruts=ruts),
        body.prompt[:80],
    )  # fmt: skip
    if not isinstance(result, GenerateResponse):  # the client went away
        return result
    return await _openai_images(request, state, result, body.response_format)


async def _openai_images(
    request: Request, state: ServeState, result: GenerateResponse, response_format: str
) -> ImagesResponse:
    """A finished job's images as OpenAI answers: base64 PNGs or URLs."""
    described = _descriptions(result)
    data = []
    for ref in result.images:
        item = OpenAIImage(revised_prompt=described.get(ref.id))
        if response_format == "url":
            item.url = str(request.base_url).rstrip("/") + ref.url
        else:
            _, path = await asyncio.to_thread(work.find_image, state, ref.id)
            item.b64_json = base64.b64encode(path.read_bytes()).decode("ascii")
        data.append(item)
    return ImagesResponse(created=int(time.time()), data=data, zit=result)


# -- image edits ---------------------------------------------------------------------------------
Prompt = Annotated[str, Form(min_length=1, max_length=SERVE.max_text)]
Upload = Annotated[UploadFile | None, File()]
Count = Annotated[int, Form(ge=1, le=LIMITS.max_count)]
Size = Annotated[
    str | None, Form(description="WIDTHxHEIGHT (multiples of 16); default: the image's")
]
Seed = Annotated[int | None, Form(ge=0, le=LIMITS.max_seed)]
Strength = Annotated[
    float | None,
    Form(gt=0.0, le=1.0, description="Share redrawn (default 0.6; with a mask 1.0)"),
]


async def _read_upload(upload: UploadFile | None, what: str) -> bytes | None:
    if upload is None:
        return None
    data = await upload.read(SERVE.max_upload_bytes + 1)
    if len(data) > SERVE.max_upload_bytes:
        raise UserError(
            f"the {what} is over {SERVE.max_upload_bytes >> 20} MB", hint="upload a smaller file"
        )
    return data


async def _edit(
    request: Request, prompt: str, images: list[UploadFile], mask: UploadFile | None,
    values: dict[str, Any],
) -> Any:  # fmt: skip
    if len(images) != 1:
        raise UserError(f"{len(images)} images: edit one image at a time", hint="upload one image")
    image = await _read_upload(images[0], "image")
    mask_data = await _read_upload(mask, "mask")
    state = zit(request)
    return await run_job(
        request, "generate", lambda: work.edit_job(state, prompt, image, mask_data, values),
        f"edit: {prompt[:70]}",
    )  # fmt: skip


@router.post(
    "/v1/images/edits", response_model=ImagesResponse, response_model_exclude_none=True,
    tags=["openai"],
)  # fmt: skip
async def images_edits(
    request: Request,
    prompt: Prompt,
    image: Annotated[list[UploadFile] | None, File(description="The image to edit")] = None,
    images: Annotated[list[UploadFile] | None, File(alias="image[]")] = None,
    mask: Upload = None,
    n: Count = 1,
    size: Size = None,
    response_format: Annotated[Literal["b64_json", "url"], Form()] = "b64_json",
    model: Annotated[str | None, Form()] = None,
    seed: Seed = None,
    strength: Strength = None,
) -> Any:
    """OpenAI's image edit: the prompt rendered from the image (image-to-image at `strength`);
    with a mask (OpenAI's: fully transparent pixels are edited; a mask without transparency is
    zit's: white is redrawn) only that region. The answer has the image's size unless `size`."""
    state = zit(request)
    served = served_model(state)
    if model not in (None, served):
        raise work.NotFound(f"the model {model!r} does not exist here", hint=f"use {served}")
    values = {"count": n, "size": None if size == "auto" else size, "seed": seed}
    values["strength"] = strength
    result = await _edit(request, prompt, [*(image or []), *(images or [])], mask, values)
    if not isinstance(result, GenerateResponse):
        return result
    return await _openai_images(request, state, result, response_format)


def _descriptions(result: GenerateResponse) -> dict[str, str]:
    final = {ref.id for ref in result.images}
    return {
        ref.id: shot.description
        for attempt in result.attempts
        for shot in attempt.shots
        for ref in shot.images
        if ref.id in final
    }


# -- generate ------------------------------------------------------------------------------------
@router.post("/api/generate", response_model=GenerateResponse, tags=["zit"])
async def generate(body: GenerateRequest, request: Request) -> Any:
    """`zit generate`: the rut-avoiding loop (ruts on unless `ruts: false`)."""
    state = zit(request)
    ruts = body.ruts is not False
    options = work.merged(state, {**options_of(body), "ruts": ruts})
    return await run_job(
        request, "generate", lambda: work.generate_job(state, body.idea, options, ruts=ruts),
        body.idea[:80],
    )  # fmt: skip


@router.post("/api/edits", response_model=GenerateResponse, tags=["zit"])
async def edits(
    request: Request,
    idea: Prompt,
    image: Annotated[UploadFile, File(description="The image to start from")],
    mask: Upload = None,
    count: Count = 1,
    size: Size = None,
    seed: Seed = None,
    strength: Strength = None,
) -> Any:
    """`zit generate IDEA --init IMAGE [--mask MASK]` with uploaded files: the idea's plain
    sequence rendered from the image (inside the mask: white is redrawn)."""
    values = {"count": count, "size": size, "seed": seed, "strength": strength}
    return await _edit(request, idea, [image], mask, values)


@router.post("/api/images/{image_id}/vary", response_model=RenderResponse, tags=["images"])
async def vary_image(image_id: str, body: VaryRequest, request: Request) -> Any:
    """`zit vary`: variations of a recorded image (its token ids and settings, from the image
    itself, new seeds)."""
    state = zit(request)
    strength = body.strength or (
        RENDER.vary_strong if body.level == "strong" else RENDER.vary_subtle
    )
    return await run_job(
        request, "render",
        lambda: work.vary_job(state, image_id, strength, body.count, body.seed),
        f"vary {image_id[:12]}",
    )  # fmt: skip


# -- chat sessions -------------------------------------------------------------------------------
@router.get("/api/sessions", response_model=list[SessionSummary], tags=["sessions"])
def sessions(request: Request) -> list[SessionSummary]:
    """The chat sessions (`zit chat --session NAME`), most recent first."""
    return work.list_sessions(zit(request))


@router.post("/api/sessions", response_model=SessionView, status_code=201, tags=["sessions"])
async def create_session(body: SessionCreate, request: Request) -> Any:
    """Start a session: its first turn renders the idea. Ruts are checked with `ruts: true`."""
    state = zit(request)
    options = work.merged(state, options_of(body))
    return await run_job(
        request, "chat", lambda: work.chat_job(state, body.name, body.idea, options, new=True),
        f"session {body.name}",
    )  # fmt: skip


@router.get("/api/sessions/{name}", response_model=SessionView, tags=["sessions"])
def read_session(name: str, request: Request) -> SessionView:
    return work.read_session(zit(request), name)


@router.post("/api/sessions/{name}/messages", response_model=SessionView, tags=["sessions"])
async def send_message(name: str, body: SessionMessage, request: Request) -> Any:
    """One turn: text refines the description; /vary, /shorter, /undo, /seed N, /size WxH,
    /layer N, /lora PATH:S change one thing (as in `zit chat`). Options apply to this turn."""
    from zit_agent.options import run_options

    state = zit(request)
    options = run_options(**options_of(body))  # the session's own fill in the rest
    return await run_job(
        request, "chat", lambda: work.chat_job(state, name, body.text, options, new=False),
        f"session {name}",
    )  # fmt: skip


# -- tokens, ruts --------------------------------------------------------------------------------
@router.post("/api/tokens", response_model=TokensResponse, tags=["zit"])
def tokens(body: TokensRequest, request: Request) -> TokensResponse:
    """`zit tokens --json`: the exact ids Z-Image's encoder reads."""
    return work.tokens(zit(request), body)


@router.post("/api/ruts", response_model=RutsResponse, tags=["zit"])
async def ruts(
    request: Request,
    files: Annotated[list[UploadFile], File(description="Two or more images (PNG, JPEG, ...)")],
    window: Annotated[int, Form(ge=2, le=SERVE.max_uploads)] = AGENT.window,
) -> Any:
    """`zit ruts --json` over uploaded images: one composition over and over?"""
    if len(files) > SERVE.max_uploads:
        raise UserError(
            f"{len(files)} images: at most {SERVE.max_uploads}", hint="upload fewer at a time"
        )
    uploads = [(f.filename or "image", await f.read()) for f in files]
    state = zit(request)
    return await run_job(
        request, "ruts", lambda: work.ruts_job(state, uploads, window), f"{len(uploads)} images"
    )


# -- images --------------------------------------------------------------------------------------
@router.get("/images/{name}", tags=["images"], response_class=FileResponse)
def image_file(name: str, request: Request) -> FileResponse:
    """An image by id (`ID.png`): only images the history store recorded, inside ZIT_HOME."""
    image_id, _, suffix = name.partition(".")
    if suffix != "png":
        raise work.NotFound("no such image")
    _, path = work.find_image(zit(request), image_id)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get("/api/images", tags=["images"])
def images(request: Request, limit: int = 60) -> list[dict[str, Any]]:
    """The newest images of the history, newest first."""
    found = work.recent_images(zit(request), max(1, min(limit, 500)))
    return [{**item["ref"].model_dump(), "idea": item["row"].idea} for item in found]


@router.get("/api/images/{image_id}", tags=["images"])
def image_record(image_id: str, request: Request) -> dict[str, Any]:
    """An image's provenance (the record inside its PNG)."""
    return work.image_record(zit(request), image_id)


@router.post("/api/images/{image_id}/render", response_model=RenderResponse, tags=["images"])
async def render_again(image_id: str, body: RenderAgain, request: Request) -> Any:
    """Render this exact sequence again: the image's stored token ids, its settings, its seed
    (or `seed`)."""
    state = zit(request)
    return await run_job(
        request, "render", lambda: work.render_again_job(state, image_id, body.seed),
        f"again {image_id[:12]}",
    )  # fmt: skip


# -- jobs ----------------------------------------------------------------------------------------
def _job(state: ServeState, job_id: str) -> Job:
    job = state.jobs.get(job_id) if state.jobs else None
    if job is None:
        raise work.NotFound("no such job")
    return job


@router.get("/api/jobs/{job_id}", response_model=JobView, tags=["jobs"])
def job_status(job_id: str, request: Request) -> JobView:
    state = zit(request)
    job = _job(state, job_id)
    error = {"type": job.error.kind, "message": job.error.one_line()} if job.error else None
    return JobView(
        id=job.id, kind=job.kind, label=job.label, status=job.status,
        position=state.jobs.position(job), events=len(job.events), error=error,
    )  # fmt: skip


@router.get("/api/jobs/{job_id}/events", tags=["jobs"])
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Follow a job's events (server-sent events) without owning it; `Last-Event-ID` resumes."""
    state = zit(request)
    job = _job(state, job_id)
    after = request.headers.get("last-event-id", "")
    # ASCII digits only: "²".isdigit() is true and int("²") fails; 18 digits fit any real id
    known = re.fullmatch(r"[0-9]{1,18}", after) is not None
    return StreamingResponse(
        stream(state, job, owner=False, after=int(after) if known else -1),
        media_type="text/event-stream", headers={"Cache-Control": "no-store"},
    )  # fmt: skip


@router.delete("/api/jobs/{job_id}", response_model=JobView, tags=["jobs"])
def cancel_job(job_id: str, request: Request) -> JobView:
    state = zit(request)
    state.jobs.cancel(_job(state, job_id))
    return job_status(job_id, request)
