"""`zit generate`: render an idea with Z-Image from token ids, with provenance on every image.

A thin caller of the run API (`zit_agent.agent.run`). Two paths:
- the plain path (`--writer none --no-ruts` with the Z-Image backend): the idea's plain chat
  sequence, id for id what diffusers would feed the encoder for `prompt=idea`, rendered once;
- the agent path (everything else): the automatic rut-avoiding loop, with a final table of
  attempts, or `--json` with `images`, `attempts`, `ruts_detected`, `ruts_escaped`,
  `final_verdict` and `per_attempt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson, OutDir
from zit_agent.agent.cli.options import with_options


@app.command()
@with_options()
def generate(
    idea: Annotated[str, typer.Argument(help="What to picture.")],
    out: OutDir = None,
    as_json: AsJson = False,
    *,
    options,
) -> None:
    """Render IDEA, avoiding ruts: the writer describes it, the images are checked for a rut
    across seeds, and the escape ladder varies the prompt until they differ (up to
    --max-attempts). With --writer none --no-ruts: the idea's plain sequence, rendered once.
    Each PNG carries its provenance (and a JSON file beside it)."""

    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.cli.output import (
        attempts_table,
        events,
        loading,
        new_console,
        print_parts,
    )
    from zit_agent.agent.report import summary
    from zit_agent.agent.run import Runner, check_request
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.errors import UserError
    from zit_agent.files import check_dir
    from zit_agent.sequence import check_utf8
    from zit_agent.settings import load_settings

    # 1. Parse and check everything that needs no model
    if not check_utf8(idea).strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    ruts = options.ruts is not False
    settings = load_settings()
    check_request(settings, options, ruts=ruts, idea=idea)
    console = new_console(stderr=True, quiet=as_json)
    out_dir = check_dir(Path(out or settings.outputs_dir), "the output folder")
    # 2. Load the parts once
    with loading(console, as_json) as progress:
        runner = Runner.load(settings, options, ruts=ruts, progress=progress)
    print_parts(console, runner.parts)
    if runner.plain_path(options, ruts=ruts):
        # 3a. The plain sequence, rendered once
        result = runner.render_plain(idea, options, out_dir=out_dir)
    else:
        # 3b. The rut-avoiding loop, checkpointed as a thread in the sessions database
        with open_checkpointer(settings.sessions_db) as saver:
            final = runner.generate(
                idea, options, out_dir=out_dir, ruts=ruts, on_event=events(console, as_json),
                checkpointer=saver,
            )  # fmt: skip
        console.print(attempts_table(final))
        result = {**summary(final), "thread": f"generate:{final.run_id}"}
    if runner.parts.plan is not None:
        result["memory_plan"] = runner.parts.plan.lines()
    # 4. Print
    if as_json:
        print_json(result)
    else:
        print("\n".join(result["images"]))
