"""Prompt strategies an eval compares. Each is one small function:

    strategy(run, idea, config, seeds) -> list[Output]     (one Output per seed, in seed order)

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
from typing import TYPE_CHECKING, Any

from agent.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

    from agent.sequence import Assembled
    from evals.runner import RunContext
    from evals.suite import Config, Idea


@dataclass
class Output:
    """One image and what produced it."""

    seed: int
    image: Image.Image
    description: str  # the final text the image was rendered from (fidelity reads it)
    sequence_ids: list[int]
    sequence_text: str
    shape: str
    seconds: dict[str, float]
    writer: dict[str, Any] | None = None
    backend_record: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # rut readings, escapes (agent)


Strategy = Callable[["RunContext", "Idea", "Config", list[int]], list[Output]]


@dataclass(frozen=True)
class StrategySpec:
    run: Strategy
    per_seed: bool  # True: called once per seed; False: once with all of an idea's seeds


# -- raw, expanded, think ------------------------------------------------------------------------
def raw(run: RunContext, idea: Idea, config: Config, seeds: list[int]) -> list[Output]:
    from agent.sequence import ChatSequence, assemble

    outputs = []
    for seed in seeds:
        start = time.perf_counter()
        assembled = assemble(
            ChatSequence.plain(idea.text), run.tokenizer, max_tokens=config.max_tokens
        )
        out = _render(run, config, assembled, idea.text, seed)
        out.seconds["write"] = (
            time.perf_counter() - start - out.seconds["render"] - out.seconds["encode"]
        )
        outputs.append(out)
    return outputs


def expanded(run: RunContext, idea: Idea, config: Config, seeds: list[int]) -> list[Output]:
    return [_written(run, idea, config, seed) for seed in seeds]


think = expanded  # the same steps; the config's shape (think by default) makes the difference


def _written(run: RunContext, idea: Idea, config: Config, seed: int) -> Output:
    from agent.drafting import expand_idea

    start = time.perf_counter()
    written = expand_idea(
        run.writer_for(config),
        run.tokenizer,
        idea.text,
        instruction=config.instruction,
        target_words=config.target_words,
        shape=config.sequence_shape,
        sampling=config.sampling,
        seed=seed,
        max_tokens=config.max_tokens,
    )
    write_seconds = time.perf_counter() - start
    out = _render(run, config, written.assembled, written.draft.answer.text, seed)
    out.seconds["write"] = write_seconds
    out.writer = {
        **written.provenance,
        "model": written.draft.model,
        "generated_ids": written.draft.generated_ids,
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
    [rendered] = run.backend.render(assembled.ids, [seed], run.render_options(config))
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
        backend_record=rendered.record,
    )


def _encode_seconds(record: dict[str, Any]) -> float:
    """The encoder's share of a render, when the backend reports it (Z-Image does; the sketch
    stand-in has no encoder)."""
    value = (record.get("timings") or {}).get("encode_s", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


# -- agent ---------------------------------------------------------------------------------------
def agent(run: RunContext, idea: Idea, config: Config, seeds: list[int]) -> list[Output]:
    raise UserError(
        "the agent strategy is not available yet: the agent graph (agent/graph.py) has not landed",
        hint="run the other configs with --only, e.g. --only raw expanded think",
    )


STRATEGIES: dict[str, StrategySpec] = {
    "raw": StrategySpec(raw, per_seed=True),
    "expanded": StrategySpec(expanded, per_seed=True),
    "think": StrategySpec(think, per_seed=True),
    "agent": StrategySpec(agent, per_seed=False),
}
