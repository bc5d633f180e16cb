"""One declaration per run option: name, type, bounds, help, where its default comes from.

Front ends read these declarations and nothing else: the CLI turns them into typer options
(`zit_agent.agent.cli.options`), eval suites and HTTP requests validate against `RunOptions`, the
pydantic model built from them. An option left unset is None everywhere ("not given"): the run
API then takes the value from settings, the model variant or `zit_agent.defaults`, in that order,
in one place (`zit_agent.agent.run.render_options`). Help text shows those defaults by reading the
table, never by repeating a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from zit_agent.defaults import AGENT, LIMITS, RENDER
from zit_agent.errors import UserError

AGENT_GROUP, RENDER_GROUP, MODEL_GROUP = "Agent", "Rendering", "Image model"


@dataclass(frozen=True)
class Option:
    name: str  # the field name (JSON, suites, HTTP); the CLI flag is --name-with-dashes
    type: Any
    help: str  # may use {default}
    group: str
    default: Callable[[], Any] | None = None  # shown in help: where the value comes from if unset
    ge: float | None = None
    le: float | None = None
    gt: float | None = None  # a lower bound the value must exceed (a share of the steps: > 0)
    short: str | None = None  # a one-letter CLI alias, e.g. "-n"
    negatable: bool = False  # bool options: --x/--no-x

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    @property
    def help_text(self) -> str:
        return self.help.format(default=self.default() if self.default else "")


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


DECLARED: tuple[Option, ...] = (
    # -- the agent ---------------------------------------------------------------------------
    Option(
        "writer",
        str,
        "Writer: gguf:PATH, gguf:ORG/REPO/FILE.gguf, hf:DIR_OR_REPO, or none "
        "(the idea as it is). Default: the `writer` setting, else none.",
        AGENT_GROUP,
    ),
    Option(
        "backend",
        str,
        "Image backend: zimage (default) or sketch (a stand-in renderer, no model).",
        AGENT_GROUP,
    ),
    Option(
        "tokenizer",
        str,
        "Tokenizer folder or repo id (default: the image model's; sketch: the bundled Qwen3 one).",
        AGENT_GROUP,
    ),
    Option(
        "embedder",
        str,
        "Image embedder for rut checks: hash, hf:DIR_OR_REPO or dreamsim "
        "(default: the `embedder` setting, else hash).",
        AGENT_GROUP,
    ),
    Option(
        "shape",
        str,
        "Chat-sequence shape: think, answer or plain (default: think with a "
        "writer, plain without).",
        AGENT_GROUP,
    ),
    Option("ruts", bool, "Detect and escape ruts across seeds.", AGENT_GROUP, negatable=True),
    Option(
        "max_attempts",
        int,
        "Most attempts (renders) in one run of the loop (default {default}).",
        AGENT_GROUP,
        _const(AGENT.max_attempts),
        ge=1,
        le=50,
    ),
    Option(
        "ladder",
        str,
        "Escape ladder order, comma-separated (default {default}).",
        AGENT_GROUP,
        lambda: ",".join(AGENT.ladder),
    ),
    Option(
        "temperature",
        float,
        "Writer sampling temperature (default {default}).",
        AGENT_GROUP,
        _const(AGENT.temperature),
        ge=0.0,
        le=5.0,
    ),
    Option(
        "max_new_tokens",
        int,
        "Most tokens the writer generates per call (default {default}).",
        AGENT_GROUP,
        _const(AGENT.max_new_tokens),
        ge=1,
        le=8192,
    ),
    Option(
        "threads",
        int,
        "CPU threads of a llama.cpp writer (default: the physical cores).",
        AGENT_GROUP,
        ge=1,
        le=1024,
    ),
    Option(
        "retokenize",
        bool,
        "Allow a writer whose vocabulary is not Qwen3's: its text is "
        "re-tokenized (not id-exact; recorded in provenance).",
        AGENT_GROUP,
    ),
    Option(
        "max_tokens",
        int,
        "Token budget of the whole chat sequence (default {default}; Z-Image's DiT takes up "
        "to {ceiling}; past 512 it warns).".replace("{ceiling}", str(LIMITS.token_ceiling)),
        AGENT_GROUP,
        _const(RENDER.max_tokens),
    ),
    # -- rendering ---------------------------------------------------------------------------
    Option(
        "count",
        int,
        "Images per attempt (default: {default} when checking for ruts, else 1).",
        RENDER_GROUP,
        _const(AGENT.rut_count),
        ge=1,
        le=LIMITS.max_count,
        short="-n",
    ),
    Option(
        "seed",
        int,
        "First seed (then +1 per image); random if not given.",
        RENDER_GROUP,
        ge=0,
        le=LIMITS.max_seed,
    ),
    Option(
        "size",
        str,
        "WIDTHxHEIGHT, multiples of 16 (default {default}).",
        RENDER_GROUP,
        lambda: f"{RENDER.width}x{RENDER.height}",
    ),
    Option(
        "steps",
        int,
        "Denoising steps (default: the model variant's; Turbo {default}).",
        RENDER_GROUP,
        _const(RENDER.steps),
        ge=1,
        le=LIMITS.max_steps,
    ),
    Option(
        "guidance",
        float,
        "CFG scale; 0 turns CFG off (default: the variant's; Turbo {default}).",
        RENDER_GROUP,
        _const(RENDER.guidance),
        ge=0.0,
        le=100.0,
    ),
    Option("negative", str, "Negative prompt, used when guidance is above 0.", RENDER_GROUP),
    Option(
        "layer",
        int,
        "Text-encoder hidden layer fed to the DiT (default {default}).",
        RENDER_GROUP,
        _const(RENDER.layer),
        ge=-1000,
        le=1000,
    ),
    Option(
        "sampler",
        str,
        "Sampler by ComfyUI's name: euler, euler_ancestral, er_sde, dpmpp_2m, res_multistep, "
        "lcm, unipc (default {default}; docs/sampling.md).",
        RENDER_GROUP,
        _const(RENDER.sampler),
    ),
    Option(
        "scheduler",
        str,
        "Sigma schedule by ComfyUI's name: simple, sgm_uniform, normal, beta, bong_tangent "
        "(default {default}).",
        RENDER_GROUP,
        _const(RENDER.scheduler),
    ),
    Option(
        "shift",
        str,
        "Flow shift: a number, auto (diffusers' formula) or auto:notes (default: the model's; "
        "Turbo {default}).",
        RENDER_GROUP,
        _const(RENDER.shift),
    ),
    Option(
        "lora",
        list[str],
        "LoRA .safetensors file, optionally PATH:STRENGTH (-2..2, "
        "default 1). Repeatable, but the distilled model handles one well.",
        RENDER_GROUP,
    ),
    Option(
        "noise",
        float,
        "Conditioning noise strength (x the embedding's std) to break ruts; 0: off.",
        RENDER_GROUP,
        ge=0.0,
        le=10.0,
    ),
    Option(
        "noise_fraction",
        float,
        "Share of embedding values noised (default {default}).",
        RENDER_GROUP,
        _const(RENDER.noise_fraction),
        ge=0.0,
        le=1.0,
    ),
    Option(
        "noise_steps",
        float,
        "Share of the steps that get noise (default {default}).",
        RENDER_GROUP,
        _const(RENDER.noise_steps_share),
        gt=0.0,
        le=1.0,
    ),
    Option(
        "noise_seed",
        int,
        "Seed of the conditioning noise (default 0).",
        RENDER_GROUP,
        ge=0,
        le=LIMITS.max_seed,
    ),
    # -- the image model ---------------------------------------------------------------------
    Option(
        "image_model",
        str,
        "Z-Image diffusers folder or repo id (default: the `image_model` setting).",
        MODEL_GROUP,
    ),
    Option(
        "text_encoder",
        str,
        "Another Qwen3-4B-shaped text encoder (folder or repo id).",
        MODEL_GROUP,
    ),
    Option(
        "vae",
        str,
        "Another Flux-layout VAE: folder, repo id or single .safetensors file.",
        MODEL_GROUP,
    ),
    Option(
        "transformer",
        str,
        "The transformer from a single .safetensors file (ComfyUI layout) or a folder.",
        MODEL_GROUP,
    ),
    Option("device", str, "cuda, cpu, ... (default: cuda when present).", MODEL_GROUP),
    Option("dtype", str, "bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU).", MODEL_GROUP),
    Option(
        "cpu_offload", bool, "Keep models on the CPU until used (less GPU memory).", MODEL_GROUP
    ),
    Option(
        "attention", str, "diffusers attention backend (native, flash, sage, ...).", MODEL_GROUP
    ),
    Option("compile", bool, "torch.compile the transformer's repeated blocks.", MODEL_GROUP),
    Option(
        "batch",
        int,
        "Most seeds rendered in one batch (default {default}).",
        MODEL_GROUP,
        _const(RENDER.max_batch),
        ge=1,
        le=LIMITS.max_count,
    ),
    Option(
        "checkpoint",
        str,
        "An all-in-one .safetensors (DiT, encoder and VAE in one file); "
        "the image model then gives only configs and tokenizer.",
        MODEL_GROUP,
    ),
    Option(
        "variant",
        str,
        "turbo or base (default: detected from the model's files); the render defaults follow it.",
        MODEL_GROUP,
    ),
    Option("vae_tiling", bool, "Decode in tiles (less memory for large images).", MODEL_GROUP),
    Option(
        "vram",
        str,
        "Plan memory for a card of this size: auto, 8, 12, 16, 24 or full (GB): "
        "offload, VAE tiling and load order, printed before loading.",
        MODEL_GROUP,
    ),
    Option(
        "controlnet",
        str,
        "A Z-Image ControlNet Union: folder, repo id or .safetensors.",
        MODEL_GROUP,
    ),
    # -- control maps ------------------------------------------------------------------------
    Option(
        "control",
        str,
        "A control map (pose, depth, edges ...) for the ControlNet: it fixes the composition.",
        RENDER_GROUP,
    ),
    Option(
        "control_scale",
        float,
        "ControlNet strength (default {default}; the model card: 0.65-0.80).",
        RENDER_GROUP,
        _const(RENDER.control_scale),
        ge=LIMITS.control_scale[0],
        le=LIMITS.control_scale[1],
    ),
    Option(
        "preprocess",
        str,
        "none (the map as it is) or canny (edges of an ordinary image).",
        RENDER_GROUP,
    ),
)
# The options that pick or load parts (a server loads them once at start; a chat session keeps
# the ones it started with): the groups Image model, plus the writer, backend, tokenizer,
# embedder and threads.
PART_OPTIONS: tuple[str, ...] = tuple(
    o.name
    for o in DECLARED
    if o.group == MODEL_GROUP or o.name in ("writer", "backend", "tokenizer", "embedder", "threads")
)


def _field(option: Option) -> tuple[Any, Any]:
    return (
        option.type | None,
        Field(None, description=option.help_text, ge=option.ge, le=option.le, gt=option.gt),
    )


RunOptions: type[BaseModel] = create_model(
    "RunOptions",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    **{option.name: _field(option) for option in DECLARED},
)
RunOptions.__doc__ = "Every declared run option; None: not given (the defaults apply)."


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
    option = next(o for o in DECLARED if o.name == name)
    found = {"ge": option.ge, "le": option.le, "gt": option.gt}
    return {k: v for k, v in found.items() if v is not None}


def given(options: BaseModel) -> dict[str, Any]:
    """The options that were set."""
    return options.model_dump(exclude_none=True)
