"""The three kinds of backend, one protocol each with one required method, and the data they trade.

- `Writer.write`: the writer's chat messages + sampling + seed -> a `Draft` (generated token ids).
- `ImageBackend.render`: the token ids of a whole Z-Image chat sequence + seeds + options -> images.
- `Embedder.embed`: images -> L2-normalised vectors (one row each).

Everything here is plain data (pydantic models, lists of ints); no torch in signatures, so the
agent's state can hold it and tests can fake any backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zit_agent.defaults import AGENT, RENDER
from zit_agent.options import bounds

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


# -- writers -------------------------------------------------------------------------------------
class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(BaseModel):
    """Writer sampling settings (Qwen3's recommended non-thinking values by default)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: float = Field(AGENT.temperature, **bounds("temperature"))
    top_p: float = Field(0.8, gt=0.0, le=1.0)
    top_k: int = Field(20, ge=0, le=1_000_000)  # at most a vocabulary
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0, le=100.0)
    max_new_tokens: int = Field(AGENT.max_new_tokens, **bounds("max_new_tokens"))


class TextIds(BaseModel):
    """A run of generated ids and its text (the text is for people; the ids are what counts)."""

    ids: list[int] = Field(default_factory=list)
    text: str = ""


FinishReason = Literal["stop", "length"]


class WriterStats(BaseModel):
    prompt_tokens: int
    new_tokens: int
    seconds: float
    tokens_per_s: float
    finish_reason: FinishReason


class Draft(BaseModel):
    """What a writer generated: the raw ids, and the think and answer parts split from them."""

    model: str
    generated_ids: list[int]
    think: TextIds
    answer: TextIds
    stats: WriterStats
    retokenized: bool = False
    notes: list[str] = Field(default_factory=list)


@runtime_checkable
class Writer(Protocol):
    name: str

    def write(self, messages: list[Message], sampling: Sampling, seed: int) -> Draft: ...


# -- image backends ------------------------------------------------------------------------------
class NoiseSettings(BaseModel):
    """Conditioning noise for breaking ruts (off when strength is 0)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    strength: float = Field(0.0, **bounds("noise"))
    fraction: float = Field(
        RENDER.noise_fraction, gt=0.0, le=1.0, description="Share of embedding values noised."
    )
    steps_share: float = Field(
        RENDER.noise_steps_share, gt=0.0, le=1.0, description="Share of steps that get noise."
    )
    seed: int = Field(0, **bounds("noise_seed"))


class RenderOptions(BaseModel):
    """How to render. Defaults are Z-Image-Turbo's (`zit_agent.defaults.RENDER`)."""

    model_config = ConfigDict(extra="forbid")

    width: int = RENDER.width
    height: int = RENDER.height
    steps: int = RENDER.steps
    guidance: float = RENDER.guidance
    layer: int = RENDER.layer
    # None: the model's scheduler config; a positive number; "auto" (= "auto:diffusers") or
    # "auto:notes": resolution-dependent (backends/schedules.py, docs/sampling.md).
    shift: float | str | None = None
    sampler: str = RENDER.sampler  # ComfyUI's names (backends/samplers.py)
    scheduler: str = RENDER.scheduler  # the sigma schedule, ComfyUI's names (backends/schedules.py)
    negative_ids: list[int] | None = None  # used only when guidance > 0
    noise: NoiseSettings | None = None
    lora: str | None = None
    lora_strength: float = 1.0
    # More LoRA files stacked on top of `lora`, as (path, strength); the distilled model takes one
    # well, so backends warn when this is used.
    extra_loras: list[tuple[str, float]] = Field(default_factory=list)
    # Z-Image (base) renders with CFG renormalization on (see `defaults.VARIANTS`).
    cfg_normalization: bool = RENDER.cfg_normalization
    # A control map (image path) that fixes the composition; needs a backend with a ControlNet.
    control_image: str | None = None
    control_scale: float = RENDER.control_scale
    preprocess: str = "none"  # "none": the map is used as is; "canny": edges of the image

    # Bad values raise `UserError` (one line, names the fix); pydantic passes it through.
    @field_validator("shift", mode="before")
    @classmethod
    def _shift(cls, value: Any) -> float | str | None:
        from zit_agent.backends.schedules import parse_shift

        return parse_shift(value)

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value: str) -> str:
        from zit_agent.backends.samplers import get_sampler

        return get_sampler(value).name

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        from zit_agent.backends.schedules import get_scheduler

        return get_scheduler(value)


class RenderedImage(BaseModel):
    """One image and what made it. `record` is the provenance the backend knows."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Any  # PIL.Image.Image
    seed: int
    record: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ImageBackend(Protocol):
    name: str

    def render(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]: ...


# -- embedders -----------------------------------------------------------------------------------
@runtime_checkable
class Embedder(Protocol):
    name: str

    def embed(self, images: list[Image.Image]) -> np.ndarray: ...
