"""`RunOptions`: every run option, written out once as a typed field: type, bounds, help, group.

Front ends read this class and nothing else: the CLI turns its fields into typer options
(`zit_agent.agent.cli.options`, through `DECLARED`), HTTP requests and eval suites validate against
it. An option left unset is None everywhere ("not given"): the run API then takes the value from
settings, the model variant or `zit_agent.defaults`, in that order, in one place
(`zit_agent.agent.run.render_options`). Help text shows those defaults by reading the table, never
by repeating a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from zit_agent.defaults import AGENT, LIMITS, RENDER
from zit_agent.errors import UserError

AGENT_GROUP, RENDER_GROUP, MODEL_GROUP = "Agent", "Rendering", "Image model"


def _option(
    help: str, group: str, *, default: Any = None, ge: float | None = None,
    le: float | None = None, gt: float | None = None, short: str | None = None,
    negatable: bool = False,
) -> Any:  # fmt: skip
    """A run option's field: unset (None) unless given. `help` may show `{default}`, the value the
    run API falls back to (read from `zit_agent.defaults`); `group` is its help panel; `short` a
    one-letter CLI alias ("-n"); `negatable` gives a bool option --x/--no-x."""
    extra: dict[str, Any] = {"group": group}
    if short:
        extra["short"] = short
    if negatable:
        extra["negatable"] = True
    text = help.format(default=default) if default is not None else help
    return Field(None, description=text, ge=ge, le=le, gt=gt, json_schema_extra=extra)


class RunOptions(BaseModel):
    """Every run option; None: not given (the defaults apply)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # -- the agent ---------------------------------------------------------------------------
    writer: str | None = _option(
        "Writer: gguf:PATH, gguf:ORG/REPO/FILE.gguf, hf:DIR_OR_REPO, or none "
        "(the idea as it is). Default: the `writer` setting, else none.",
        AGENT_GROUP,
    )
    backend: str | None = _option(
        "Image backend: zimage (default) or sketch (a stand-in renderer, no model).",
        AGENT_GROUP,
    )
    tokenizer: str | None = _option(
        "Tokenizer folder or repo id (default: the image model's; sketch: the bundled Qwen3 one).",
        AGENT_GROUP,
    )
    embedder: str | None = _option(
        "Image embedder for rut checks: hash, hf:DIR_OR_REPO or dreamsim "
        "(default: the `embedder` setting, else hash).",
        AGENT_GROUP,
    )
    shape: str | None = _option(
        "Chat-sequence shape: think, answer or plain (default: think with a "
        "writer, plain without).",
        AGENT_GROUP,
    )
    ruts: bool | None = _option(
        "Detect and escape ruts across seeds.",
        AGENT_GROUP,
        negatable=True,
    )
    max_attempts: int | None = _option(
        "Most attempts (renders) in one run of the loop (default {default}).",
        AGENT_GROUP,
        default=AGENT.max_attempts,
        ge=1,
        le=50,
    )
    ladder: str | None = _option(
        "Escape ladder order, comma-separated (default {default}).",
        AGENT_GROUP,
        default=",".join(AGENT.ladder),
    )
    temperature: float | None = _option(
        "Writer sampling temperature (default {default}).",
        AGENT_GROUP,
        default=AGENT.temperature,
        ge=0.0,
        le=5.0,
    )
    max_new_tokens: int | None = _option(
        "Most tokens the writer generates per call (default {default}).",
        AGENT_GROUP,
        default=AGENT.max_new_tokens,
        ge=1,
        le=8192,
    )
    threads: int | None = _option(
        "CPU threads of a llama.cpp writer (default: the physical cores).",
        AGENT_GROUP,
        ge=1,
        le=1024,
    )
    retokenize: bool | None = _option(
        "Allow a writer whose vocabulary is not Qwen3's: its text is "
        "re-tokenized (not id-exact; recorded in provenance).",
        AGENT_GROUP,
    )
    max_tokens: int | None = _option(
        "Token budget of the whole chat sequence (default {default}; Z-Image's DiT takes up "
        "to {ceiling}; past {warn} it warns).".replace(
            "{ceiling}", str(LIMITS.token_ceiling)
        ).replace("{warn}", str(LIMITS.warn_tokens)),
        AGENT_GROUP,
        default=RENDER.max_tokens,
    )
    wildcards: str | None = _option(
        "Wildcard folder: __name__ in an idea is a line of NAME.txt there (then in "
        "ZIT_HOME/wildcards); {a|b} and {2$$a|b|c} need no folder.",
        AGENT_GROUP,
    )
    combinatorial: bool | None = _option(
        "Render every combination of the idea's wildcards and {a|b} choices once (instead of "
        "one sampled per seed; --count is the number of combinations).",
        AGENT_GROUP,
    )
    # -- rendering --------------------------------------------------------------------------
    count: int | None = _option(
        "Images per attempt (default: {default} when checking for ruts, else 1).",
        RENDER_GROUP,
        default=AGENT.rut_count,
        ge=1,
        le=LIMITS.max_count,
        short="-n",
    )
    seed: int | None = _option(
        "First seed (then +1 per image); random if not given.",
        RENDER_GROUP,
        ge=0,
        le=LIMITS.max_seed,
    )
    size: str | None = _option(
        "WIDTHxHEIGHT, multiples of 16 (default {default}).",
        RENDER_GROUP,
        default=f"{RENDER.width}x{RENDER.height}",
    )
    steps: int | None = _option(
        "Denoising steps (default: the model variant's; Turbo {default}).",
        RENDER_GROUP,
        default=RENDER.steps,
        ge=1,
        le=LIMITS.max_steps,
    )
    guidance: float | None = _option(
        "CFG scale; 0 turns CFG off (default: the variant's; Turbo {default}).",
        RENDER_GROUP,
        default=RENDER.guidance,
        ge=0.0,
        le=100.0,
    )
    negative: str | None = _option(
        "Negative prompt, used when guidance is above 0.",
        RENDER_GROUP,
    )
    layer: int | None = _option(
        "Text-encoder hidden layer fed to the DiT (default {default}).",
        RENDER_GROUP,
        default=RENDER.layer,
        ge=-1000,
        le=1000,
    )
    sampler: str | None = _option(
        "Sampler by ComfyUI's name: euler, euler_ancestral, er_sde, dpmpp_2m, res_multistep, "
        "lcm, unipc (default {default}; docs/sampling.md).",
        RENDER_GROUP,
        default=RENDER.sampler,
    )
    scheduler: str | None = _option(
        "Sigma schedule by ComfyUI's name: simple, sgm_uniform, normal, beta, bong_tangent "
        "(default {default}).",
        RENDER_GROUP,
        default=RENDER.scheduler,
    )
    shift: str | None = _option(
        "Flow shift: a number, auto (diffusers' formula) or auto:notes (default: the model's; "
        "Turbo {default}).",
        RENDER_GROUP,
        default=RENDER.shift,
    )
    lora: list[str] | None = _option(
        "LoRA or LoKr .safetensors file, optionally PATH:STRENGTH (-2..2, "
        "default 1) and a step gate PATH:STRENGTH@START-END (half-open: @0-2 = the first two "
        "steps; fractions: @0-0.25). Repeatable, but the distilled model handles one well.",
        RENDER_GROUP,
    )
    adapter: str | None = _option(
        "A diversity LoRA/LoKr the escape ladder's `adapter` lever turns on, PATH:STRENGTH@START-END "
        "(default gate: the first quarter of the steps).",
        RENDER_GROUP,
    )
    early_prompt: str | None = _option(
        "Condition the first --early-steps steps on this prompt instead (may be empty: the "
        "template with no text), the rest on the real one.",
        RENDER_GROUP,
    )
    early_steps: int | None = _option(
        "Steps conditioned on --early-prompt (default {default}; 0: the plain image).",
        RENDER_GROUP,
        default=RENDER.early_steps,
        ge=0,
        le=LIMITS.max_steps,
    )
    candidates: int | None = _option(
        "Preview this many seeds, keep the -n most different from each other and the history, "
        "finish only those (0 or unset: off).",
        RENDER_GROUP,
        ge=0,
        le=LIMITS.max_count,
    )
    preview_step: int | None = _option(
        "Step whose x0 prediction the candidates are judged on (default {default}).",
        RENDER_GROUP,
        default=RENDER.preview_step,
        ge=1,
        le=LIMITS.max_steps,
    )
    noise: float | None = _option(
        "Conditioning noise strength (x the embedding's std) to break ruts; 0: off.",
        RENDER_GROUP,
        ge=0.0,
        le=10.0,
    )
    noise_fraction: float | None = _option(
        "Share of embedding values noised (default {default}).",
        RENDER_GROUP,
        default=RENDER.noise_fraction,
        ge=0.0,
        le=1.0,
    )
    noise_steps: float | None = _option(
        "Share of the steps that get noise (default {default}).",
        RENDER_GROUP,
        default=RENDER.noise_steps_share,
        gt=0.0,  # a share of the steps: more than none
        le=1.0,
    )
    noise_seed: int | None = _option(
        "Seed of the conditioning noise (default 0).",
        RENDER_GROUP,
        ge=0,
        le=LIMITS.max_seed,
    )
    # -- the image model --------------------------------------------------------------------
    image_model: str | None = _option(
        "Z-Image diffusers folder or repo id (default: the `image_model` setting).",
        MODEL_GROUP,
    )
    text_encoder: str | None = _option(
        "Another Qwen3-4B-shaped text encoder (folder or repo id).",
        MODEL_GROUP,
    )
    vae: str | None = _option(
        "Another Flux-layout VAE: folder, repo id or single .safetensors file.",
        MODEL_GROUP,
    )
    transformer: str | None = _option(
        "The transformer from a single .safetensors file (ComfyUI layout) or a folder.",
        MODEL_GROUP,
    )
    device: str | None = _option(
        "cuda, cpu, ... (default: cuda when present).",
        MODEL_GROUP,
    )
    dtype: str | None = _option(
        "bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU).",
        MODEL_GROUP,
    )
    cpu_offload: bool | None = _option(
        "Keep models on the CPU until used (less GPU memory).",
        MODEL_GROUP,
    )
    attention: str | None = _option(
        "diffusers attention backend (native, flash, sage, ...).",
        MODEL_GROUP,
    )
    compile: bool | None = _option(
        "torch.compile the transformer's repeated blocks.",
        MODEL_GROUP,
    )
    batch: int | None = _option(
        "Most seeds rendered in one batch (default {default}).",
        MODEL_GROUP,
        default=RENDER.max_batch,
        ge=1,
        le=LIMITS.max_count,
    )
    checkpoint: str | None = _option(
        "An all-in-one .safetensors (DiT, encoder and VAE in one file); "
        "the image model then gives only configs and tokenizer.",
        MODEL_GROUP,
    )
    variant: str | None = _option(
        "turbo or base (default: detected from the model's files); the render defaults follow it.",
        MODEL_GROUP,
    )
    vae_tiling: bool | None = _option(
        "Decode in tiles (less memory for large images).",
        MODEL_GROUP,
    )
    vram: str | None = _option(
        "Plan memory for a card of this size: auto, 8, 12, 16, 24 or full (GB): "
        "offload, VAE tiling and load order, printed before loading.",
        MODEL_GROUP,
    )
    controlnet: str | None = _option(
        "A Z-Image ControlNet Union: folder, repo id or .safetensors.",
        MODEL_GROUP,
    )
    # -- control maps -----------------------------------------------------------------------
    control: str | None = _option(
        "A control map (pose, depth, edges ...) for the ControlNet: it fixes the composition.",
        RENDER_GROUP,
    )
    control_scale: float | None = _option(
        "ControlNet strength (default {default}; the model card: 0.65-0.80).",
        RENDER_GROUP,
        default=RENDER.control_scale,
        ge=LIMITS.control_scale[0],
        le=LIMITS.control_scale[1],
    )
    preprocess: str | None = _option(
        "none (the map as it is) or canny (edges of an ordinary image).",
        RENDER_GROUP,
    )
    # -- image-to-image and inpainting -------------------------------------------------------
    init: str | None = _option(
        "Start from this image (image-to-image); the size defaults to the image's.",
        RENDER_GROUP,
    )
    strength: float | None = _option(
        "How much of the init image is redrawn, above 0 up to 1 (default {default}, with a "
        "mask 1; at 1 the init image is not used).",
        RENDER_GROUP,
        default=RENDER.strength,
        ge=0.0,
        le=1.0,
    )
    mask: str | None = _option(
        "Inpainting mask (the init image's size): white is redrawn, black is kept.",
        RENDER_GROUP,
    )


@dataclass(frozen=True)
class Option:
    """One field of `RunOptions` as a front end needs it (the CLI builds its flags from these)."""

    name: str  # the field name (JSON, suites, HTTP); the CLI flag is --name-with-dashes
    type: Any  # without the None
    help_text: str
    group: str
    short: str | None = None
    negatable: bool = False

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    @classmethod
    def of(cls, name: str, info: FieldInfo) -> Option:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kind = next(t for t in get_args(info.annotation) if t is not type(None))
        return cls(
            name, kind, info.description or "", str(extra["group"]),
            short=str(extra["short"]) if "short" in extra else None,
            negatable=bool(extra.get("negatable")),
        )  # fmt: skip


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


DECLARED: tuple[Option, ...] = tuple(
    Option.of(name, info) for name, info in RunOptions.model_fields.items()
)
# The options that pick or load parts (a server loads them once at start; a chat session keeps
# the ones it started with): the groups Image model, plus the writer, backend, tokenizer,
# embedder and threads; and the wildcard folder (a server reads only its own).
PART_OPTIONS: tuple[str, ...] = tuple(
    o.name
    for o in DECLARED
    if o.group == MODEL_GROUP
    or o.name in ("writer", "backend", "tokenizer", "embedder", "threads", "wildcards")
)


def run_options(**values: Any) -> BaseModel:
    """`RunOptions` from these values (None: not given); a bad value is a one-line error that
    names the option."""
    try:
        return RunOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "options"
        raise UserError(f"bad value for {{{name}}}: {first['msg']}") from None


def bounds(name: str) -> dict[str, float]:
    """The declared bounds of option `name` as pydantic `Field` keywords, for the other models
    that carry the same value (noise settings, writer sampling, suites): one set of bounds."""
    import annotated_types

    found: dict[str, float] = {}
    for bound in RunOptions.model_fields[name].metadata:
        for kind in ("ge", "le", "gt"):
            if isinstance(bound, getattr(annotated_types, kind.capitalize())):
                found[kind] = getattr(bound, kind)
    return found


def option_field(name: str, **overrides: Any) -> Any:
    """A field of another model that carries run option `name` (an eval suite's config): the
    option's help and bounds, unset by default; `overrides` narrow a bound or set a default."""
    info = RunOptions.model_fields[name]
    return Field(**{"default": None, "description": info.description, **bounds(name), **overrides})


def given(options: BaseModel) -> dict[str, Any]:
    """The options that were set."""
    return options.model_dump(exclude_none=True)
