"""The HTTP API's request and response models (pydantic; FastAPI's OpenAPI page at /docs shows them).

Request options are the declared run options (`zit_agent.options`) minus the ones that load parts
(writer, backend, image model, ...): those are fixed when the server starts, so a request that sets
one is refused with 422 like any unknown field. Every bound (count, size, steps, text length) is
the declaration's or `zit_agent.defaults`'.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from zit_agent.defaults import LIMITS, SERVE
from zit_agent.options import PART_OPTIONS, RunOptions

Text = Field(min_length=1, max_length=SERVE.max_text)
_FORBID = ConfigDict(extra="forbid", allow_inf_nan=False)


# Image files a request uploads (POST /v1/images/edits, /api/edits) rather than naming a path on
# the server.
FILE_OPTIONS = ("init", "mask")


def _request_fields(exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    skip = set(PART_OPTIONS) | set(FILE_OPTIONS) | set(exclude)
    return {
        name: (field.annotation, field)
        for name, field in RunOptions.model_fields.items()
        if name not in skip
    }


RequestOptions: type[BaseModel] = create_model(
    "RequestOptions", __config__=_FORBID, **_request_fields()
)
RequestOptions.__doc__ = (
    "The declared run options a request may set (None: the server's, then the defaults)."
)
OPTION_NAMES = tuple(RequestOptions.model_fields)


def options_of(request: BaseModel) -> dict[str, Any]:
    """The run options a request set."""
    return request.model_dump(include=set(OPTION_NAMES), exclude_none=True)


# -- zit's own API -------------------------------------------------------------------------------
class GenerateRequest(RequestOptions):
    """An idea for the rut-avoiding loop (or the plain path: no writer, `ruts: false`)."""

    idea: str = Text


class SessionCreate(RequestOptions):
    name: str = Field(min_length=1, max_length=64, description="1-64 letters, digits, . - _")
    idea: str = Text


class SessionMessage(RequestOptions):
    """Text refines the description; /vary, /shorter, /undo, /seed N, /size WxH, /layer N,
    /lora PATH:S are the chat commands (as in `zit chat`)."""

    text: str = Text


class RenderAgain(BaseModel):
    """Render an image's exact stored token ids again (its own seed unless given)."""

    model_config = _FORBID
    seed: int | None = Field(None, ge=0, le=LIMITS.max_seed)


class VaryRequest(BaseModel):
    """Variations of a recorded image (`zit vary`): subtle or strong, or an exact strength."""

    model_config = _FORBID
    level: Literal["subtle", "strong"] = "subtle"
    strength: float | None = Field(None, gt=0.0, le=1.0)
    count: int = Field(1, ge=1, le=LIMITS.max_count)
    seed: int | None = Field(None, ge=0, le=LIMITS.max_seed)


class TokensRequest(BaseModel):
    """As `zit tokens`: the plain shape, or think/answer with `think`/`assistant`."""

    model_config = _FORBID
    idea: str = Text
    system: str | None = Field(None, max_length=SERVE.max_text)
    think: str | None = Field(None, max_length=SERVE.max_text)
    assistant: str | None = Field(None, max_length=SERVE.max_text)
    close: bool = False
    max_tokens: int | None = Field(None, ge=16, le=LIMITS.token_ceiling)


class ImageRef(BaseModel):
    id: str = Field(description="The image's sha256: GET /images/ID.png, GET /api/images/ID")
    url: str
    seed: int | None = None


class LeverView(BaseModel):
    name: str
    detail: str
    effect: str | None = None


class ShotView(BaseModel):
    description: str
    think: str = ""
    writer: str | None = None
    agent_phrase: str = ""
    token_count: int
    seeds: list[int]
    images: list[ImageRef]


class AttemptView(BaseModel):
    number: int
    verdict: str | None = None
    reason: str = ""
    mean_similarity: float | None = None
    vendi: float | None = None
    count: int = 0
    kinds: dict[str, str] = {}  # rut kind -> its verdict (layout, identity, shot, angle)
    levers: list[LeverView] = []
    shots: list[ShotView] = []
    images: list[ImageRef] = []


class TurnView(BaseModel):
    number: int
    message: str
    verdict: str | None = None
    error: str | None = None
    shots: list[ShotView] = []
    attempts: list[AttemptView] = []
    settings: dict[str, Any] = {}


class SessionSummary(BaseModel):
    name: str
    status: str
    idea: str
    turns: int


class SessionView(SessionSummary):
    ruts: bool = False
    history: list[TurnView] = []
    answer: str | None = Field(None, description="What a local command (/help, /show, ...) says")


class GenerateResponse(BaseModel):
    run: str
    idea: str
    images: list[ImageRef]
    final_verdict: str | None = None
    message: str = ""
    ruts_detected: int = 0
    ruts_escaped: int = 0
    attempts: list[AttemptView] = []


class RenderResponse(BaseModel):
    images: list[ImageRef]
    token_count: int
    exact: bool = Field(
        description="Everything the record says was kept: the stored ids (their sha256 matches), "
        "its settings, and (for its own seed) the batch it was rendered in"
    )
    not_kept: list[str] = Field(
        default_factory=list, description="What of the record could not be kept, and why"
    )
    note: str | None = Field(None, description="Why the pixels may differ, when they may")


class TokensResponse(BaseModel):
    token_ids: list[int]
    text: str
    count: int
    budget: int
    shape: str
    cut: list[dict[str, Any]] | None = None
    spans: list[dict[str, Any]]
    tokenizer: str


class RutsResponse(BaseModel):
    """`zit ruts --json` over the uploaded images (names as labels)."""

    model_config = ConfigDict(extra="allow")
    verdict: str
    reason: str
    embedder: str
    count: int
    mean_similarity: float | None = None
    vendi: float
    kinds: dict[str, Any] | None = None  # layout, identity, shot, angle (docs/ruts.md)
    groups: list[dict[str, Any]] = []
    notes: list[str] = []


class JobView(BaseModel):
    id: str
    kind: str
    label: str = ""
    status: str
    position: int | None = Field(None, description="Place in the queue (1: next)")
    events: int
    error: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, used by every route: `{"error": {"message", "type", ...}}`."""

    error: dict[str, Any]


# -- OpenAI-compatible ---------------------------------------------------------------------------
class ImagesRequest(create_model("_OpenAIOptions", __config__=_FORBID, **_request_fields(("count", "size")))):  # fmt: skip
    """OpenAI's `POST /v1/images/generations`: the prompt is the idea; `n` images; the rut loop runs
    when n > 1 unless `ruts` is false. zit's own options (`seed`, `steps`, `noise`, ...) go beside
    OpenAI's fields (the openai client's `extra_body`). OpenAI fields zit has no use for are
    accepted and ignored."""

    prompt: str = Text
    n: int = Field(1, ge=1, le=LIMITS.max_count)
    size: str | None = Field(None, description="WIDTHxHEIGHT (multiples of 16) or auto")
    response_format: Literal["b64_json", "url"] = "b64_json"
    model: str | None = None
    output_format: Literal["png"] | None = None
    stream: Literal[False] | None = None
    # accepted, ignored
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_compression: int | None = None
    safety_identifier: str | None = None


class OpenAIImage(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = Field(None, description="The description the image rendered")


class ImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    zit: GenerateResponse | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "zit-agent"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
