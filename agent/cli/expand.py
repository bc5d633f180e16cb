"""`zit expand`: a local Qwen3 writer turns an idea into Z-Image's chat sequence, as token ids."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import MAX_TOKENS_HELP


@app.command()
def expand(
    idea: Annotated[str, typer.Argument(help="The short idea to expand.")],
    writer: Annotated[
        str | None,
        typer.Option(
            help="gguf:PATH, gguf:ORG/REPO/FILE.gguf or hf:DIR_OR_REPO (default: setting)."
        ),
    ] = None,
    shape: Annotated[str, typer.Option(help="Sequence shape: think, answer or plain.")] = "think",
    instruction: Annotated[
        str, typer.Option(help="Writer instruction from prompts/: expand, refine, vary.")
    ] = "expand",
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same output).")] = 0,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature (0: greedy; default 0.7).")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Most tokens the writer may generate (default 400).")
    ] = None,
    target_words: Annotated[
        int | None, typer.Option(help="Length of the description in words, roughly.")
    ] = None,
    open_think: Annotated[
        bool,
        typer.Option(
            "--open-think", help="Open the answer with <think> so an instruct model plans first."
        ),
    ] = False,
    retokenize: Annotated[
        bool,
        typer.Option(
            "--retokenize", help="Allow a writer of another vocabulary (re-tokenizes its text)."
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="CPU threads of a gguf writer (default: the physical cores, less one)."
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Encoder tokenizer: directory, Z-Image model directory or repo id."),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help=MAX_TOKENS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Expand IDEA with a local writer model and print the Z-Image chat sequence it makes.

    The writer's generated ids go into the sequence verbatim: think part and description in the
    assistant turn (`think`), the description only (`answer`), or the description as the prompt
    (`plain`).
    """
    from zit_agent import prompts
    from zit_agent.agent.drafting import expand_idea
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.backends.writers import SPEC_HINT, load_writer, parse_spec
    from zit_agent.errors import UserError
    from zit_agent.sequence import SHAPES, check_token_budget
    from zit_agent.settings import load_settings

    # 1. Parse and check everything that needs no model
    settings = load_settings(tokenizer=tokenizer, writer=writer)
    if not settings.writer:
        raise UserError(
            "no writer model given",
            hint=f"pass --writer ({SPEC_HINT.removeprefix('use ')}) or set ZIT_WRITER",
        )
    parse_spec(settings.writer)
    sampling = _sampling(Sampling, temperature, max_new_tokens)
    if shape not in SHAPES:
        raise UserError(f"unknown sequence shape {shape!r}", hint=f"use one of {', '.join(SHAPES)}")
    prompts.load(instruction)  # an unknown instruction fails before any model loads
    budget = check_token_budget(max_tokens or settings.render_value("max_tokens"))
    # 2. Load the encoder tokenizer (cheap, fails early), then the writer
    tok = QwenTokenizer.from_pretrained(settings.tokenizer_spec, download=settings.download)
    model = load_writer(
        settings.writer, download=settings.download, threads=threads, open_think=open_think
    )
    # 3. Write and assemble
    result = expand_idea(
        model,
        tok,
        idea,
        instruction=instruction,
        target_words=target_words,
        shape=shape,
        sampling=sampling,
        seed=seed,
        retokenize=retokenize,
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


def _sampling(sampling_cls, temperature: float | None, max_new_tokens: int | None):
    from pydantic import ValidationError

    from zit_agent.errors import UserError

    given = {"temperature": temperature, "max_new_tokens": max_new_tokens}
    try:
        return sampling_cls(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(
            f"bad --{first['loc'][0]}".replace("_", "-") + f": {first['msg']}"
        ) from None


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
        },
        "provenance": result.provenance,
    }


def _print_readable(result, tok) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
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
        table.add_row(str(span.turn), span.part, str(span.end - span.start), text)
    console.print(table)
    console.print(
        f"writer [bold]{result.draft.model}[/]: {stats.new_tokens} new tokens in "
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
