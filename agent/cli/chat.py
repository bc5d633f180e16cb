"""`zit chat`: an interactive refinement session, a LangGraph thread checkpointed under ZIT_HOME.

The first message of a new session is the idea; after that, text refines the description (the
writer's `refine` instruction) and commands change one thing at a time. The graph waits for the
person with `interrupt()`, so a session can go on in a later process: `--message TEXT` runs one turn
and exits; `--show` prints the turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.agent_options import (
    BackendOpt,
    EmbedderOpt,
    LadderOpt,
    MaxAttemptsOpt,
    MaxNewTokensOpt,
    ShapeOpt,
    TemperatureOpt,
    TokenizerOpt,
    WriterOpt,
)
from zit_agent.agent.cli.render_flags import (
    AttentionOpt,
    BatchOpt,
    CompileOpt,
    CountOpt,
    CpuOffloadOpt,
    DeviceOpt,
    DtypeOpt,
    GuidanceOpt,
    ImageModelOpt,
    LayerOpt,
    LoraOpt,
    NegativeOpt,
    NoiseFractionOpt,
    NoiseOpt,
    NoiseSeedOpt,
    NoiseStepsOpt,
    SamplerOpt,
    SeedOpt,
    ShiftOpt,
    SizeOpt,
    StepsOpt,
    TextEncoderOpt,
    TransformerOpt,
    VaeOpt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from zit_agent.agent.session import Session
    from zit_agent.agent.state import AgentState

HELP = """\
text          refine the current description with what you type
/vary         a new take: fresh values on the axes that repeat (shot, angle, framing, ...)
/undo         back one turn (images stay on disk)
/seed N       render again with seeds from N
/size WxH     render again at this size (multiples of 16)
/layer N      render again with encoder hidden layer N (Z-Image: -2)
/lora PATH:S  render again with a .safetensors LoRA at strength S (-2..2)
/show         the chat sequence of the current description
/tokens       its token ids
/history      the turns so far and their images
/help         this list
/quit         leave (the session stays; resume it with --session NAME)"""
LOCAL_COMMANDS = ("show", "tokens", "history", "help", "quit")


# -- parsing the person's input ------------------------------------------------------------------
def parse_command(text: str) -> dict[str, Any]:
    """The person's input as a command for the graph (or a local one); a `UserError` names
    what is wrong with it. Nothing is sent to the session until the input parses."""
    from zit_agent.errors import UserError

    raw = text.strip()
    if not raw:
        raise UserError("empty message", hint="type what to change, or /help")
    if not raw.startswith("/"):
        return {"kind": "text", "text": raw, "raw": raw}
    name, _, arg = raw[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    if name in LOCAL_COMMANDS or name in ("vary", "undo"):
        return {"kind": name, "raw": raw}
    if name == "seed":
        return {"kind": "seed", "seed": _int(arg, "/seed N"), "raw": raw}
    if name == "layer":
        return {"kind": "layer", "layer": _int(arg, "/layer N"), "raw": raw}
    if name == "size":
        return {"kind": "size", **_size(arg), "raw": raw}
    if name == "lora":
        return {"kind": "lora", **_lora(arg), "raw": raw}
    raise UserError(f"unknown command /{name}", hint="type /help for the commands")


def _int(arg: str, usage: str) -> int:
    from zit_agent.errors import UserError

    try:
        return int(arg)
    except ValueError:
        raise UserError(
            f"{usage} needs a whole number, got {arg!r}",
            hint=f"for example {usage.replace('N', '42')}",
        ) from None


def _size(arg: str) -> dict[str, int]:
    from zit_agent.agent.cli.common import parse_size
    from zit_agent.backends.zimage import check_size

    width, height = parse_size(arg)
    check_size(width, height)
    return {"width": width, "height": height}


def _lora(arg: str) -> dict[str, Any]:
    from zit_agent.agent.cli.render_flags import parse_lora
    from zit_agent.backends.zimage import PICKLE_SUFFIXES
    from zit_agent.errors import UserError

    if not arg:
        raise UserError("/lora needs a file", hint="/lora PATH.safetensors:STRENGTH")
    path, strength = parse_lora(arg)
    resolved = Path(path).expanduser()
    if resolved.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"LoRA {path} is a pickle file: refused", hint="use a .safetensors LoRA")
    if not resolved.is_file():
        raise UserError(f"LoRA {path} does not exist", hint="check the path after /lora")
    return {"path": str(resolved), "strength": strength}


# -- the command ---------------------------------------------------------------------------------
@app.command()
def chat(
    ctx: typer.Context,
    session: Annotated[str, typer.Option(help="Session name (a resumable thread).")] = "default",
    message: Annotated[
        str | None,
        typer.Option(help="Run one turn with this message (or /command) and exit."),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Print the session's turns and exit.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (with --message/--show).")
    ] = False,
    writer: WriterOpt = None,
    backend_kind: BackendOpt = None,
    image_model: ImageModelOpt = None,
    tokenizer: TokenizerOpt = None,
    embedder: EmbedderOpt = None,
    shape: ShapeOpt = None,
    count: CountOpt = 1,
    seed: SeedOpt = None,
    size: SizeOpt = None,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    negative: NegativeOpt = None,
    layer: LayerOpt = None,
    sampler: SamplerOpt = None,
    shift: ShiftOpt = None,
    lora: LoraOpt = None,
    noise: NoiseOpt = None,
    noise_fraction: NoiseFractionOpt = None,
    noise_steps: NoiseStepsOpt = None,
    noise_seed: NoiseSeedOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae: VaeOpt = None,
    transformer: TransformerOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    attention: AttentionOpt = None,
    compile: CompileOpt = False,
    batch: BatchOpt = 4,
    ruts: Annotated[
        bool, typer.Option("--ruts/--no-ruts", help="Check each render for ruts and escape them.")
    ] = False,
    max_attempts: MaxAttemptsOpt = 3,
    ladder: LadderOpt = None,
    temperature: TemperatureOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: ZIT_HOME/outputs/chat-NAME).")
    ] = None,
) -> None:
    """Refine an idea turn by turn. The first message is the idea; then type changes or /help.

    Model and render options are those of `zit generate`; they are stored with a new session and
    used again on its later turns (options given later override them for that turn).
    """
    from rich.console import Console

    from zit_agent.agent.session import Session, open_checkpointer
    from zit_agent.errors import UserError
    from zit_agent.settings import load_settings

    if not session.strip() or "/" in session:
        raise UserError(f"bad session name {session!r}", hint="use letters, digits, - or _")
    settings = load_settings(image_model=image_model)
    console = Console(stderr=True)
    render_flags = {
        "count": count, "seed": seed, "size": size, "steps": steps, "guidance": guidance,
        "negative": negative, "layer": layer, "sampler": sampler, "shift": shift, "lora": lora,
        "noise": noise, "noise_fraction": noise_fraction, "noise_steps": noise_steps,
        "noise_seed": noise_seed, "text_encoder": text_encoder, "vae": vae,
        "transformer": transformer, "device": device, "dtype": dtype, "cpu_offload": cpu_offload,
        "attention": attention, "compile": compile, "batch": batch,
    }  # fmt: skip
    flags = {
        "writer": writer, "backend": backend_kind, "tokenizer": tokenizer, "embedder": embedder,
        "image_model": image_model, "shape": shape, "ruts": ruts, "max_attempts": max_attempts,
        "ladder": ladder, "temperature": temperature, "max_new_tokens": max_new_tokens, "out": out,
        "render": {k: v for k, v in render_flags.items() if _given(ctx, k)},
    }  # fmt: skip
    with open_checkpointer(settings.sessions_db) as saver:
        thread = Session(saver, f"chat:{session}")
        runner = _ChatRunner(thread, session, settings, flags, console, quiet=as_json)
        if show:
            runner.show(as_json)
        elif message is not None:
            runner.one_turn(message, as_json)
        else:
            runner.interactive()


# Settings that belong to the session once it runs: changed with a command, not an option.
SESSION_SETTINGS = {
    "size": "/size WxH", "layer": "/layer N", "lora": "/lora PATH:S", "seed": "/seed N",
    "count": "a new session", "noise": "a new session", "noise_seed": "a new session",
}  # fmt: skip


def _check_later_flags(given: dict[str, Any]) -> None:
    from zit_agent.errors import UserError

    for name in given:
        if name in SESSION_SETTINGS:
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{flag} is set when a session starts",
                hint=f"change it with {SESSION_SETTINGS[name]}",
            )


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was set on the command line (or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


class _ChatRunner:
    """Runs turns of one session; parts are loaded once, on the first turn that renders."""

    def __init__(self, thread: Session, name: str, settings, flags, console: Console, quiet: bool):
        self.thread, self.name, self.settings = thread, name, settings
        self.flags, self.console, self.quiet = flags, console, quiet
        self._context = None

    # -- turns -----------------------------------------------------------------------------------
    def one_turn(self, message: str, as_json: bool) -> None:
        from zit_agent.agent.cli.common import print_json

        state = self.turn(message)
        if as_json:
            print_json(turn_json(state, self.name))
        elif state is not None:
            self.print_turn(state)

    def interactive(self) -> None:
        from zit_agent.errors import UserError

        current = self.thread.state()
        self.console.print(
            f"session [bold]{self.name}[/]: "
            + (
                "type an idea to start"
                if current is None
                else f"{len(current.turns)} turn(s); /help"
            )
        )
        while True:
            try:
                text = self.console.input("[bold cyan]you>[/] ")
            except EOFError:
                break
            if text.strip().lower() in ("/quit", "/exit"):
                break
            try:
                state = self.turn(text)
            except UserError as err:  # the session is untouched: say why and go on
                self.console.print(f"[red]error[/]: {err.one_line()}")
                continue
            if state is not None:
                self.print_turn(state)

    def turn(self, text: str) -> AgentState | None:
        """One input: a local command prints, anything else runs the graph to its next pause."""
        from zit_agent.errors import UserError

        status = self.thread.status()
        if status == "interrupted":
            self.console.print("[yellow]resuming the run that was interrupted[/]")
            self.thread.resume(self.context())
            status = self.thread.status()
        if status == "new":
            if text.strip().startswith("/"):
                raise UserError("a new session starts with an idea", hint="type what to picture")
            return self.start(text)
        command = parse_command(text)
        if command["kind"] in LOCAL_COMMANDS:
            self.local(command["kind"])
            return None
        current = self.thread.state()
        if command["kind"] == "undo" and len(current.turns) <= 1:
            raise UserError("nothing to undo", hint="this is the session's first turn")
        state = self.thread.send(command, self.context())
        if state.error:
            raise UserError(state.error, hint="the session is unchanged; try again")
        return state

    def start(self, idea: str) -> AgentState:
        from zit_agent.agent.cli.agent_options import parse_ladder, resolve_shape
        from zit_agent.agent.state import AgentState, ChatTurn, RenderKnobs
        from zit_agent.errors import UserError

        if not idea.strip():
            raise UserError("the idea is empty", hint="give an idea with some words in it")
        context = self.context()
        choice = self._choice
        options = choice.options
        initial = AgentState(
            idea=idea.strip(),
            shape=resolve_shape(self.flags["shape"], context.writer is not None),
            n=self._render_flags.get("count", 1),
            seed=choice.seeds[0],
            max_attempts=self.flags["max_attempts"],
            ruts=self.flags["ruts"],
            chat=True,
            ladder=parse_ladder(self.flags["ladder"]),
            max_tokens=self.settings.render.max_tokens,
            run_id=self.name,
            knobs=RenderKnobs(
                width=options.width,
                height=options.height,
                layer=options.layer,
                lora=options.lora,
                lora_strength=options.lora_strength,
            ),
            turns=[ChatTurn(message=idea.strip())],
            parts={
                **self._spec.to_dict(),
                "image_model": self.settings.image_model,
                "render": self._render_flags,
            },
        )
        state = self.thread.start(initial, context)
        if state.error:
            raise UserError(
                state.error, hint="the session waits: change the setting with /help's commands"
            )
        return state

    # -- parts -----------------------------------------------------------------------------------
    def context(self):
        """The parts (loaded on first use); a session's stored parts fill in missing flags."""
        if self._context is None:
            from zit_agent.agent.cli.agent_options import build_context, parts_spec, writer_sampling
            from zit_agent.agent.cli.render_flags import render_choice

            current = self.thread.state()
            stored = current.parts if current is not None else {}
            ruts = current.ruts if current is not None else self.flags["ruts"]
            f = self.flags
            image_model = f["image_model"] or stored.get("image_model")
            if image_model:
                self.settings = self.settings.model_copy(update={"image_model": image_model})
            self._spec = parts_spec(
                self.settings,
                writer=f["writer"] if f["writer"] is not None else stored.get("writer") or "none",
                backend=f["backend"] or stored.get("backend"),
                tokenizer=f["tokenizer"] or stored.get("tokenizer"),
                embedder=f["embedder"] or stored.get("embedder"),
            )
            if current is not None:
                _check_later_flags(f["render"])
            # Render flags given at the start stay with the session; flags given now win.
            self._render_flags = {**stored.get("render", {}), **f["render"]}
            self._choice = render_choice(self.settings, **self._render_flags)
            out = f["out"] or self.settings.outputs_dir / f"chat-{self.name}"
            self._context = build_context(
                self.settings, self._spec, self._choice, out_dir=Path(out), ruts=ruts,
                sampling=writer_sampling(f["temperature"], f["max_new_tokens"]),
                console=self.console, quiet=self.quiet,
            )  # fmt: skip
        return self._context

    # -- output ----------------------------------------------------------------------------------
    def local(self, kind: str) -> None:
        state = self.thread.state()
        if kind == "help":
            self.console.print(HELP, highlight=False)
        elif kind == "show":
            for shot in state.shots:
                self.console.print(shot.sequence_text, highlight=False, markup=False)
        elif kind == "tokens":
            for shot in state.shots:
                self.console.print(
                    f"{len(shot.sequence_ids)} tokens: {shot.sequence_ids}", highlight=False
                )
        elif kind == "history":
            self.show(as_json=False)

    def print_turn(self, state: AgentState) -> None:
        turn = state.turns[-1]
        for shot in turn.shots:
            self.console.print(
                f"[bold]description[/]: {shot.description.full_text}", highlight=False
            )
        for path in _turn_images(state, turn):
            print(path)
        if turn.verdict:
            self.console.print(f"rut check: {turn.verdict}")

    def show(self, as_json: bool) -> None:
        from zit_agent.agent.cli.common import print_json
        from zit_agent.errors import UserError

        state = self.thread.state()
        if state is None:
            raise UserError(f"no session named {self.name!r}", hint="start one with --message IDEA")
        data = show_json(state, self.name)
        if as_json:
            print_json(data)
            return
        for i, turn in enumerate(data["turns"], 1):
            self.console.print(f"[bold]{i}. {turn['message']}[/]", highlight=False)
            for shot in turn["shots"]:
                self.console.print(f"   {shot['description']}", highlight=False, markup=False)
            for path in turn["images"]:
                self.console.print(f"   {path}", highlight=False)


def turn_json(state: AgentState | None, name: str) -> dict[str, Any]:
    if state is None:
        return {"session": name, "turn": None}
    turn = state.turns[-1]
    return {
        "session": name,
        "turn": len(state.turns),
        "message": turn.message,
        "description": [shot.description.full_text for shot in turn.shots],
        "images": _turn_images(state, turn),
        "verdict": turn.verdict,
    }


def _turn_images(state: AgentState, turn) -> list[str]:
    if not turn.attempts:
        return []
    return state.attempts[turn.attempts[-1]].images


def show_json(state: AgentState, name: str) -> dict[str, Any]:
    return {
        "session": name,
        "idea": state.idea,
        "turns": [
            {
                "message": turn.message,
                "shots": [
                    {
                        "description": shot.description.full_text,
                        "sequence_text": shot.sequence_text,
                        "token_ids": shot.sequence_ids,
                        "seeds": shot.seeds,
                    }
                    for shot in turn.shots
                ],
                "images": _turn_images(state, turn),
                "all_images": [p for i in turn.attempts for p in state.attempts[i].images],
                "verdict": turn.verdict,
                "settings": turn.knobs.model_dump(),
            }
            for turn in state.turns
        ],
    }
