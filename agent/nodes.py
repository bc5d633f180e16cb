"""The graph's nodes: plain functions of (state, runtime) that return only what changed.

Run dependencies (writer, image backend, embedder, history store, tokenizer) come from
`runtime.context` (an `AgentContext`); the state holds data only. Every node reports what it does
through `AgentContext.on_event`, which the CLI turns into rich output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.agent import commands, escape
from zit_agent.agent import levers as registry
from zit_agent.agent.state import (
    AgentState,
    Attempt,
    ChatTurn,
    Description,
    Lever,
    Scores,
    Shot,
    Splice,
    replace_last,
)
from zit_agent.defaults import AGENT

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.levers import Applied
    from zit_agent.agent.run import Runner
    from zit_agent.backends.analyzers import Analyzer
    from zit_agent.backends.base import Embedder, ImageBackend, RenderOptions, Sampling, Writer
    from zit_agent.backends.tokenizer import QwenTokenizer

Event = Callable[[str, dict[str, Any]], None]
# The layout axes a ControlNet's control map fixes: the judge does not ask the ladder to vary them.
CONTROLLED_AXES = ("shot_size", "camera_angle", "framing", "pose", "count", "lens")


def _ignore(kind: str, data: dict[str, Any]) -> None:
    pass


@dataclass
class AgentContext:
    """What a run needs besides its state: the runner (its loaded parts render, write and
    judge), where outputs go, how to report."""

    runner: Runner
    out_dir: Path
    base_options: RenderOptions
    sampling: Sampling | None = None
    store: HistoryStore | None = None  # needed when ruts are checked
    retokenize: bool = False  # allow a writer of another vocabulary (its text re-tokenized)
    record: dict[str, Any] = field(default_factory=dict)  # the caller's, in every image's record
    on_event: Event = field(default=_ignore)

    # The runner's parts, by name (a test may swap the embedder or the analyzer).
    @property
    def tokenizer(self) -> QwenTokenizer:
        return self.runner.parts.tokenizer

    @property
    def backend(self) -> ImageBackend:
        return self.runner.parts.backend

    @property
    def writer(self) -> Writer | None:
        return self.runner.parts.writer

    @property
    def embedder(self) -> Embedder | None:
        return self.runner.parts.embedder

    @property
    def analyzer(self) -> Analyzer | None:  # faces: the identity, shot and angle rut kinds
        return self.runner.parts.analyzer

    @analyzer.setter
    def analyzer(self, analyzer: Analyzer | None) -> None:
        self.runner.parts.analyzer = analyzer

    @property
    def analyzer_note(self) -> str | None:  # why there is none (the kinds read unmeasured)
        return self.runner.parts.analyzer_note

    @analyzer_note.setter
    def analyzer_note(self, note: str | None) -> None:
        self.runner.parts.analyzer_note = note


def _ctx(runtime: Runtime[AgentContext]) -> AgentContext:
    return runtime.context


# -- write ---------------------------------------------------------------------------------------
def write(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The first description (expand), or, for chat text, each current description refined
    with the person's words (so a varied set stays varied)."""
    ctx = _ctx(runtime)
    if isinstance(state.command, commands.Text):
        shots = [
            shot.model_copy(
                update={
                    "description": refine_description(ctx, state, shot, state.command.text, i),
                    "sequence_ids": [],
                    "images": [],
                    "image_hashes": [],
                }
            )
            for i, shot in enumerate(state.shots)
        ]
    elif state.expansions:  # a wildcard template: one shot per seed, with that seed's idea
        shots = [
            Shot(
                description=expand_description(ctx, state, idea=text, seed=state.seed + i),
                seeds=[state.seed + i],
                idea=text,
                idea_seed=state.seed + i,
            )  # fmt: skip
            for i, text in enumerate(state.expansions)
        ]
    else:
        description = expand_description(ctx, state)
        shots = [Shot(description=description, seeds=[state.seed + i for i in range(state.n)])]
    for shot in shots:
        desc = shot.description
        ctx.on_event("write", {"description": desc.full_text, "writer": desc.writer})
    return {"shots": shots, "pending_levers": [], "ladder_step": 0, "error": None}


def expand_description(
    ctx: AgentContext, state: AgentState, *, idea: str | None = None, seed: int | None = None
) -> Description:
    """The writer's `expand` of the idea (or of `idea`, a wildcard expansion); without a writer
    the idea as it is."""
    if ctx.writer is None:
        return Description(text=idea or state.idea)
    return call_writer(ctx, state, "expand", seed=state.seed if seed is None else seed, idea=idea)


def refine_description(
    ctx: AgentContext, state: AgentState, shot: Shot, feedback: str, index: int
) -> Description:
    """The writer's `refine` of one description; without a writer the person's words are added
    to it as they are."""
    previous = shot.description.full_text
    if ctx.writer is None:
        return Description(text=f"{previous.rstrip(' .')}. {feedback.strip()}")
    seed = state.seed + 100 * len(state.turns) + index
    return call_writer(
        ctx, state, "refine", seed=seed, previous=[previous], feedback=feedback, idea=shot.idea
    )


def call_writer(
    ctx: AgentContext,
    state: AgentState,
    instruction: str,
    *,
    seed: int,
    idea: str | None = None,
    **material: Any,
) -> Description:
    """One writer call with a `prompts/` instruction, through the writers' drafting steps
    (vocabulary check, retries on retryable draft problems); the draft's ids are kept verbatim.
    `idea`: a wildcard expansion to write from instead of the run's idea."""
    from zit_agent import prompts
    from zit_agent.agent.drafting import (
        check_vocabulary,
        draft_provenance,
        for_encoder,
        write_draft,
    )
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers.messages import build_messages

    mismatch = check_vocabulary(ctx.writer, ctx.tokenizer, retokenize=ctx.retokenize)
    sampling = ctx.sampling or Sampling()
    if state.temperature is not None:
        sampling = sampling.model_copy(update={"temperature": state.temperature})
    chosen = prompts.load(instruction)
    messages = build_messages(chosen.text, idea or state.idea, **material)
    draft, used_seed = write_draft(ctx.writer, messages, sampling, seed)
    draft = for_encoder(draft, ctx.tokenizer, mismatch)
    return Description(
        text=draft.answer.text,
        ids=list(draft.answer.ids),
        think=draft.think.text,
        think_ids=list(draft.think.ids) or None,
        writer=draft.model,
        sampling=sampling.model_dump(),
        writer_record=draft_provenance(
            ctx.writer, chosen, sampling, seed, used_seed, state.shape, draft, mismatch
        ),
    )


# -- assemble ------------------------------------------------------------------------------------
def assemble(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The exact token ids of each shot's chat sequence (writer ids verbatim, budget kept)."""
    from zit_agent.sequence import ChatSequence, Segment
    from zit_agent.sequence import assemble as assemble_ids

    ctx = _ctx(runtime)
    shots = []
    for shot in state.shots:
        desc = shot.description
        answer = Segment(text=desc.full_text, ids=escape.content_ids(desc, ctx.tokenizer))
        think = Segment(text=desc.think, ids=desc.think_ids) if desc.think_ids else None
        seq = ChatSequence.of_shape(
            state.shape, shot.idea or state.idea, think=think, answer=answer
        )
        result = assemble_ids(seq, ctx.tokenizer, max_tokens=state.max_tokens)
        shots.append(
            shot.model_copy(
                update={"sequence_ids": result.ids, "sequence_text": result.text, "images": []}
            )
        )
    counts = [len(s.sequence_ids) for s in shots]
    ctx.on_event("assemble", {"shape": state.shape, "tokens": counts})
    return {"shots": shots}


# -- render --------------------------------------------------------------------------------------
def render(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Render every shot; save each image with its provenance; record it in the history store.
    A failure propagates (a chat session records it as a failed turn: `failed_turn`)."""
    ctx = _ctx(runtime)
    options = render_options(ctx, state)
    number = len(state.attempts) + 1
    ctx.on_event("render", {"attempt": number, "images": sum(len(s.seeds) for s in state.shots)})
    shots = [
        _render_shot(ctx, state, shot, options, number, i) for i, shot in enumerate(state.shots)
    ]
    attempt = Attempt(number=number, shots=shots, knobs=state.knobs, levers=state.pending_levers)
    ctx.on_event("rendered", {"attempt": number, "images": attempt.images})
    return {
        "attempts": [attempt],
        "shots": shots,
        "pending_levers": [],
        "error": None,
    }


def render_options(ctx: AgentContext, state: AgentState) -> RenderOptions:
    """The base options (flags and settings) with the knobs the agent or the person changed."""
    from zit_agent.agent.diversity import step_lever_options
    from zit_agent.backends.base import NoiseSettings

    knobs = state.knobs
    noise = None
    if knobs.noise > 0:  # the noise lever keeps the base fraction and step share
        base = ctx.base_options.noise or NoiseSettings()
        noise = base.model_copy(update={"strength": knobs.noise, "seed": knobs.noise_seed})
    return ctx.base_options.model_copy(
        update={
            "width": knobs.width,
            "height": knobs.height,
            "layer": knobs.layer,
            "noise": noise,
            "lora": knobs.lora,
            "lora_strength": knobs.lora_strength,
            "control_image": knobs.control,
            "init_image": knobs.init,
            "strength": knobs.strength,
            "mask_image": knobs.mask if knobs.init else None,
            **step_lever_options(ctx.base_options, knobs, ctx.tokenizer, state.max_tokens),
        }
    )


def _render_shot(
    ctx: AgentContext,
    state: AgentState,
    shot: Shot,
    options: RenderOptions,
    number: int,
    index: int,
) -> Shot:
    from zit_agent.backends.provenance import ImageRecord, save_image, token_sha256

    candidates = None
    if state.knobs.candidates:  # previewed, the most different finished (`agent.diversity`)
        from zit_agent.agent.diversity import render_candidate_shot

        rendered, candidates = render_candidate_shot(ctx, state, shot, options)
        steps_spent = candidates["steps"]
    else:
        rendered = ctx.runner.render(shot.sequence_ids, shot.seeds, options)
        steps_spent = len(rendered) * options.steps
    wildcards = None
    if shot.idea is not None:  # the template and this image's expansion of it
        wildcards = {"template": state.idea, "expansion": shot.idea, "seed": shot.idea_seed}
    paths, hashes = [], []
    for image in rendered:
        record = ImageRecord.of(
            image.record,
            image.seed,
            render=options.model_dump(exclude={"negative_ids"}),
            idea=shot.idea or state.idea,
            writer=_writer_record(shot.description),
            agent={
                "run": state.run_id,
                "attempt": number,
                "shot": index,
                "shape": state.shape,
                "agent_stated": shot.description.agent_stated,
                "stated_axes": shot.description.stated_axes,
            },
            **({"wildcards": wildcards} if wildcards else {}),
            **ctx.record,
        )
        path = save_image(
            image.image, record, ctx.out_dir, f"{state.run_id}-a{number}-{index}-s{image.seed}"
        )
        paths.append(str(path))
        if ctx.store is not None:
            row = ctx.store.add_image(
                path,
                idea=state.idea,
                sequence_hash=token_sha256(shot.sequence_ids),
                seed=image.seed,
                settings=options.model_dump(exclude={"negative_ids"}),
                session=state.run_id,
            )
            hashes.append(row.content_hash)
    return shot.model_copy(
        update={
            "images": paths, "image_hashes": hashes, "seeds": [r.seed for r in rendered],
            "steps_spent": steps_spent, "candidates": candidates,
        }
    )  # fmt: skip


def _writer_record(desc: Description) -> dict[str, Any] | None:
    """The same writer record `zit expand` and the eval strategies keep (instruction and its
    version, seeds asked and used, notes), plus the phrase the agent appended."""
    if desc.writer is None:
        return None
    return {
        **(desc.writer_record or {"writer": desc.writer, "sampling": desc.sampling}),
        "model": desc.writer,
        "agent_phrase": desc.agent_phrase or None,
    }


# -- embed and judge -----------------------------------------------------------------------------
def embed(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Embed the new images; the history store keeps each vector (computed once per image)."""
    ctx = _ctx(runtime)
    _attempt_vectors(ctx, state.attempts[-1])
    ctx.on_event("embed", {"images": len(state.attempts[-1].images), "embedder": ctx.embedder.name})
    return {}


def _attempt_vectors(ctx: AgentContext, attempt: Attempt):
    from PIL import Image

    by_hash = {
        h: p for shot in attempt.shots for h, p in zip(shot.image_hashes, shot.images, strict=True)
    }
    hashes = [h for shot in attempt.shots for h in shot.image_hashes]
    return ctx.store.vectors(hashes, ctx.embedder, lambda h: Image.open(by_hash[h]).convert("RGB"))


def judge(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The rut detector over this attempt's images (with one image: over this idea's recent
    images) and the wider history of other ideas; the levers applied get their effect."""
    ctx = _ctx(runtime)
    attempt = state.attempts[-1]
    report = _report(ctx, state, attempt)
    if report.verdict != "ok":
        ctx.store.add_rut_event(report, idea=state.idea, session=state.run_id)
    axes, reason = report.axes_to_vary, report.reason
    if state.knobs.control:  # a control map fixes the composition on purpose
        axes = [axis for axis in axes if axis not in CONTROLLED_AXES]
        reason += "; a control map fixes the composition: its layout axes are not varied"
    scores = Scores(
        verdict=report.verdict,
        reason=reason,
        mean_similarity=report.mean_similarity or 0.0,
        max_similarity=report.max_similarity or 0.0,
        vendi=report.vendi,
        near_duplicate_rate=report.near_duplicate_rate,
        count=report.count,
        axes=axes,
        wider_max_similarity=report.wider.max_similarity if report.wider else None,
        embedder=report.embedder,
        thresholds=report.thresholds.model_dump(),
        kinds={kind: found.model_dump() for kind, found in report.kinds.items()},
    )
    previous = state.attempts[-2].scores if len(state.attempts) > 1 else None
    attempt = attempt.model_copy(
        update={"scores": scores, "levers": escape.record_effects(attempt.levers, previous, scores)}
    )
    ctx.on_event("judge", {"attempt": attempt.number, **scores.model_dump()})
    return {"attempts": replace_last(state.attempts, attempt)}


def _report(ctx: AgentContext, state: AgentState, attempt: Attempt):
    from zit_agent.agent import ruts

    thresholds = ruts.thresholds_for(ctx.embedder.family)
    name = ctx.embedder.name
    texts = [shot.description.full_text for shot in attempt.shots for _ in shot.images]
    vectors, labels = _attempt_vectors(ctx, attempt), attempt.images
    hashes = [h for shot in attempt.shots for h in shot.image_hashes]
    if len(labels) < 2:  # one image: judge it with this idea's recent images
        vectors, rows = ctx.store.recent_vectors(name, limit=AGENT.window, idea=state.idea)
        labels, texts = [r.path for r in rows], None
        hashes = [r.content_hash for r in rows]
    wider, wider_rows = ctx.store.recent_vectors(
        name, limit=AGENT.wider_window, other_than_idea=state.idea
    )
    vectors, labels, texts, hashes = _with_init_image(ctx, state, vectors, labels, texts, hashes)
    report = ruts.judge(
        vectors,
        embedder=name,
        thresholds=thresholds,
        window=max(2, len(labels)),
        labels=labels,
        texts=texts,
        wider=wider if len(wider_rows) else None,
        wider_labels=[r.path for r in wider_rows],
    )
    return _with_kinds(ctx, report, hashes, labels, wider_rows)


def _with_kinds(ctx: AgentContext, report, hashes: list[str], labels: list[str], wider_rows):
    """The report with its measured kinds (identity, shot, angle) from the analyzer's
    observations of the window (analysed now when new) and of the wider window's images that
    were analysed before (none is analysed for it: a check costs the window, never the history)."""
    from PIL import Image

    from zit_agent.agent import ruts

    if ctx.analyzer is None:
        if ctx.analyzer_note is None:
            return report
        return ruts.with_kinds(report, ruts.unmeasured_kinds(ctx.analyzer_note, report.count))
    paths = dict(zip(hashes, labels, strict=True))

    def load(content_hash: str):
        with Image.open(paths[content_hash]) as image:
            return image.convert("RGB")

    window = hashes[-report.count :]
    observations = ctx.store.observations(window, ctx.analyzer, load)
    known = ctx.store.stored_observations([r.content_hash for r in wider_rows], ctx.analyzer.name)
    wider_rows = [r for r in wider_rows if r.content_hash in known]
    kinds = ruts.judge_kinds(
        observations,
        labels[-report.count :],
        wider=[known[r.content_hash] for r in wider_rows],
        wider_labels=[r.path for r in wider_rows],
    )
    return ruts.with_kinds(report, kinds)


def _with_init_image(ctx: AgentContext, state: AgentState, vectors, labels, texts, hashes):
    """An image-to-image render's window counts its init image first (in the layout and the
    measured kinds): variations that are all copies of the init read as a rut."""
    import numpy as np
    from PIL import Image

    from zit_agent.agent.history import file_hash

    init = state.knobs.init
    if not init or not Path(init).is_file():
        return vectors, labels, texts, hashes
    with Image.open(init) as img:
        vector = ctx.embedder.embed([img.convert("RGB")])
    vector, vectors = np.asarray(vector), np.asarray(vectors)
    vectors = np.concatenate([vector, vectors], axis=0) if vectors.size else vector
    text = state.shots[0].description.full_text if state.shots else state.idea
    return vectors, [init, *labels], [text, *texts] if texts else None, [file_hash(init), *hashes]


def should_escape(state: AgentState) -> bool:
    last = state.last_attempt
    return (
        state.ruts
        and last is not None
        and last.scores is not None
        and last.scores.verdict != "ok"
        and len(state.run_attempts) < state.max_attempts
    )


# -- escape --------------------------------------------------------------------------------------
def escape_step(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The next step of the escape ladder (or, in chat, the `/vary` or `/shorter` the person
    asked for)."""
    ctx = _ctx(runtime)
    forced = state.command.lever if isinstance(state.command, commands.Escape) else None
    last = state.last_attempt
    kind = None
    if forced is not None:
        lever_name = forced
    else:  # a measured kind's first lever (out of ladder order), else the ladder's next step
        used = {lever.name for attempt in state.run_attempts for lever in attempt.levers}
        kinds = last.scores.kinds if last and last.scores else {}
        lever_name, kind = escape.choose_lever(state.ladder, state.ladder_step, kinds, used)
    update: dict[str, Any] = {"ladder_step": state.ladder_step + (forced is None and kind is None)}
    number = len(state.attempts) + 1
    changed, levers = registry.apply(lever_name, ctx, state, number)
    if kind is not None and levers:
        first = levers[0]
        levers = [
            first.model_copy(update={"detail": f"{first.detail} (first for the {kind} rut)"}),
            *levers[1:],
        ]
    update.update(changed)
    update["pending_levers"] = [*levers, *update.get("pending_levers", [])]
    update["command"] = None
    for lever in update["pending_levers"]:
        ctx.on_event("escape", {"attempt": number, "lever": lever.name, "detail": lever.detail})
    return update


# The built-in levers (registered in `agent/levers.py`): each returns (state changes, levers applied).
def vary_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    levers: list[Lever] = []
    last = state.last_attempt
    report_axes = last.scores.axes if last and last.scores else []
    # The axes the idea states stay; so do those a wildcard's values state (the wildcard already
    # varies them and did not help): the lever varies a wildcard-free axis.
    core = " ".join(
        [
            state.idea,
            *state.expansions,
            *(t.message for t in state.turns[1:] if t.message[:1] != "/"),
        ]
    )
    plan = escape.kind_plan(last.scores.kinds if last and last.scores else {}, core)
    if state.knobs.control:  # a control map fixes the composition on purpose
        plan = plan._replace(axes=[a for a in plan.axes if a not in CONTROLLED_AXES])
    writer = _vary_writer(ctx, state, plan.feedback) if ctx.writer is not None else None
    shots, lever = escape.vary(
        state.idea,
        state.shots,
        report_axes,
        novelty_memory(ctx, state),
        state.n,
        seed=state.seed + 100 * number,
        write=writer,
        tok=ctx.tokenizer,
        avoid=state.avoid,
        core=core,
        plan=plan,
    )
    levers.append(lever)
    update: dict[str, Any] = {"shots": shots}
    previous = [s.description for a in state.attempts[-2:] for s in a.shots]
    temperature = state.temperature or (
        ctx.sampling.temperature if ctx.sampling else AGENT.temperature
    )
    found = escape.writer_rut(
        [s.description for s in shots], previous, temperature, state.idea, ctx.tokenizer
    )
    if found is not None:
        update.update(
            temperature=found.temperature,
            avoid=list(dict.fromkeys([*state.avoid, *found.avoid])),
        )
        detail = (
            f"the writer repeats itself (token overlap {found.overlap} >= {found.threshold}): "
            f"temperature {temperature} -> {found.temperature}, avoid {found.avoid or 'nothing new'}"
        )
        effect = "applies to the writer's next calls"
        levers.append(Lever(name="writer", detail=detail, values=found.model_dump(), effect=effect))
    return update, levers


def shorter_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    shots, lever = escape.shorter(state.shots, ctx.tokenizer)
    return {"shots": shots}, [lever]


def noise_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    knobs, lever = escape.noise(state.knobs, number)
    return {"knobs": knobs}, [lever]


def layer_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    knobs, lever = escape.layer(state.knobs)
    return {"knobs": knobs}, [lever]


def seeds_lever(ctx: AgentContext, state: AgentState, number: int) -> Applied:
    shots, lever = escape.new_seeds(state.shots, number)
    return {"shots": shots}, [lever]


def novelty_memory(ctx: AgentContext, state: AgentState) -> dict[str, list[str]]:
    """Axis values stated in the last images of this idea, oldest first: from the history store
    (so across runs and sessions) when there is one, else from this run."""
    if ctx.store is None:
        return state.novelty_memory(AGENT.window)
    memory: dict[str, list[str]] = {}
    for row in ctx.store.images(idea=state.idea, limit=AGENT.window):
        for axis, value in _stated_axes_of(row.path).items():
            memory.setdefault(axis, []).append(value)
    return memory


def _stated_axes_of(image_path: str) -> dict[str, str]:
    """The stated axis values in an image's provenance (the JSON beside it); {} when unknown."""
    import json

    beside = Path(image_path).with_suffix(".json")
    try:
        record = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return (record.get("agent") or {}).get("stated_axes") or {}


def _vary_writer(
    ctx: AgentContext, state: AgentState, feedback: str | None = None
) -> escape.VaryWriter:
    """The writer's `vary`; `feedback` (a measured identity rut) asks for a different person."""

    def write(idea, change_axes, previous, avoid, seed) -> Description:
        wanted = {axis.replace("_", " "): value for axis, value in change_axes.items()}
        extra = {"feedback": feedback} if feedback else {}
        return call_writer(
            ctx, state, "vary", seed=seed, previous=previous, change_axes=wanted, avoid=avoid,
            idea=idea if idea != state.idea else None, **extra,
        )  # fmt: skip

    return write


# -- finish --------------------------------------------------------------------------------------
def finish(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The outcome: the last attempt when it is ok (or ruts are off), else the most varied one."""
    ctx = _ctx(runtime)
    update: dict[str, Any] = {"command": None}
    if state.attempts:
        update.update(_outcome(state))
    if state.chat:
        update["turns"] = _close_turn(state, update)
    ctx.on_event("finish", {"message": update.get("message", ""), "error": state.error})
    return update


def _outcome(state: AgentState) -> dict[str, Any]:
    """This run's result (in chat: this turn's attempts)."""
    attempts, start = state.run_attempts, state.run_start
    last = attempts[-1] if attempts else state.attempts[-1]
    verdict = last.scores.verdict if last.scores else None
    if verdict in (None, "ok") or not state.ruts or not attempts:
        message = "rendered once (rut checks off)" if verdict is None else "verdict ok"
        if verdict == "ok" and len(attempts) > 1:
            message = f"escaped the rut in attempt {last.number}"
        return {
            "final_verdict": verdict,
            "final_attempt": len(state.attempts) - 1,
            "exhausted": False,
            "message": message,
        }
    best = start + escape.most_varied(attempts)
    chosen = state.attempts[best]
    message = (
        f"attempts ran out ({len(attempts)} of {state.max_attempts}) with verdict "
        f"{verdict}: returning attempt {chosen.number}, the most varied set "
        f"(vendi {chosen.scores.vendi:.2f}, mean similarity {chosen.scores.mean_similarity:.3f})"
    )
    return {
        "final_verdict": chosen.scores.verdict,
        "final_attempt": best,
        "exhausted": True,
        "message": message,
    }


def _close_turn(state: AgentState, update: dict[str, Any]) -> Splice:
    """Record what this turn left (a turn that failed is closed by `failed_turn` instead)."""
    turn = state.turns[-1] if state.turns else ChatTurn(message=state.idea)
    closed = turn.model_copy(
        update={
            "attempts": list(range(turn.first_attempt, len(state.attempts))),
            "shots": state.shots,
            "knobs": state.knobs,
            "seed": state.seed,
            "verdict": update.get("final_verdict"),
            "error": state.error,
        }
    )
    return replace_last(state.turns, closed)


def failed_turn(state: AgentState, error: str) -> dict[str, Any]:
    """The state after a chat turn that failed: the turn stays in the list, marked failed, with
    the previous turn's description, seeds and settings, which become current again."""
    previous = state.turns[-2]
    failed = state.turns[-1].model_copy(
        update={"attempts": [], "shots": previous.shots, "knobs": previous.knobs,
                "seed": previous.seed, "verdict": None, "error": error}
    )  # fmt: skip
    return {
        "turns": replace_last(state.turns, failed), "shots": previous.shots,
        "knobs": previous.knobs, "seed": previous.seed, "command": None, "pending_levers": [],
        "error": None,
    }  # fmt: skip


# -- chat ----------------------------------------------------------------------------------------
def await_user(state: AgentState) -> dict[str, Any]:
    """Pause for the person (LangGraph `interrupt`); resumed with a parsed chat command."""
    from langgraph.types import interrupt

    last = state.attempts[-1].images if state.attempts else []
    resumed = interrupt({"turns": len(state.turns), "images": last, "error": state.error})
    command = commands.as_command(resumed) if isinstance(resumed, dict) else resumed
    update: dict[str, Any] = {"command": command, "error": None}
    if not isinstance(command, commands.Undo):
        turn = ChatTurn(
            message=command.raw,
            first_attempt=len(state.attempts),
            knobs=state.knobs,
            seed=state.seed,
        )
        update["turns"] = [turn]
    return update


def apply_setting(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """`/seed`, `/size`, `/layer`, `/lora`, `/control`: change one render setting; the same shots
    render again."""
    command = state.command
    knobs = state.knobs
    update: dict[str, Any] = {"command": None}
    if isinstance(command, commands.Seed):
        update["seed"] = command.seed
        update["shots"] = reseed(state.shots, command.seed)
    elif isinstance(command, commands.Size):
        update["knobs"] = knobs.model_copy(
            update={"width": command.width, "height": command.height}
        )
    elif isinstance(command, commands.Layer):
        update["knobs"] = knobs.model_copy(update={"layer": command.layer})
    elif isinstance(command, commands.Lora):
        update["knobs"] = knobs.model_copy(
            update={"lora": command.path, "lora_strength": command.strength, "lora_gate": None}
        )
    elif isinstance(command, commands.Control):
        update["knobs"] = knobs.model_copy(update={"control": command.path})
    elif isinstance(command, commands.VaryImage):  # picks the image, renders the same shots
        images = state.latest_images()  # from it, new seeds
        path = images[command.index - 1] if command.index else (knobs.init or images[0])
        update["knobs"] = knobs.model_copy(
            update={"init": path, "strength": command.strength, "mask": None}
        )
        base = max((s for shot in state.shots for s in shot.seeds), default=state.seed) + 1
        update["seed"] = base
        update["shots"] = reseed(state.shots, base)
    _ctx(runtime).on_event("setting", {"command": command.raw or command.kind})
    return update


def pick(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """`/pick N [S]`: image N of the last images becomes the start of the next turns (a text
    turn then changes it by image-to-image at strength S); `/unpick`: back to rendering from
    noise. Nothing renders; the turn records the new settings, so `/undo` takes it back."""
    command = state.command
    if command.index is None:
        knobs = state.knobs.model_copy(update={"init": None, "mask": None})
    else:
        path = state.latest_images()[command.index - 1]
        strength = command.strength or state.knobs.strength
        knobs = state.knobs.model_copy(update={"init": path, "strength": strength, "mask": None})
    turn = state.turns[-1].model_copy(
        update={"attempts": [], "shots": state.shots, "knobs": knobs, "seed": state.seed}
    )
    _ctx(runtime).on_event("pick", {"image": knobs.init, "strength": knobs.strength})
    return {
        "knobs": knobs, "turns": replace_last(state.turns, turn), "command": None, "error": None,
    }  # fmt: skip


def reseed(shots: list[Shot], base: int) -> list[Shot]:
    """Consecutive seeds from `base` across all shots, in order."""
    new, next_seed = [], base
    for shot in shots:
        count = max(1, len(shot.seeds))
        new.append(shot.model_copy(update={"seeds": list(range(next_seed, next_seed + count))}))
        next_seed += count
    return new


def undo(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Back one turn: the previous turn's description, seeds and settings (images stay on disk)."""
    if len(state.turns) <= 1:
        return {"command": None, "error": "nothing to undo: this is the session's first turn"}
    previous = state.turns[-2]
    _ctx(runtime).on_event("undo", {"turns": len(state.turns) - 1})
    return {
        "turns": Splice(start=len(state.turns) - 1),  # the last turn goes
        "shots": previous.shots,
        "knobs": previous.knobs,
        "seed": previous.seed,
        "command": None,
        "error": None,
    }
