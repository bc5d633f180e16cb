"""`zit vary IMAGE --subtle|--strong`: variations of an image zit made, from the image itself.

Reads the PNG's record (its exact token ids and render settings), then renders N new seeds by
image-to-image from the PNG at a documented strength (docs/refine.md). The new records carry the
same `token_sha256` and an `init` block naming the image.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson, OutDir
from zit_agent.agent.cli.options import with_options

MODEL_ONLY = ("count", "seed", "strength", "image_model", "device", "dtype", "batch")


@app.command()
@with_options(only=MODEL_ONLY)
def vary(
    image: Annotated[Path, typer.Argument(help="A PNG written by zit (its `zit` record is read).")],
    subtle: Annotated[
        bool, typer.Option("--subtle", help="Keep the picture, change details (the default).")
    ] = False,
    strong: Annotated[
        bool, typer.Option("--strong", help="Keep layout and colours, redraw the rest.")
    ] = False,
    ruts: Annotated[
        bool,
        typer.Option(
            "--ruts/--no-ruts",
            help="Judge the variations with the init image for a rut (reported, not escaped).",
        ),
    ] = True,
    out: OutDir = None,
    as_json: AsJson = False,
    *,
    options,
) -> None:
    """Render variations of IMAGE: its token ids and settings, started from the image itself
    with new seeds (--subtle, --strong or an exact --strength)."""
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.run import Runner, image_record, seeds_of
    from zit_agent.backends.provenance import render_request
    from zit_agent.defaults import RENDER
    from zit_agent.errors import UserError
    from zit_agent.files import check_dir
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    # 1. The record and the strength, checked before any model loads
    record = image_record(image)
    if record.get("stand_in"):
        raise UserError(
            f"{image} was drawn by the sketch stand-in, which renders no token ids",
            hint="vary an image made with the Z-Image backend",
        )
    render_request(record)  # the ids and settings read back (a damaged record fails here)
    strength = vary_strength(subtle, strong, options.strength)
    count = options.count or RENDER.vary_count
    seeds = seeds_of(options, count)
    settings = load_settings(image_model=options.image_model)
    model = options.image_model or record.get("model")
    check_model(image, model)
    out_dir = check_dir(Path(out or settings.outputs_dir), "the output folder")
    # 2. Load the image model the record names
    given = run_options(
        image_model=model, dtype=options.dtype or record.get("dtype"), device=options.device,
        batch=options.batch,
    )  # fmt: skip
    runner = Runner.load(settings, given, ruts=ruts)
    # 3. Render and print
    result = runner.vary(image, strength=strength, seeds=seeds, out_dir=out_dir)
    if as_json:
        print_json(result)
        return
    print("\n".join(result["images"]))
    if result["ruts"]:
        found = result["ruts"]
        print(
            f"rut check with the init image: {found['verdict']} ({found['reason']})",
            file=sys.stderr,
        )


def vary_strength(subtle: bool, strong: bool, strength: float | None) -> float:
    """--subtle (the default), --strong, or an exact --strength: only one of them."""
    from zit_agent.defaults import RENDER
    from zit_agent.errors import UserError

    if sum([subtle, strong, strength is not None]) > 1:
        raise UserError("give one of --subtle, --strong and --strength")
    if strength is not None:
        from zit_agent.backends.refine import check_strength

        check_strength(strength)
        return strength
    return RENDER.vary_strong if strong else RENDER.vary_subtle


def check_model(image: Path, model: str | None) -> None:
    from zit_agent.errors import UserError

    if model is None or model == "<memory>":
        raise UserError(
            f"{image} does not name the image model it was made with",
            hint="name the Z-Image model folder or repo id with {image_model}",
        )
