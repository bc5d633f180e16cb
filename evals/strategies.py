"""Prompt strategies an eval compares. Each is one small function:

    strategy(run, job, workdir) -> list[Output]     (one Output per image of job.seeds)

`workdir` is a scratch folder of the job (the agent keeps its attempts there); the runner empties
it when it redoes an unfinished job. A strategy returns its images in memory, or, when it saved
them itself (the agent), their files: their records then already carry `job.tag(suite)` and the
runner moves them into the run's images folder (each image is written once).

- `raw`: the idea as a plain sequence, no writer (what diffusers feeds Z-Image for the idea).
- `expanded`: the writer rewrites the idea; its answer is the prompt (`plain` shape by default).
- `think`: the writer's think part and answer in the assistant turn (`think` shape by default).
- `agent`: the rut-avoiding loop of `agent.graph` over all seeds of the idea at once.

The writer strategies draft once per seed, with the image's seed as the writer's seed, so seeds
differ in their descriptions as well as in their noise. `run` (a `evals.runner.RunContext`) holds the
run's models, loaded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.backends.base import Writer

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.evals.runner import Job, RunContext
    from zit_agent.evals.suite import Config, Idea
    from zit_agent.sequence import Assembled


@dataclass
class Output:
    """One image and what produced it."""

    seed: int
    image: Image.Image | None  # None: the strategy saved it, at `saved`
    description: str  # the final text the image was rendered from (fidelity reads it)
    sequence_ids: list[int]
    sequence_text: str
    shape: str
    seconds: dict[str, float]
    max_tokens: int  # the sequence's token budget it was assembled under
    writer: dict[str, Any] | None = None
    backend_record: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # rut readings, escapes (agent)
    saved: Path | None = None  # the PNG (its record beside it) a strategy saved itself
    steps: float | None = None  # denoising steps per kept image (previews, failed attempts too)


Strategy = Callable[["RunContext", "Job", Path], list[Output]]


@dataclass(frozen=True)
class StrategySpec:
    run: Strategy
    per_seed: bool  # True: called once per seed; False: once with all of an idea's seeds


# -- raw, expanded, think ------------------------------------------------------------------------
def raw(run: RunContext, job: Job, workdir: Path) -> list[Output]:
    outputs = []
    for seed in job.seeds:
        start = time.perf_counter()
        text, wildcards = idea_for_seed(run, job.idea.text, seed)
        assembled = run.plain_sequence(text, run.max_tokens(job.config))
        write_seconds = time.perf_counter() - start
        out = _render(run, job.config, assembled, text, seed)
        out.seconds["write"] = write_seconds
        if wildcards is not None:
            out.backend_record = {**out.backend_record, "wildcards": wildcards}
        outputs.append(out)
    return outputs


def idea_for_seed(run: RunContext, text: str, seed: int) -> tuple[str, dict[str, Any] | None]:
    """A wildcard idea's expansion for this seed (the run API's, as `zit generate` draws it) and
    its record; a plain idea as it is."""
    from zit_agent.agent.run import idea_seeds
    from zit_agent.options import run_options

    _, ideas = idea_seeds(run.settings, text, run_options(seed=seed), 1)
    if ideas is None:
        return text, None
    return ideas[0], {"template": text, "expansion": ideas[0], "seed": seed}


def expanded(run: RunContext, job: Job, workdir: Path) -> list[Output]:
    return [_written(run, job.idea, job.config, seed) for seed in job.seeds]


think = expanded  # the same steps; the config's shape (think by default) makes the difference


def _written(run: RunContext, idea: Idea, config: Config, seed: int) -> Output:
    from zit_agent.agent.run import PartsSpec

    start = time.perf_counter()
    text, wildcards = idea_for_seed(run, idea.text, seed)
    spec = PartsSpec(writer=run.suite.writer_of(config), backend=run.suite.backend.kind)
    runner = run.runner.using(writer=run.writer_for(config), spec=spec)
    written = runner.write(
        text,
        instruction=config.instruction,
        target_words=config.target_words,
        shape=config.sequence_shape,
        sampling=config.sampling,
        seed=seed,
        retokenize=bool(config.retokenize),
        max_tokens=run.max_tokens(config),
    )
    write_seconds = time.perf_counter() - start
    out = _render(run, config, written.assembled, written.draft.answer.text, seed)
    out.seconds["write"] = write_seconds
    if wildcards is not None:
        out.backend_record = {**out.backend_record, "wildcards": wildcards}
    out.writer = {
        **written.provenance,
        "model": written.draft.model,
        "generated_ids": written.draft.generated_ids,
        "answer_ids": written.draft.answer.ids,
        "think": written.draft.think.text,
        "answer": written.draft.answer.text,
        "prompt_tokens": written.draft.stats.prompt_tokens,
        "new_tokens": written.draft.stats.new_tokens,
        "finish_reason": written.draft.stats.finish_reason,
    }
    return out


def _render(
    run: RunContext, config: Config, assembled: Assembled, description: str, seed: int
) -> Output:
    start = time.perf_counter()
    options = run.render_options(config)
    [rendered] = run.runner.render(assembled.ids, [seed], options)
    seconds = time.perf_counter() - start
    encode = _encode_seconds(rendered.record)
    return Output(
        seed=seed,
        image=rendered.image,
        description=description,
        sequence_ids=assembled.ids,
        sequence_text=assembled.text,
        shape=assembled.shape or "plain",
        seconds={"encode": encode, "render": max(seconds - encode, 0.0)},
        max_tokens=run.max_tokens(config),
        backend_record=rendered.record,
        steps=float(options.steps),
    )


def _encode_seconds(record: dict[str, Any]) -> float:
    """The encoder's share of a render, when the backend reports it (Z-Image does; the sketch
    stand-in has no encoder)."""
    value = (record.get("timings") or {}).get("encode_s", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


# -- agent ---------------------------------------------------------------------------------------
# Which stage the time up to each agent event belongs to (nodes report after they work, except
# `render`, which reports before rendering).
STAGE_BEFORE_EVENT = {
    "write": "write",
    "assemble": "write",
    "render": "write",
    "rendered": "render",
    "embed": "judge",
    "judge": "judge",
    "escape": "write",
    "finish": "judge",
}


def agent(run: RunContext, job: Job, workdir: Path) -> list[Output]:
    """The agent's loop over all of an idea's seeds (`len(seeds)` consecutive seeds from the first;
    the `seeds` lever may move them). Its images go to `workdir`, each saved once, with the job's
    tag in its record (the final ones are then moved into the run's images). Its history store is
    its own and in memory, so its verdicts depend on this job alone (not on run order, not on
    resuming) and nothing of it is left to clear."""
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.run import PartsSpec

    config, seeds = job.config, job.seeds
    writer = _CountingWriter(run.writer_for(config)) if run.suite.writer_of(config) else None
    spec = PartsSpec(writer=run.suite.writer_of(config), backend=run.suite.backend.kind,
                     embedder=run.suite.embedder)  # fmt: skip
    runner = run.runner.using(writer=writer, embedder=run.embedder, spec=spec)
    options = run.options(config).model_copy(update={"seed": seeds[0], "count": len(seeds)})
    clock = _StageClock()
    with HistoryStore.in_memory() as store:
        final = runner.generate(
            job.idea.text, options, out_dir=workdir, on_event=clock, store=store,
            run_id=workdir.name, sampling=config.sampling, record=job.tag(run.suite.name),
        )  # fmt: skip
    return _agent_outputs(final, clock, writer)


def _agent_outputs(final: Any, clock: _StageClock, writer: _CountingWriter | None) -> list[Output]:
    chosen = final.attempts[final.final_attempt]
    images = [
        (shot, seed, Path(path))
        for shot in chosen.shots
        for seed, path in zip(shot.seeds, shot.images, strict=True)
    ]
    every = [Path(p) for attempt in final.attempts for p in attempt.images]
    seconds = clock.per_image(len(images), encode=sum(_encode_seconds(_record(p)) for p in every))
    events = _agent_events(final)
    spent = sum(shot.steps_spent for attempt in final.attempts for shot in attempt.shots)
    steps = spent / len(images) if images else None
    outputs = []
    for shot, seed, path in images:
        outputs.append(
            Output(
                seed=seed,
                image=None,
                saved=path,
                description=shot.description.full_text,
                sequence_ids=list(shot.sequence_ids),
                sequence_text=shot.sequence_text,
                shape=final.shape,
                seconds=dict(seconds),
                max_tokens=final.max_tokens,
                writer=writer.share(len(images)) if writer else None,
                backend_record=_record(path),
                events=events,
                steps=steps,
            )
        )
    return outputs


def _record(path: Path) -> dict[str, Any]:
    import json

    beside = path.with_suffix(".json")
    return json.loads(beside.read_text(encoding="utf-8")) if beside.is_file() else {}


def _agent_events(final: Any) -> list[dict[str, Any]]:
    events = []
    for attempt in final.attempts:
        scores = attempt.scores
        reading = (
            f"verdict {scores.verdict}: mean similarity {scores.mean_similarity:.3f}, "
            f"Vendi {scores.vendi:.2f}"
            if scores
            else "not judged"
        )
        levers = "; ".join(
            f"{lv.name}: {lv.detail}" + (f" -> {lv.effect}" if lv.effect else "")
            for lv in attempt.levers
        )
        detail = f"{reading}" + (f"; after {levers}" if levers else "")
        events.append({"kind": f"attempt {attempt.number}", "detail": detail})
    events.append({"kind": "outcome", "detail": final.message})
    return events


class _StageClock:
    """Times the agent's stages from its events (`AgentContext.on_event`)."""

    def __init__(self) -> None:
        self.seconds = {stage: 0.0 for stage in ("write", "encode", "render", "judge")}
        self._last = time.perf_counter()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.seconds[STAGE_BEFORE_EVENT.get(kind, "judge")] += now - self._last
        self._last = now

    def per_image(self, images: int, encode: float) -> dict[str, float]:
        """Seconds per final image; the encoder's share (Z-Image reports it) comes out of render."""
        total = {
            **self.seconds,
            "encode": encode,
            "render": max(self.seconds["render"] - encode, 0.0),
        }
        return {stage: value / max(images, 1) for stage, value in total.items()}


class _CountingWriter(Writer):
    """Passes calls to a writer and tallies the tokens of its drafts (the agent calls it several
    times per idea: expand, then vary)."""

    def __init__(self, writer: Writer):
        self._writer = writer
        self.name = writer.name
        self.calls = self.prompt_tokens = self.new_tokens = 0

    @property
    def fingerprint(self):
        return self._writer.fingerprint

    def write(self, messages, sampling, seed):
        draft = self._writer.write(messages, sampling, seed)
        self.calls += 1
        self.prompt_tokens += draft.stats.prompt_tokens
        self.new_tokens += draft.stats.new_tokens
        return draft

    def share(self, images: int) -> dict[str, Any]:
        """This writer's totals, and their share per image."""
        return {
            "model": self.name,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens / images,
            "new_tokens": self.new_tokens / images,
        }


STRATEGIES: dict[str, StrategySpec] = {
    "raw": StrategySpec(raw, per_seed=True),
    "expanded": StrategySpec(expanded, per_seed=True),
    "think": StrategySpec(think, per_seed=True),
    "agent": StrategySpec(agent, per_seed=False),
}
