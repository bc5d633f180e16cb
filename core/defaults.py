"""The one table of defaults. Every other module reads its defaults from here (option help text
is derived from these values, never written out again).

- `VARIANTS`: what each Z-Image model variant renders with (Turbo: 8 steps, CFG off, shift 3.0;
  base: about 28-50 steps, CFG about 4 with normalization, shift 6.0, negative prompt on).
- `RENDER`: the Turbo values every render starts from (settings' `render.*` overrides them).
- `AUTO_SHIFT`: the resolution-dependent shift (`shift="auto"`), when the model's scheduler
  config names no parameters of its own.
- `AGENT`: the agent loop's values, the same for every front end.
- `LIMITS`: the bounds every front end enforces (CLI, suites, HTTP requests).
- `SERVE`: `zit serve`'s address, job queue and request bounds.
- `RAY`: how long an eval run on Ray waits for the cluster before it calls it lost.
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
    cfg_normalization: bool = VARIANTS[DEFAULT_VARIANT].cfg_normalization
    layer: int = -2  # the encoder hidden layer Z-Image feeds its DiT
    sampler: str = "euler"
    scheduler: str = "simple"  # ComfyUI's name for Turbo's own sigma schedule
    max_tokens: int = 512  # diffusers' encode default (the DiT itself takes up to 1504)
    max_batch: int = 4  # seeds denoised in one batch
    noise_fraction: float = 0.5  # conditioning noise: share of embedding values noised
    noise_steps_share: float = 0.2  # and share of the steps that get it
    control_scale: float = 0.75  # ControlNet Union's model card: 0.65-0.80
    canny_thresholds: tuple[int, int] = (100, 200)  # the built-in canny preprocessor (OpenCV)
    # Image-to-image and inpainting (docs/refine.md): the share of the schedule run from the
    # init image (diffusers' `strength`; about steps * strength steps are run).
    strength: float = 0.6  # `--init` without `--strength` (diffusers' img2img default)
    inpaint_strength: float = 1.0  # `--mask` without `--strength`: the region is redrawn fully
    vary_subtle: float = 0.3  # `zit vary --subtle`, chat `/vary subtle`: 3 of Turbo's 8 steps
    vary_strong: float = 0.7  # `--strong`: 6 of 8 steps, the init's layout and colours stay
    vary_count: int = 4  # variations `zit vary` renders unless told otherwise
    early_steps: int = 2  # an early prompt's steps (Turbo sets the layout in the first 1-2)
    preview_step: int = 2  # candidates are judged on their x0 preview after this many steps
    candidates: int = 16  # seeds previewed when the candidates lever is taken
    preview_side: int = 128  # previews are downscaled to at most this many pixels a side


class AutoShiftTable(_Table):
    """`shift="auto"`: mu from the image's latent patch count (W*H/256), shift = exp(mu), as
    diffusers' dynamic shifting does. The fallbacks are diffusers' (`ZImagePipeline` reads the
    same names from the scheduler config); at 1024x1024 exp(1.15) = 3.16, near Turbo's 3.0."""

    formula: str = "diffusers"  # or "notes" (the community formula; see docs/sampling.md)
    base_seq_len: int = 256
    max_seq_len: int = 4096
    base_shift: float = 0.5
    max_shift: float = 1.15


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
    min_tokens: int = 16  # a token budget below this cannot hold the template and an idea
    control_scale: tuple[float, float] = (0.0, 2.0)
    token_ceiling: int = 1504  # Z-Image's caption positions (axes_lens[0] 1536 minus padding)
    warn_tokens: int = 512  # past the encode length Z-Image was trained with


class ServeTable(_Table):
    host: str = "127.0.0.1"  # loopback only unless told otherwise (and then a token is needed)
    port: int = 7860
    queue: int = 8  # jobs waiting behind the running one; one more is answered 429
    max_json_bytes: int = 1 << 20  # a JSON request body
    max_upload_bytes: int = 64 << 20  # images uploaded to judge for a rut
    max_uploads: int = 64  # images in one rut check
    max_text: int = 4000  # characters of an idea or chat message
    retry_after_s: int = 5  # what a 503 (loading, stopping) asks clients to wait
    load_wait_s: float = 600.0  # how long a request that came while the models load waits
    keepalive_s: float = 1.0  # a progress stream's ping (and disconnect check) while idle
    stop_grace_s: float = 30.0  # how long stopping waits for the running job


class RayTable(_Table):
    """`zit eval --workers/--ray` (evals/distributed.py, docs/scaling.md): every wait on Ray is
    bounded by one of these, so a lost node, a dead raylet, a silent head or a hung worker ends
    the run with one line instead of a wait without end."""

    connect_timeout_s: float = 5.0  # the head must accept a connection and answer HTTP/2 (gRPC)
    poll_s: float = 2.0  # with no result for this long, the driver checks the cluster
    check_timeout_s: float = 10.0  # a cluster check (`ray.nodes()`) unanswered this long: lost
    fetch_timeout_s: float = 120.0  # fetching a finished job's result (its files) from a worker
    start_timeout_s: float = 600.0  # no worker has loaded its models by then: the run stops
    job_timeout_s: float = 1800.0  # a worker holding jobs with no result for this long: hung


RENDER = RenderTable()
AUTO_SHIFT = AutoShiftTable()
AGENT = AgentTable()
LIMITS = LimitsTable()
SERVE = ServeTable()
RAY = RayTable()
