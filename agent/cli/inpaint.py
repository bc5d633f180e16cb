"""`zit inpaint IMAGE --mask MASK "what to put there"`: redraw the white part of the mask.

The text's plain sequence (as `zit generate TEXT --writer none --no-ruts`) rendered with
diffusers' `ZImageInpaintPipeline` from IMAGE; black parts of the mask are kept. When IMAGE is a
zit image, the image model it names is used unless --image-model says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson, OutDir
from zit_agent.agent.cli.options import with_options

INPAINT_OPTIONS = (
    "count", "seed", "steps", "guidance", "negative", "layer", "sampler", "scheduler", "shift",
    "lora", "strength", "max_tokens", "image_model", "device", "dtype", "batch",
)  # fmt: skip


@app.command()
@with_options(only=INPAINT_OPTIONS)
def inpaint(
    image: Annotated[Path, typer.Argument(help="The image to repaint (any PNG, JPEG, WebP).")],
    text: Annotated[str, typer.Argument(help="What to put in the masked region.")],
    mask: Annotated[
        Path, typer.Option(help="Mask of IMAGE's size: white is redrawn, black is kept.")
    ],
    out: OutDir = None,
    as_json: AsJson = False,
    *,
    options,
) -> None:
    """Repaint the white part of MASK in IMAGE with TEXT (strength 1 unless --strength: the
    region is drawn anew; lower keeps more of what was there)."""
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.run import Runner, check_request
    from zit_agent.backends.provenance import read_record
    from zit_agent.errors import UserError
    from zit_agent.files import check_dir
    from zit_agent.options import run_options
    from zit_agent.sequence import check_utf8
    from zit_agent.settings import load_settings

    # 1. Parse and check everything that needs no model
    if not check_utf8(text).strip():
        raise UserError("the text is empty", hint="say what to put in the masked region")
    record = read_record(image) if image.is_file() else None
    model = options.image_model or (record or {}).get("model")
    given = {**options.model_dump(exclude_none=True), "init": str(image), "mask": str(mask)}
    given["image_model"] = model if model != "<memory>" else None
    options = run_options(**given)
    settings = load_settings()
    check_request(settings, options, ruts=False)
    out_dir = check_dir(Path(out or settings.outputs_dir), "the output folder")
    # 2. Load, 3. render the plain sequence from the image, 4. print
    runner = Runner.load(settings, options, ruts=False)
    result = runner.render_plain(text, options, out_dir=out_dir)
    if as_json:
        print_json(result)
    else:
        print("\n".join(result["images"]))
