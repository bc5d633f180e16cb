"""`zit rerender`: render an image's exact token sequence again, from the record in its PNG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson, OutDir
from zit_agent.defaults import LIMITS


@app.command()
def rerender(
    image: Annotated[Path, typer.Argument(help="A PNG written by zit (its `zit` record is read).")],
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=LIMITS.max_seed, help="Another seed (default: the image's)."),
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="Another WIDTHxHEIGHT (default: the image's).")
    ] = None,
    image_model: Annotated[
        str | None,
        typer.Option("--image-model", help="Z-Image folder or repo id (default: the image's)."),
    ] = None,
    out: OutDir = None,
    as_json: AsJson = False,
) -> None:
    """Render IMAGE's token sequence again with its settings: the same pixels for the same seed,
    size and model (the batch the image was rendered in is rendered again, and the image kept).
    The token ids come from the PNG's record, never re-tokenized text. An image-to-image render
    needs its init image (and mask) where the record says, unchanged."""
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.run import Runner, image_record, parse_size, precheck
    from zit_agent.backends.provenance import control_changed, render_request
    from zit_agent.backends.refine import check_init_unchanged
    from zit_agent.errors import UserError
    from zit_agent.files import check_home
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    # 1. The record, and what changes
    record = image_record(image)
    request = render_request(record)
    options = request.options
    if size:
        width, height = parse_size(size)
        options = options.model_copy(update={"width": width, "height": height})
    changed = control_changed(record)
    if changed:
        raise UserError(
            f"{image} cannot be rendered again: its control map {options.control_image}: {changed}",
            hint="put the original control map back at that path",
        )
    check_init_unchanged(record)  # before the check below names a moved init image less well
    precheck("zimage", options)
    settings = load_settings(image_model=image_model)
    model = image_model or request.model
    if model is None:
        raise UserError(
            f"{image} does not name the image model it was made with",
            hint="name the Z-Image model folder or repo id to render it with",
        )
    out_dir = out or check_home(settings.home) / "outputs"
    # 2. Render the same ids (in the same batch, with the same ControlNet)
    parts = run_options(image_model=model, dtype=request.dtype, controlnet=request.controlnet)
    runner = Runner.load(settings, parts, ruts=False)
    seeds = [seed if seed is not None else request.seed]
    path, item, note = runner.rerender(
        record, out_dir=out_dir, source=str(image), request=request, options=options,
        seed=seeds[0],
    )  # fmt: skip
    # 3. Say what was written
    if note:
        print(f"zit: note: {note}", file=sys.stderr)
    if as_json:
        print_json(
            {
                "images": [str(path)],
                "source": str(image),
                "seeds": seeds,
                "token_count": len(request.token_ids),
                "token_sha256": item.record["token_sha256"],
                "model": model,
                "batch": item.record.get("batch"),
                "note": note,
            }
        )
        return
    print(path)
