"""The one table of defaults. Every other module reads its defaults from here (option help text
is derived from these values, never written out again).

- `VARIANTS`: what each Z-Image model variant renders with (Turbo: 8 steps, CFG off, shift 3.0;
  base: about 28-50 steps, CFG about 4 with normalization, shift 6.0, negative prompt on).
- `RENDER`: the Turbo values every render starts from (settings' `render.*` overrides them).
- `AGENT`: the agent loop's values, the same for every front end.
- `LIMITS`: the bounds every front end enforces (CLI, suites, HTTP requests).
- `SERVE`: `zit serve`'s address, job queue and request bounds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariantDefaults(_Table):
    """A Z-Image model variant's own render settings (FACTS.md sections 1 and 9)."""

    steps: int
    guidance: float
    shift: float
    cfg_normalization: bool = False
    negative: str | None = None  # the negative prompt used when none is given (CFG on)


VARIANTS: dict[str, VariantDefaults] = {
    "turbo": VariantDefaults(steps=8, guidance=0.0, shift=3.0),
    "base": VariantDefaults(steps=28, guidance=4.0, shift=6.0, cfg_normalization=True, negative=""),
}
DEFAULT_VARIANT = "turbo"


class RenderTable(_Table):
    width: int = 1024
    height: int = 1024
    steps: int = VARIANTS[DEFAULT_VARIANT].steps
    guidance: float = VARIANTS[DEFAULT_VARIANT].guidance
    shift: float = VARIANTS[DEFAULT_VARIANT].shift
    layer: int = -2  # the encoder hidden layer Z-Image feeds its DiT
    sampler: str = "euler"
    max_tokens: int = 512  # diffusers' encode default (the DiT itself takes up to 1504)
    max_batch: int = 4  # seeds denoised in one batch
    noise_fraction: float = 0.5  # conditioning noise: share of embedding values noised
    noise_steps_share: float = 0.2  # and share of the steps that get it


class AgentTable(_Table):
    ladder: tuple[str, ...] = ("vary", "shorter", "noise", "layer", "seeds")  # escape order
    max_attempts: int = 4  # renders in one run of the loop (generate, chat turn, eval agent)
    rut_count: int = 4  # images per attempt when checking for ruts (a rut shows across seeds)
    window: int = 8  # recent images of one idea the judge compares
    wider_window: int = 32  # recent images of other ideas the newest image is compared with
    temperature: float = 0.7  # the writer's sampling (Qwen3's non-thinking recommendation)
    max_new_tokens: int = 400


class LimitsTable(_Table):
    min_side: int = 16
    max_side: int = 4096
    warn_side: int = 2048  # quality drops above this (reported by users)
    max_steps: int = 200
    max_count: int = 64  # images per request
    max_seed: int = 2**63 - 1
    lora_strength: tuple[float, float] = (-2.0, 2.0)
    token_ceiling: int = 1504  # Z-Image's caption positions (axes_lens[0] 1536 minus padding)


class ServeTable(_Table):
    host: str = "127.0.0.1"  # loopback only unless told otherwise (and then a token is needed)
    port: int = 7860
    queue: int = 8  # jobs waiting behind the running one; one more is answered 429
    max_json_bytes: int = 1 << 20  # a JSON request body
    max_upload_bytes: int = 64 << 20  # images uploaded to judge for a rut
    max_uploads: int = 64  # images in one rut check
    max_text: int = 4000  # characters of an idea or chat message
    retry_after_s: int = 5  # what a 503 (loading, stopping) asks clients to wait
    keepalive_s: float = 1.0  # a progress stream's ping (and disconnect check) while idle
    stop_grace_s: float = 30.0  # how long stopping waits for the running job


RENDER = RenderTable()
AGENT = AgentTable()
LIMITS = LimitsTable()
SERVE = ServeTable()
