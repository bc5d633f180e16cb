"""The three kinds of backend, one base class each with one required method, and the data they trade.

- `Writer.write`: the writer's chat messages + sampling + seed -> a `Draft` (generated token ids).
- `ImageBackend.render`: the token ids of a whole Z-Image chat sequence + seeds + options -> images.
- `Embedder.embed`: images -> L2-normalised vectors (one row each).

What else a backend can tell (its vocabulary, its model variant, its caption ceiling, its device,
which options it can render) is declared here with a default, so the agent reads attributes, never
`getattr` with a fallback; a backend overrides only what differs. Everything traded is plain data
(pydantic models, lists of ints); no torch in signatures, so the agent's state can hold it and tests
can fake any backend (a fake subclasses the base like a real one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zit_agent.defaults import AGENT, LIMITS, RENDER
from zit_agent.options import bounds

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from zit_agent.backends.tokenizer import VocabFingerprint


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


class Writer(ABC):
    """Writes a draft from chat messages. `fingerprint`: the vocabulary its ids belong to (None:
    it does not say, so its ids are never taken as encoder ids without re-tokenizing)."""

    name: str = "writer"

    @property
    def fingerprint(self) -> VocabFingerprint | None:
        return None

    @abstractmethod
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


class StepGate(BaseModel):
    """A half-open range of denoising steps, `start` to `end`: step numbers (`@0-2` = the first
    two steps) or, with `fraction`, shares of the schedule (`@0-0.25`)."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0.0)
    end: float = Field(ge=0.0)
    fraction: bool = False

    def steps(self, total: int) -> tuple[int, int]:
        """The step range `[first, stop)` in a schedule of `total` steps."""
        if self.fraction:
            return round(self.start * total), round(self.end * total)
        return int(self.start), int(self.end)

    def covers(self, step: int, total: int) -> bool:
        first, stop = self.steps(total)
        return first <= step < stop

    def text(self) -> str:
        """How it is written after a LoRA path: `0-2`, `0-0.25`."""
        if self.fraction:  # "0.0-1.0", never "0-1" (which is steps)
            return f"{float(self.start)!r}-{float(self.end)!r}"
        return f"{int(self.start)}-{int(self.end)}"


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
    # When each LoRA is active, one entry per LoRA in the order `lora`, *`extra_loras` (None or
    # missing: every step). An empty range is the render without that LoRA.
    lora_gates: list[StepGate | None] = Field(default_factory=list)
    # The first `early_steps` steps are conditioned on `early_ids` (a whole chat sequence; an empty
    # prompt is the template with no user text), the rest on the real sequence. 0: off.
    early_ids: list[int] | None = None
    early_steps: int = Field(0, ge=0)
    # Z-Image (base) renders with CFG renormalization on (see `defaults.VARIANTS`).
    cfg_normalization: bool = RENDER.cfg_normalization
    # A control map (image path) that fixes the composition; needs a backend with a ControlNet.
    control_image: str | None = None
    control_scale: float = RENDER.control_scale
    preprocess: str = "none"  # "none": the map is used as is; "canny": edges of the image
    # Image-to-image: start from this image (path) and redraw `strength` of the schedule (above 0,
    # up to 1); with `mask_image` (white: redraw, black: keep) only that region (inpainting).
    # Backends that cannot refine refuse `init_image` (backends/refine.py, docs/refine.md).
    init_image: str | None = None
    strength: float = RENDER.strength
    mask_image: str | None = None

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


class CandidateRender(BaseModel):
    """What rendering candidates gave (`ImageBackend.render_candidates`): the kept images (in the
    order chosen), which candidates they were, every candidate's preview, the denoising steps
    spent in all, and what a preview is."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kept: list[RenderedImage]
    kept_index: list[int]
    previews: list[Any]  # PIL images, one per candidate
    steps: int
    preview: str


class ImageBackend(ABC):
    """Renders whole Z-Image chat sequences given as token ids.

    - `variant`: the model variant whose defaults a request takes ("turbo", "base"; None: none).
    - `token_ceiling`: the longest sequence its DiT can place (caption positions).
    - `device`: where it renders (for logs and worker summaries).
    - `batches`: whether it denoises several seeds as one batch (then a seed's pixels can depend
      on its batch, and records say the batch: `render_batch` renders one again).
    - `controlnet`: the ControlNet control maps are rendered with (None: it takes no maps).
    - `check(options)`: refuses, with a one-line `UserError`, options it cannot render.
    - `cpu_threads()` / `using_cpu_threads(n)`: torch's thread count on the CPU, recorded and
      restored when a record is rendered again (None / no-op for a backend without one)."""

    name: str = "image backend"
    variant: str | None = None
    token_ceiling: int = LIMITS.token_ceiling
    device: Any = "cpu"
    batches: bool = False
    controlnet: str | None = None

    def check(self, options: RenderOptions) -> None:  # noqa: B027 - accepting all is the default
        """Raise `UserError` for options this backend cannot render; the default accepts all."""

    def render_batch(
        self, token_ids: list[int], batch: list[int], index: int, options: RenderOptions
    ) -> RenderedImage:
        """The image at `index` of the seeds `batch` rendered as one batch (what a record's
        `batch` field promises)."""
        return self.render(token_ids, batch, options)[index]

    def cpu_threads(self) -> int | None:
        return None

    def using_cpu_threads(self, threads: int | None) -> AbstractContextManager[None]:
        return nullcontext()

    @abstractmethod
    def render(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]: ...

    def render_candidates(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions,
        preview_step: int, choose: Callable[[list[Any]], list[int]],
    ) -> CandidateRender:  # fmt: skip
        """Render `seeds` as candidates, show `choose` one preview per candidate, finish the
        candidates it returns (indices). The default has no cheaper preview: it renders every
        candidate in full and shows the final images (steps: M * S)."""
        rendered = self.render(token_ids, seeds, options)
        previews = [r.image for r in rendered]
        keep = list(choose(previews))
        return CandidateRender(
            kept=[rendered[i] for i in keep],
            kept_index=keep,
            previews=previews,
            steps=len(seeds) * options.steps,
            preview="the final image (this backend has no early preview)",
        )


class NoImageBackend(ImageBackend):
    """The image backend of a run that only writes (`zit expand`): it loads no image model, and
    a render is refused."""

    name = "none"

    def render(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]:
        from zit_agent.errors import UserError

        raise UserError(
            "this run loaded no image model: it writes sequences, it does not render them",
            hint="render with zit generate",
        )


# -- embedders -----------------------------------------------------------------------------------
class Embedder(ABC):
    """Embeds images for rut checks. `family`: which thresholds apply (`agent.ruts.thresholds_for`):
    "hash" for the perceptual hash, a vision model's family ("dinov2", "clip", ...) otherwise."""

    name: str = "embedder"
    family: str = "vision"

    @abstractmethod
    def embed(self, images: list[Image.Image]) -> np.ndarray: ...
