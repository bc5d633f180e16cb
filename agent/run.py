"""The run API: the one way every front end runs the agent.

    from zit_agent.agent.run import Runner
    from zit_agent.options import run_options

    options = run_options(writer="gguf:/models/qwen3-4b.gguf", count=4, noise=0.5)
    runner = Runner.load(settings, options)            # loads the parts once
    result = runner.generate("a portrait in a cafe", options, out_dir=Path("out"))
    chat = runner.chat("cafe")                          # a session, continued turn by turn
    state = chat.send("make it night", options)

`zit generate`, `zit chat`, `zit demo`, the eval runner's agent strategy, the server and the Ray
workers all call this module; none of them builds render options, loads parts or starts a graph
itself. The steps, each in one place:

1. `parts_spec`: which parts a request uses (data only, stored with a chat session).
2. `load_parts`: writer, image backend (and its tokenizer), embedder, through the registries.
3. `render_options`: a request's options on top of settings and the model variant's defaults.
4. `initial_state`: the agent's starting state, the same for every entry point.
5. `Runner.generate` / `Runner.render_plain` / `Runner.chat`: run it, with progress events.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from zit_agent.agent import levers
from zit_agent.defaults import AGENT, LIMITS, RENDER, VARIANTS
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from zit_agent.agent.drafting import WrittenSequence
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.nodes import AgentContext
    from zit_agent.agent.state import AgentState
    from zit_agent.backends.base import (
        Embedder,
        ImageBackend,
        RenderedImage,
        RenderOptions,
        Sampling,
        StepGate,
        Writer,
    )
    from zit_agent.backends.provenance import RenderRequest
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.options import RunOptions
    from zit_agent.settings import Settings

Event = Callable[[str, dict[str, Any]], None]
Progress = Callable[[str], None]
MODEL_OPTIONS = {  # declared option -> the image backend loader's keyword
    "text_encoder": "text_encoder", "vae": "vae", "transformer": "transformer",
    "device": "device", "dtype": "dtype", "cpu_offload": "cpu_offload",
    "attention": "attention", "compile": "compile", "batch": "max_batch",
    "checkpoint": "checkpoint", "controlnet": "controlnet", "variant": "variant",
    "vae_tiling": "vae_tiling",
}  # fmt: skip


def _ignore(*_: Any) -> None:
    pass


# -- 1. which parts ------------------------------------------------------------------------------
class PartsSpec(BaseModel):
    """Which parts a run uses: specs only, so a chat session can store them and load them again."""

    writer: str | None = None  # None: no writer (the idea as it is)
    backend: str = "zimage"
    tokenizer: str | None = None  # None: the image backend's own
    embedder: str | None = None  # None: the `embedder` setting, else hash
    image_model: str = ""
    threads: int | None = None
    vram: str | None = None  # plan memory for a card of this size (`backends.memory`)
    model: dict[str, Any] = {}  # image-model loader options (dtype, cpu_offload, ...)


def parts_spec(settings: Settings, options: RunOptions, stored: dict[str, Any] | None = None):
    """The parts of `options` on top of `stored` (a chat session's) and settings."""
    stored = stored or {}
    writer = first_given(options.writer, stored.get("writer"), settings.writer)
    model = {**stored.get("model", {})}
    model.update(
        {k: v for k, v in options.model_dump(include=set(MODEL_OPTIONS)).items() if v is not None}
    )
    return PartsSpec(
        writer=None if writer in (None, "", "none") else writer,
        backend=first_given(options.backend, stored.get("backend"), "zimage"),
        tokenizer=first_given(options.tokenizer, stored.get("tokenizer"), settings.tokenizer),
        embedder=first_given(options.embedder, stored.get("embedder")),
        image_model=first_given(
            options.image_model, stored.get("image_model"), settings.image_model
        ),
        threads=first_given(options.threads, stored.get("threads")),
        vram=first_given(options.vram, stored.get("vram")),
        model=model,
    )


def first_given(*values: Any) -> Any:
    """The first value that is not None (an option, then what a session stored, then a default)."""
    return next((v for v in values if v is not None), None)


# -- 2. loading ----------------------------------------------------------------------------------
@dataclass
class Parts:
    """The loaded parts of a run (never stored in state: they travel as the graph's context)."""

    spec: PartsSpec
    tokenizer: QwenTokenizer
    backend: ImageBackend
    writer: Writer | None = None
    embedder: Embedder | None = None
    analyzer: Any = None  # `backends.analyzers.Analyzer` for the rut kinds, when it runs here
    analyzer_note: str | None = None  # why not (how to install it)
    notes: list[str] = field(default_factory=list)
    plan: Any = None  # the memory plan it loaded by (`backends.memory.MemoryPlan`), if any


def load_parts(
    settings: Settings, spec: PartsSpec, *, embedder: bool = True, progress: Progress = _ignore,
    tokenizer: QwenTokenizer | None = None,
) -> Parts:  # fmt: skip
    """Load each part once, through the registries, saying what loads (`progress`). A loaded
    `tokenizer` may be handed in (it wins over `spec.tokenizer`)."""
    from zit_agent.backends.registry import factory, loader_options

    options = {MODEL_OPTIONS[k]: v for k, v in spec.model.items()}
    taken = loader_options(spec.backend)
    refused = [name for name in spec.model if MODEL_OPTIONS[name] not in taken]
    if refused:
        raise UserError(
            f"the {spec.backend} backend takes no {', '.join(refused)} option",
            hint=f"leave out {', '.join('{' + name + '}' for name in refused)}",
        )
    plan = memory_plan(settings, spec)
    writer_options: dict[str, Any] = {}
    if plan is not None:
        progress(f"memory plan for {spec.vram}: " + "; ".join(plan.lines()[:1]))
        options.update(plan.backend_options())
        if not plan.writer_on_device and spec.writer:  # the writer runs on the CPU
            gguf = spec.writer.startswith("gguf:") or spec.writer.endswith(".gguf")
            writer_options = {"n_gpu_layers": 0} if gguf else {"device": "cpu"}
    progress(f"loading the image backend ({spec.backend}) and its tokenizer")
    backend, tokenizer = factory("image backend", spec.backend)(
        model=spec.image_model, tokenizer=tokenizer or spec.tokenizer, download=settings.download,
        **options,
    )  # fmt: skip
    parts = Parts(spec=spec, tokenizer=tokenizer, backend=backend, plan=plan)
    if spec.writer:
        from zit_agent.backends.writers import load_writer

        progress(f"loading the writer {spec.writer}")
        parts.writer = load_writer(
            spec.writer, download=settings.download, threads=spec.threads, backend=backend,
            **writer_options,
        )  # fmt: skip
    if embedder:
        progress("loading the image embedder")
        parts.embedder, parts.notes = _embedder(settings, spec)
        parts.analyzer, analyzer_notes = _analyzer(settings)
        parts.analyzer_note = analyzer_notes[0] if analyzer_notes else None
        parts.notes += analyzer_notes
    return parts


def memory_plan(settings: Settings, spec: PartsSpec):
    """The memory plan for these parts when one was asked for (`vram`), checked: parts that
    cannot fit are refused before anything loads. None: no plan."""
    if spec.vram is None:
        return None
    if spec.backend != "zimage":
        raise UserError("a memory plan needs the zimage backend", hint="leave out {vram}")
    from zit_agent.backends.memory import plan_memory

    model = spec.model
    writer = (
        spec.writer.partition(":")[2] if spec.writer and spec.writer.startswith("gguf:") else None
    )
    plan = plan_memory(
        spec.vram, model=spec.image_model, transformer=model.get("transformer"),
        text_encoder=model.get("text_encoder"), vae=model.get("vae"),
        checkpoint=model.get("checkpoint"), controlnet=model.get("controlnet"), writer=writer,
        batch=model.get("batch") or RENDER.max_batch, dtype=model.get("dtype"),
        download=settings.download,
    )  # fmt: skip
    plan.check()
    import torch

    device = str(model.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if plan.device == "cuda" and device.startswith("cpu"):  # a card's plan, a run without one
        plan.device = (
            "a CUDA card: this run renders on the CPU, so only its offload and tiling apply"
        )
    return plan


def _embedder(settings: Settings, spec: PartsSpec):
    from zit_agent.backends.embedders import load_default_embedder, load_embedder

    if spec.embedder:
        return load_embedder(spec.embedder, settings), []
    return load_default_embedder(settings)


def _analyzer(settings: Settings):
    from zit_agent.backends.analyzers import load_default_analyzer

    return load_default_analyzer(settings.analyzer)


# -- 3. render options ---------------------------------------------------------------------------
def render_options(
    settings: Settings, options: RunOptions, tokenizer: QwenTokenizer | None = None, *,
    variant: str | None = None,
) -> RenderOptions:  # fmt: skip
    """The one place a request becomes `RenderOptions`: given options, then zit.toml/ZIT_RENDER__*,
    then the model variant's defaults, then `zit_agent.defaults.RENDER` (`check_request` holds
    them to the backend's check before any model loads). The negative prompt's ids are added
    when CFG is on (needs `tokenizer`)."""
    from zit_agent.backends.base import NoiseSettings, RenderOptions
    from zit_agent.backends.samplers import get_sampler

    chosen = VARIANTS[variant or "turbo"]
    width, height = parse_size(options.size) if options.size else (
        settings.render_value("width"), settings.render_value("height"))  # fmt: skip
    if options.init and not options.size:  # image-to-image: the init image's size
        from zit_agent.backends.refine import render_size_for

        width, height = render_size_for(options.init)
    loras = [parse_lora_spec(spec) for spec in options.lora or []]
    gates = [gate for _, _, gate in loras] if any(g for _, _, g in loras) else []
    noise = None
    if options.noise:
        noise = NoiseSettings(
            strength=options.noise,
            fraction=first_given(options.noise_fraction, RENDER.noise_fraction),
            steps_share=first_given(options.noise_steps, RENDER.noise_steps_share),
            seed=first_given(options.noise_seed, 0),
        )
    elif any(
        v is not None for v in (options.noise_fraction, options.noise_steps, options.noise_seed)
    ):
        raise UserError("noise fraction, steps and seed need a noise strength", hint="set {noise}")
    result = RenderOptions(
        width=width,
        height=height,
        steps=first_given(options.steps, settings.render.steps, chosen.steps),
        guidance=first_given(options.guidance, settings.render.guidance, chosen.guidance),
        layer=first_given(options.layer, settings.render.layer, RENDER.layer),
        shift=first_given(options.shift, settings.render.shift),  # None: the model's own
        sampler=get_sampler(options.sampler).name if options.sampler else RENDER.sampler,
        scheduler=options.scheduler or RENDER.scheduler,
        noise=noise,
        lora=loras[0][0] if loras else None,
        lora_strength=loras[0][1] if loras else 1.0,
        extra_loras=[(path, strength) for path, strength, _ in loras[1:]],
        lora_gates=gates,
        early_steps=early_steps(options),
        cfg_normalization=chosen.cfg_normalization,
        control_image=options.control,
        control_scale=first_given(options.control_scale, RENDER.control_scale),
        preprocess=options.preprocess or "none",
        init_image=_resolved(options.init),
        strength=first_given(
            options.strength, RENDER.inpaint_strength if options.mask else RENDER.strength
        ),
        mask_image=_resolved(options.mask),
    )
    if options.strength is not None and not options.init:
        raise UserError(
            "a strength needs an init image", hint="give the image to start from with {init}"
        )
    if result.early_steps and tokenizer is not None:
        result = result.model_copy(
            update={
                "early_ids": early_ids(options.early_prompt or "", tokenizer, settings, options)
            }
        )
    negative = first_given(options.negative, chosen.negative)
    if negative is None or result.guidance <= 0 or tokenizer is None:
        return result
    from zit_agent.sequence import ChatSequence, assemble

    ids = assemble(
        ChatSequence.plain(negative), tokenizer, max_tokens=token_budget(settings, options)
    ).ids
    return result.model_copy(update={"negative_ids": ids})


def _resolved(path: str | None) -> str | None:
    """A file option as an absolute path (records and chat sessions keep it so)."""
    return str(Path(path).expanduser().resolve()) if path else None


def token_budget(
    settings: Settings, options: RunOptions, ceiling: int = LIMITS.token_ceiling
) -> int:
    """The sequence's token budget, checked against the DiT's ceiling (the loaded model's, or
    Z-Image's before one loads); past 512 it warns."""
    from zit_agent.sequence import check_token_budget

    budget = first_given(options.max_tokens, settings.render_value("max_tokens"))
    return check_token_budget(budget, ceiling)


def candidate_counts(
    options: RunOptions, render: RenderOptions, keep: int
) -> tuple[int, int] | None:
    """(M candidates, preview step K) of a request, checked against the n images it keeps and the
    schedule; None: no candidates."""
    from zit_agent.backends.candidates import check_candidates

    if not options.candidates:
        if options.preview_step is not None:
            raise UserError("a preview step needs candidates", hint="give {candidates} too")
        return None
    step = first_given(options.preview_step, RENDER.preview_step)
    check_candidates(render, options.candidates, keep, step)
    return options.candidates, step


def seeds_of(options: RunOptions, count: int) -> list[int]:
    first = options.seed if options.seed is not None else secrets.randbelow(2**31)
    if first + count - 1 > LIMITS.max_seed:
        raise UserError(
            f"seed {first} leaves no room for {count} image(s)", hint="use a smaller {seed}"
        )
    return [first + i for i in range(count)]


def idea_seeds(
    settings: Settings, idea: str, options: RunOptions, count: int, *,
    writer: Writer | None = None, allow_missing: bool = False, on_event: Event = _ignore,
) -> tuple[list[int], list[str] | None]:  # fmt: skip
    """The seeds of a request and, when the idea is a wildcard template (`agent.wildcards`), each
    seed's expansion (None: a plain idea). Every front end expands ideas here: the same template
    and seed give the same idea everywhere. `--combinatorial`: one seed per combination.

    With a `writer`, a `__name__` that has no file is written by the writer, saved as
    ZIT_HOME/wildcards/NAME.txt (the person can edit it; later runs read it) and said: a `wildcard`
    event and a warning. `allow_missing`: no error for such a name (a check before the writer
    loads)."""
    import logging

    from zit_agent.agent.wildcards import Wildcards, is_template, written_by

    if not is_template(idea):
        return seeds_of(options, count), None
    first = first_given(options.seed, 0)
    write = written_by(writer, idea, first) if writer is not None else None
    wildcards = Wildcards.for_request(
        settings, options, write_missing=write, allow_missing=allow_missing
    )
    if options.combinatorial:
        ideas = wildcards.combinations(idea, LIMITS.max_count)
        seeds = seeds_of(options, len(ideas))
    else:
        seeds = seeds_of(options, count)
        ideas = wildcards.expand(idea, seeds)
    for path in wildcards.written:
        values = len(path.read_text(encoding="utf-8").splitlines())
        logging.getLogger("zit.wildcards").warning(
            "the writer wrote the wildcard %s (%d values): edit it to change them", path, values
        )
        on_event("wildcard", {"written": str(path), "values": values})
    return seeds, ideas


def image_count(options: RunOptions, ruts: bool) -> int:
    """A rut shows across seeds: compare `AGENT.rut_count` images unless told otherwise."""
    return options.count or (AGENT.rut_count if ruts else 1)


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768): width, height."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(
            f"bad size {text!r}", hint="write it as WIDTHxHEIGHT, for example 1024x1024"
        )
    return int(parts[0]), int(parts[1])


def early_steps(options: RunOptions) -> int:
    """The steps an early prompt conditions (0: none); early steps need an early prompt."""
    if options.early_prompt is None:
        if options.early_steps:
            raise UserError("early steps need an early prompt", hint="give {early_prompt} too")
        return 0
    return first_given(options.early_steps, RENDER.early_steps)


def early_ids(
    prompt: str, tokenizer: QwenTokenizer, settings: Settings, options: RunOptions
) -> list[int]:
    """The early prompt's plain sequence; an empty prompt is the template with no user text."""
    from zit_agent.agent.diversity import early_ids as assembled
    from zit_agent.sequence import check_utf8

    return assembled(check_utf8(prompt), tokenizer, token_budget(settings, options))


GATE = re.compile(r"^(\d+(?:\.\d*)?)-(\d+(?:\.\d*)?)$")


def parse_lora_spec(spec: str) -> tuple[str, float, StepGate | None]:
    """'PATH', 'PATH:STRENGTH' or either with a step gate '@START-END' (a half-open range of
    steps, '@0-2' = the first two; with a decimal point, fractions of the schedule: '@0-0.25')
    -> (path, strength, gate); strength and file checked (the gate against the schedule later,
    when the step count is known)."""
    from zit_agent.backends.base import StepGate

    gate = None
    head, sep, tail = spec.rpartition("@")
    found = GATE.match(tail.strip()) if sep and head else None
    if found:
        start, end = found.groups()
        fraction = "." in start or "." in end
        gate = StepGate(start=float(start), end=float(end), fraction=fraction)
        spec = head
    elif sep and head and re.fullmatch(r"[\d.\- ]+", tail):
        raise UserError(
            f"bad LoRA step gate @{tail}", hint="write it as @START-END, e.g. @0-2 or @0-0.25"
        )
    path, strength = parse_lora(spec)
    return path, strength, gate


def parse_lora(spec: str) -> tuple[str, float]:
    """'PATH' or 'PATH:STRENGTH' -> (path, strength); strength and file checked. A step gate
    (`parse_lora_spec`) is left out."""
    from zit_agent.backends.zimage import check_lora_file, check_lora_strength

    head, sep, tail = spec.rpartition("@")
    if sep and head and GATE.match(tail.strip()):
        spec = head
    path, strength = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            path, strength = head, float(tail)
        except ValueError:
            path = spec  # a colon that is part of the path
    check_lora_strength(strength)
    return str(check_lora_file(path)), strength


def writer_sampling(options: RunOptions) -> Sampling | None:
    """The writer's sampling with the options given; None: the writer's defaults."""
    from zit_agent.backends.base import Sampling

    given = {"temperature": options.temperature, "max_new_tokens": options.max_new_tokens}
    given = {k: v for k, v in given.items() if v is not None}
    return Sampling(**given) if given else None


def resolve_shape(shape: str | None, has_writer: bool) -> str:
    from zit_agent.sequence import SHAPES

    shape = shape or ("think" if has_writer else "plain")
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}", hint=f"use one of {', '.join(SHAPES)}")
    return shape


def check_request(
    settings: Settings, options: RunOptions, *, ruts: bool, idea: str | None = None
) -> None:
    """Everything about a request that can be checked before a model loads (with `idea`: its
    wildcards too)."""
    from zit_agent.backends.registry import registered

    render = render_options(settings, options)
    token_budget(settings, options)
    if idea is not None:  # the syntax and the files (a writer may write a missing one)
        with_writer = parts_spec(settings, options).writer is not None
        checked = options if options.seed is not None else options.model_copy(update={"seed": 0})
        idea_seeds(settings, idea, checked, image_count(options, ruts), allow_missing=with_writer)
    seeds_of(options, image_count(options, ruts))
    candidate_counts(options, render, image_count(options, ruts))
    levers.parse_ladder(options.ladder)
    if options.adapter:
        from zit_agent.agent.diversity import adapter_knob

        adapter_knob(options.adapter)
    if options.shape is not None:
        resolve_shape(options.shape, True)
    if options.backend is not None and options.backend not in registered("image backend"):
        names = ", ".join(registered("image backend"))
        raise UserError(f"unknown backend {options.backend!r}", hint=f"use one of {names}")
    precheck(options.backend or "zimage", render)


def precheck(backend: str, render: RenderOptions) -> None:
    """What image backend `backend` would refuse in `render`, before its model loads (its
    registered `check`; the loaded backend's own check runs again at render)."""
    from zit_agent.backends.registry import preload_check

    check = preload_check(backend)
    if check is not None:
        check(render)


# -- 4. the starting state -----------------------------------------------------------------------
def initial_state(
    idea: str, options: RunOptions, render: RenderOptions, *, seeds: list[int], budget: int,
    has_writer: bool, ruts: bool, run_id: str, chat: bool = False, parts: dict | None = None,
    ideas: list[str] | None = None,
) -> AgentState:  # fmt: skip
    """The agent's first state: the same for `generate`, a chat session's first turn and the eval
    agent strategy (so one request records the same render settings everywhere). `ideas`: a
    wildcard template's expansion for each seed (`idea_seeds`)."""
    from zit_agent.agent.diversity import adapter_knob
    from zit_agent.agent.state import AgentState, ChatTurn, RenderKnobs
    from zit_agent.sequence import check_utf8

    if not check_utf8(idea).strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    return AgentState(
        idea=idea.strip(),
        shape=resolve_shape(options.shape, has_writer),
        n=len(seeds),
        seed=seeds[0],
        max_attempts=first_given(options.max_attempts, AGENT.max_attempts),
        ruts=ruts,
        chat=chat,
        ladder=levers.parse_ladder(options.ladder),
        max_tokens=budget,
        run_id=run_id,
        temperature=None,
        knobs=RenderKnobs(
            width=render.width,
            height=render.height,
            layer=render.layer,
            noise=render.noise.strength if render.noise else 0.0,
            noise_seed=render.noise.seed if render.noise else 0,
            lora=render.lora,
            lora_strength=render.lora_strength,
            control=render.control_image,
            init=render.init_image,
            strength=render.strength,
            mask=render.mask_image,
            lora_gate=render.lora_gates[0].model_dump()
            if render.lora_gates and render.lora_gates[0]
            else None,
            early_prompt=options.early_prompt if render.early_steps else None,
            early_steps=render.early_steps,
            candidates=options.candidates or 0,
            preview_step=first_given(options.preview_step, RENDER.preview_step),
            adapter=adapter_knob(options.adapter),
        ),
        turns=[ChatTurn(message=idea.strip())] if chat else [],
        parts=parts or {},
        expansions=[text.strip() for text in ideas or []],
    )


def image_record(image: str | Path) -> dict[str, Any]:
    """The zit record of a PNG (a one-line error when the file is missing or carries none)."""
    from zit_agent.backends.provenance import read_record

    path = Path(image).expanduser()
    if not path.is_file():
        raise UserError(f"no image file {path}", hint="give the path of a PNG written by zit")
    record = read_record(path)
    if record is None:
        raise UserError(
            f"{path} has no zit record (not a PNG written by zit, or its metadata was removed)",
            hint="give a PNG written by zit generate, chat or eval",
        )
    return record


def _rank(candidate: Any) -> int:
    return candidate.rank if candidate.rank is not None else 1 << 30


def _with_ids(rendered: list[RenderedImage], ids: list[int]) -> list[RenderedImage]:
    """Each image's record with the exact ids it was rendered from, whatever the backend wrote
    (a record is what renders it again)."""
    from zit_agent.backends.provenance import id_fields

    missing = [item for item in rendered if "token_ids" not in item.record]
    if missing:  # Z-Image records them itself; the sketch and plugin backends may not
        recorded = id_fields(ids)
        for item in missing:
            item.record = {**recorded, **item.record}
    return rendered


def run_id_for(idea: str) -> str:
    """A new run's id: the time, the idea, and a random tail, so two runs of one idea in the same
    second get threads of their own (a thread's attempts grow, `agent.state.GROWS`)."""
    from zit_agent.backends.provenance import slug

    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(idea, 32)}-{secrets.token_hex(2)}"


# -- 5. running ----------------------------------------------------------------------------------
_COMPILED: dict[int, Any] = {}


def compiled_graph(checkpointer: Any = None) -> Any:
    """The agent graph, compiled once per process and checkpointer (compiling costs ~12 ms)."""
    key = id(checkpointer)
    if key not in _COMPILED:
        from zit_agent.agent.graph import build_graph

        _COMPILED[key] = (checkpointer, build_graph().compile(checkpointer=checkpointer))
    return _COMPILED[key][1]


class Runner:
    """A settings object and loaded parts; runs requests against them (load once, run many)."""

    def __init__(self, settings: Settings, parts: Parts):
        self.settings = settings
        self.parts = parts

    @classmethod
    def load(
        cls, settings: Settings, options: RunOptions, *, ruts: bool = True,
        stored: dict[str, Any] | None = None, progress: Progress = _ignore,
        tokenizer: QwenTokenizer | None = None,
    ) -> Runner:  # fmt: skip
        """The parts `options` name (on top of a chat session's `stored` ones and settings),
        loaded through the registries. A loaded `tokenizer` may be handed in."""
        spec = parts_spec(settings, options, stored)
        embedder = ruts or bool(options.candidates)  # candidates are judged by the embedder
        parts = load_parts(
            settings, spec, embedder=embedder, progress=progress, tokenizer=tokenizer
        )
        return cls(settings, parts)

    @classmethod
    def from_parts(
        cls, tokenizer: QwenTokenizer, backend: ImageBackend, *, writer: Writer | None = None,
        embedder: Embedder | None = None, settings: Settings | None = None,
        spec: PartsSpec | None = None,
    ) -> Runner:  # fmt: skip
        """A runner over parts loaded elsewhere (tests, the demo, a benchmark): `spec` says what
        they are (default: the backend's registered name and nothing else)."""
        from zit_agent.settings import load_settings

        spec = spec or PartsSpec(backend=backend.name)
        parts = Parts(spec, tokenizer, backend, writer=writer, embedder=embedder)
        return cls(settings or load_settings(), parts)

    def using(self, **changes: Any) -> Runner:
        """This runner with some parts changed (`Parts` fields: an eval config's writer, no
        writer); the loaded tokenizer and image backend are shared, nothing loads again."""
        import dataclasses

        return Runner(self.settings, dataclasses.replace(self.parts, **changes))

    @property
    def variant(self) -> str | None:
        return self.parts.backend.variant

    def budget(self, options: RunOptions) -> int:
        """The token budget, against the loaded DiT's own ceiling."""
        return token_budget(self.settings, options, self.parts.backend.token_ceiling)

    def options_for(self, options: RunOptions) -> RenderOptions:
        return render_options(self.settings, options, self.parts.tokenizer, variant=self.variant)

    def context(
        self, options: RunOptions, render: RenderOptions, *, out_dir: Path,
        store: HistoryStore | None, on_event: Event = _ignore,
    ) -> AgentContext:  # fmt: skip
        from zit_agent.agent.nodes import AgentContext

        return AgentContext(
            runner=self,
            out_dir=Path(out_dir),
            base_options=render,
            sampling=writer_sampling(options),
            store=store,
            retokenize=bool(options.retokenize),
            on_event=on_event,
        )

    # -- the automatic loop ----------------------------------------------------------------------
    def generate(
        self, idea: str, options: RunOptions, *, out_dir: Path, ruts: bool = True,
        on_event: Event = _ignore, checkpointer: Any = None, store: HistoryStore | None = None,
        run_id: str | None = None, sampling: Sampling | None = None,
        record: dict[str, Any] | None = None,
    ) -> AgentState:  # fmt: skip
        """The rut-avoiding loop (write, render, judge, escape) to its end; the final state.
        `record` is added to every image's provenance (an eval names its run and job)."""
        from zit_agent.agent.graph import run_config, state_of
        from zit_agent.agent.history import HistoryStore

        render = self.options_for(options)
        run_id = run_id or run_id_for(idea)
        initial = self.start(idea, options, render, ruts=ruts, run_id=run_id, on_event=on_event)
        own = HistoryStore(self.settings.history_db) if store is None and ruts else None
        store = own or store
        try:
            context = self.context(options, render, out_dir=out_dir, store=store, on_event=on_event)
            if sampling is not None:  # a full writer sampling (eval configs have one)
                context.sampling = sampling
            context.record = dict(record or {})
            thread = f"generate:{run_id}" if checkpointer is not None else None
            app = compiled_graph(checkpointer)
            return state_of(app.invoke(initial, run_config(initial, thread), context=context))
        finally:
            if own is not None:
                own.close()

    def start(
        self, idea: str, options: RunOptions, render: RenderOptions, *, ruts: bool, run_id: str,
        chat: bool = False, on_event: Event = _ignore,
    ) -> AgentState:  # fmt: skip
        """A run's first state on these parts: its seeds (and a wildcard idea's expansions) and
        everything `initial_state` records. A chat turn renders one image unless told (`count`),
        the loop `AGENT.rut_count` when it checks for ruts (`image_count`)."""
        count = image_count(options, ruts and not chat)
        seeds, ideas = self.idea_seeds(idea, options, count, on_event)
        parts = self.parts.spec.model_dump()
        if chat:  # a session keeps its options for the next turns
            parts["options"] = options.model_dump(exclude_none=True)
        return initial_state(
            idea, options, render, seeds=seeds, budget=self.budget(options),
            has_writer=self.parts.writer is not None, ruts=ruts, run_id=run_id, chat=chat,
            parts=parts, ideas=ideas,
        )  # fmt: skip

    # -- writing ---------------------------------------------------------------------------------
    def write(
        self, idea: str, *, shape: str, seed: int, max_tokens: int, sampling: Sampling | None = None,
        retokenize: bool = False, instruction: str = "expand", target_words: int | None = None,
    ) -> WrittenSequence:  # fmt: skip
        """The writer's description of `idea` (a `prompts/` instruction) as the chat sequence of
        `shape`, assembled to the exact ids to render (`zit expand`, the eval strategies, MCP's
        expand)."""
        from zit_agent.agent.drafting import expand_idea

        if self.parts.writer is None:
            raise UserError("writing a description needs a writer", hint="give {writer}")
        return expand_idea(
            self.parts.writer, self.parts.tokenizer, idea, instruction=instruction,
            target_words=target_words, shape=shape, sampling=sampling, seed=seed,
            retokenize=retokenize, max_tokens=max_tokens,
        )  # fmt: skip

    # -- one plain render ------------------------------------------------------------------------
    def render_plain(self, idea: str, options: RunOptions, *, out_dir: Path) -> dict[str, Any]:
        """The idea's plain sequence (id for id what diffusers feeds for `prompt=idea`), rendered
        once per seed and saved with provenance. Returns what `zit generate --json` prints."""
        from zit_agent.sequence import ChatSequence, assemble, check_utf8

        if not check_utf8(idea).strip():
            raise UserError("the idea is empty", hint="give an idea with some words in it")
        render = self.options_for(options)
        seeds, ideas = self.idea_seeds(idea, options, image_count(options, ruts=False))
        if ideas is not None:  # a wildcard template: each seed's own idea
            return self._render_expanded(idea, ideas, seeds, options, render, out_dir=out_dir)
        sequence = assemble(
            ChatSequence.plain(idea),
            self.parts.tokenizer,
            max_tokens=self.budget(options),
        )
        extra: dict[str, Any] = {}
        plan = candidate_counts(options, render, len(seeds))
        if plan is None:
            paths = self.render_sequence(sequence.ids, seeds, render, out_dir=out_dir, idea=idea)
        else:
            paths, report = self.render_candidates(
                sequence.ids, seeds_of(options, plan[0]), render, out_dir=out_dir, idea=idea,
                keep=len(seeds), preview_step=plan[1],
            )  # fmt: skip
            seeds = [c.seed for c in sorted(report.candidates, key=_rank) if c.kept]
            extra = {"candidates": report.model_dump(), "steps": report.steps}
        return {
            **extra,
            "images": [str(p) for p in paths],
            "seeds": seeds,
            "token_count": sequence.count,
            "budget": sequence.budget,
            "cut": [c.model_dump() for c in sequence.cut] if sequence.cut else None,
            "model": self.parts.spec.image_model,
            "options": render.model_dump(exclude={"negative_ids"}),
            "negative": options.negative,
        }

    def _render_expanded(
        self, template: str, ideas: list[str], seeds: list[int], options: RunOptions,
        render: RenderOptions, *, out_dir: Path,
    ) -> dict[str, Any]:  # fmt: skip
        """`render_plain` for a wildcard template: each seed's expansion as its plain sequence
        (seeds that drew the same expansion render together); each record keeps both."""
        from zit_agent.sequence import ChatSequence, assemble

        by_idea: dict[str, list[int]] = {}
        for seed, text in zip(seeds, ideas, strict=True):
            by_idea.setdefault(text.strip(), []).append(seed)
        paths: dict[int, str] = {}
        counts: dict[int, int] = {}
        for text, group in by_idea.items():
            sequence = assemble(
                ChatSequence.plain(text), self.parts.tokenizer, max_tokens=self.budget(options)
            )
            wildcards = {"template": template, "expansion": text,
                         "combinatorial": bool(options.combinatorial)}  # fmt: skip
            for seed, path in zip(
                group,
                self.render_sequence(
                    sequence.ids, group, render, out_dir=out_dir, idea=text, wildcards=wildcards
                ),
                strict=True,
            ):
                paths[seed], counts[seed] = str(path), sequence.count
        return {
            "images": [paths[seed] for seed in seeds],
            "seeds": seeds,
            "ideas": [text.strip() for text in ideas],
            "template": template,
            "token_count": max(counts.values()),
            "budget": self.budget(options),
            "cut": None,
            "model": self.parts.spec.image_model,
            "options": render.model_dump(exclude={"negative_ids"}),
            "negative": options.negative,
        }

    def idea_seeds(
        self, idea: str, options: RunOptions, count: int, on_event: Event = _ignore
    ) -> tuple[list[int], list[str] | None]:
        """The seeds and each seed's expansion of a wildcard template (see `idea_seeds`); a
        wildcard with no file is written by this runner's writer, if it has one."""
        return idea_seeds(
            self.settings, idea, options, count, writer=self.parts.writer, on_event=on_event
        )

    def render(
        self, ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]:
        """These exact token ids rendered once per seed: the backend's own check, then its
        render, each image's record holding the ids (every render goes through here)."""
        self.parts.backend.check(options)
        return _with_ids(self.parts.backend.render(ids, seeds, options), ids)

    def rerender(
        self, record: dict[str, Any], *, out_dir: Path, source: str,
        request: RenderRequest | None = None, options: RenderOptions | None = None,
        seed: int | None = None,
    ) -> tuple[Path, RenderedImage, str | None]:  # fmt: skip
        """An image's record rendered again: its token ids and settings (`request`: what a
        caller made of the record, default all of it), its init image checked unchanged, the
        backend's check, then the record's batch with its threads, so the same seed and options
        give the same pixels (`render_recorded`). Saved with a record naming `source`.
        -> the path, the rendered image, and a note when its pixels may differ."""
        from zit_agent.backends.provenance import render_recorded, render_request, save_rendered
        from zit_agent.backends.refine import check_init_unchanged

        check_init_unchanged(record)  # an image-to-image render needs its init image (and mask)
        request = request or render_request(record)
        self.parts.backend.check(options or request.options)
        item, note = render_recorded(self.parts.backend, request, options, seed)
        [item] = _with_ids([item], request.token_ids)
        [path] = save_rendered(
            [item], out_dir, idea=record.get("idea"), writer=record.get("writer"),
            rerendered_from=source,
        )  # fmt: skip
        return path, item, note

    def render_sequence(
        self, ids: list[int], seeds: list[int], render: RenderOptions, *, out_dir: Path,
        idea: str | None, wildcards: dict[str, Any] | None = None, prefix: str | None = None,
    ) -> list[Path]:  # fmt: skip
        """These exact token ids rendered once per seed, saved with provenance (also how a
        stored sequence is rendered again). `wildcards`: the template and expansion, recorded;
        `prefix`: the file names' start (default: the time)."""
        from zit_agent.backends.provenance import save_rendered

        rendered = self.render(ids, seeds, render)
        if wildcards is not None:
            for item in rendered:
                item.record["wildcards"] = {**wildcards, "seed": item.seed}
        return save_rendered(rendered, out_dir, idea=idea, prefix=prefix)

    def render_candidates(
        self, ids: list[int], seeds: list[int], render: RenderOptions, *, out_dir: Path,
        idea: str | None, keep: int, preview_step: int,
    ):  # fmt: skip
        """`seeds` previewed, the `keep` most different from each other and the history
        finished and saved (`agent.candidates`); the paths and the report."""
        from zit_agent.agent.candidates import render_with_candidates
        from zit_agent.agent.history import HistoryStore
        from zit_agent.backends.provenance import save_rendered

        if self.parts.embedder is None:  # a plain render loads no embedder of its own
            self.parts.embedder, notes = _embedder(self.settings, self.parts.spec)
            self.parts.notes += notes
        with HistoryStore(self.settings.history_db) as store:
            kept, report = render_with_candidates(
                self.parts.backend, self.parts.embedder, store, ids, seeds, render, keep=keep,
                preview_step=preview_step,
            )  # fmt: skip
        return save_rendered(kept, out_dir, idea=idea), report

    def plain_path(self, options: RunOptions, *, ruts: bool) -> bool:
        """Whether a request is the plain path (no writer, no rut checks, the Z-Image backend, no
        agent options): the idea's plain sequence rendered once, as diffusers would."""
        parts = self.parts
        return (
            parts.writer is None and not ruts and parts.spec.backend == "zimage"
            and options.shape in (None, "plain") and options.ladder is None
        )  # fmt: skip

    # -- refining an image -----------------------------------------------------------------------
    def vary(
        self, image: Path, *, strength: float, seeds: list[int], out_dir: Path,
        mask: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Variations of a zit image: its record's token ids and settings rendered from the
        image itself (image-to-image at `strength`, inside `mask` when given) with new `seeds`.
        Returns what `zit vary --json` prints."""
        from zit_agent.backends.provenance import render_request, save_rendered

        record = image_record(image)
        request = render_request(record)
        options = request.options.model_copy(
            update={
                "init_image": str(Path(image).expanduser().resolve()),
                "strength": strength,
                "mask_image": _resolved(mask),
            }
        )
        rendered = self.render(request.token_ids, seeds, options)
        for item in rendered:
            item.record["varied_from"] = str(image)
        paths = save_rendered(
            rendered, out_dir, idea=record.get("idea"), writer=record.get("writer")
        )
        ruts = self.judge_variations(image, paths) if self.parts.embedder else None
        return {
            "ruts": ruts,
            "images": [str(p) for p in paths],
            "source": str(image),
            "seeds": seeds,
            "strength": strength,
            "mask": options.mask_image,
            "token_count": len(request.token_ids),
            "token_sha256": record.get("token_sha256"),
            "model": self.parts.spec.image_model,
        }

    def judge_variations(self, image: str | Path, variations: list[Path]) -> dict[str, Any]:
        """The rut detector over the init image and its variations (the init first): variations
        that are all copies of it read as a rut. Reported, not escaped."""
        from PIL import Image

        from zit_agent.agent import ruts

        embedder = self.parts.embedder
        if embedder is None:  # loaded without rut checks
            raise UserError(
                "judging variations needs the rut checks' embedder", hint="leave out --no-ruts"
            )
        paths = [Path(image), *variations]
        pictures = []
        for path in paths:
            with Image.open(path) as img:
                pictures.append(img.convert("RGB"))
        report = ruts.judge(
            embedder.embed(pictures), embedder=embedder.name,
            thresholds=ruts.thresholds_for(embedder.family),
            window=len(paths), labels=[str(p) for p in paths],
        )  # fmt: skip
        return {
            "verdict": report.verdict, "reason": report.reason,
            "mean_similarity": report.mean_similarity, "count": report.count,
            "embedder": report.embedder,
        }  # fmt: skip

    # -- chat ------------------------------------------------------------------------------------
    def chat(self, name: str, checkpointer: Any, *, out_dir: Path, on_event: Event = _ignore):
        from zit_agent.agent.chat import ChatSession

        return ChatSession(self, name, checkpointer, out_dir=out_dir, on_event=on_event)
