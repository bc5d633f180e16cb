"""`zit tokens`: show the exact token ids Z-Image's encoder will read for an idea."""

from __future__ import annotations

from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson
from zit_agent.agent.cli.options import with_options


@app.command()
@with_options(only=("tokenizer", "max_tokens"))
def tokens(
    idea: Annotated[str, typer.Argument(help="The prompt or idea (user turn).")],
    system: Annotated[str | None, typer.Option(help="A system turn before the user turn.")] = None,
    think: Annotated[
        str | None, typer.Option(help="Think text of the assistant turn (think shape).")
    ] = None,
    assistant: Annotated[
        str | None, typer.Option(help="Content of the assistant turn (answer shape).")
    ] = None,
    close: Annotated[
        bool, typer.Option("--close", help="Close the assistant turn with <|im_end|>.")
    ] = False,
    as_json: AsJson = False,
    *,
    options,
) -> None:
    """Build the Z-Image chat sequence of IDEA and print its token ids.

    With only IDEA: the `plain` shape, exactly what diffusers feeds the encoder. With --think: the
    `think` shape; with only --assistant: the `answer` shape.
    """
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.run import first_given
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.sequence import assemble, assembled_json, check_token_budget, sequence_of_parts
    from zit_agent.settings import load_settings

    settings = load_settings(tokenizer=options.tokenizer)
    budget = check_token_budget(
        first_given(options.max_tokens, settings.render_value("max_tokens"))
    )
    seq = sequence_of_parts(idea, system=system, think=think, assistant=assistant, close=close)
    tok = QwenTokenizer.from_pretrained(settings.tokenizer_spec, download=settings.download)
    result = assemble(seq, tok, max_tokens=budget)
    if as_json:
        print_json(assembled_json(result, tok.source))
        return
    _print_readable(result, tok, result.shape or "plain")


def _print_readable(result, tok, shape: str) -> None:
    from rich.table import Table

    from zit_agent.agent.cli.output import new_console, plain

    console = new_console()
    table = Table(title=f"{shape} sequence: {result.count} of {result.budget} tokens")
    table.add_column("turn", justify="right")
    table.add_column("part")
    table.add_column("tokens", justify="right")
    table.add_column("text", overflow="fold")
    for span in result.spans:
        text = tok.decode(result.ids[span.start : span.end])
        table.add_row(str(span.turn), span.part, str(span.end - span.start), plain(text))
    console.print(table)
    if result.cut:
        for cut in result.cut:
            console.print(
                f"[yellow]cut[/]: {cut.removed} tokens from the {cut.part} of turn {cut.turn} "
                f"({cut.kept} kept) to fit the budget"
            )
    console.print("[bold]ids[/]:", " ".join(map(str, result.ids)), highlight=False, soft_wrap=True)
