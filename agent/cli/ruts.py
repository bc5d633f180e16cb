"""`zit ruts`: are these images one composition over and over? Works on any images (ComfyUI's too).

Images that carry zit's PNG record (`backends.provenance`) are also judged per idea, and their
prompts let the report name the axes left unstated or repeated. Embeddings are cached in the history
database by content hash, so a second run over the same images embeds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson

if TYPE_CHECKING:
    from zit_agent.agent.ruts import Thresholds


@app.command()
def ruts(
    paths: Annotated[
        list[Path], typer.Argument(help="Images, or folders of images (png, jpg, webp, bmp).")
    ],
    embedder: Annotated[
        str | None,
        typer.Option(help="hash, hf:DIR_OR_REPO or dreamsim (default: setting, else hash)."),
    ] = None,
    window: Annotated[
        int, typer.Option(min=2, help="Judge the newest N images of each group.")
    ] = 8,
    rut: Annotated[
        float | None, typer.Option(help="Mean similarity from which it is a rut.")
    ] = None,
    warn: Annotated[
        float | None, typer.Option(help="Mean similarity from which it is a warning.")
    ] = None,
    duplicate: Annotated[
        float | None, typer.Option(help="Similarity from which two images are near-duplicates.")
    ] = None,
    analyzer: Annotated[
        str | None,
        typer.Option(help="faces (identity, shot, angle kinds) or none (default: setting, faces)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Judge whether images repeat one composition (a rut): similarity, Vendi score, clusters.

    Images are taken in name order, newest last. The first group is all images together; images
    with zit metadata are also grouped by idea. Each group reads per kind: layout (the embedder),
    identity, shot and angle (faces found by the analyzer).
    """
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.ruts import collect_images, image_item, judge_images
    from zit_agent.backends.analyzers import load_default_analyzer
    from zit_agent.backends.embedders import load_default_embedder, load_embedder
    from zit_agent.settings import load_settings

    # 1. Inputs
    settings = load_settings()
    files = collect_images(paths)
    # 2. Embedder and thresholds
    notes: list[str] = []
    if embedder:
        model = load_embedder(embedder, settings)
    else:
        model, notes = load_default_embedder(settings)
    thresholds = _thresholds(model.family, rut=rut, warn=warn, duplicate=duplicate)
    looker, kinds_notes = load_default_analyzer(analyzer or settings.analyzer)
    # 3. Vectors and observations (cached by content hash), then each group judged
    items = [image_item(f) for f in files]
    with HistoryStore(settings.history_db) as store:
        result = judge_images(
            store, model, looker, items, window, _open, thresholds=thresholds,
            kinds_note=kinds_notes[0] if kinds_notes else None,
        )  # fmt: skip
    result["notes"] = notes + kinds_notes
    # 4. Show
    if as_json:
        from zit_agent.agent.cli.common import print_json

        print_json(result)
    else:
        _print_table(result)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    from zit_agent.errors import UserError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(
            f"{path} is not a readable image ({type(err).__name__})",
            hint="give PNG, JPEG, WebP or BMP files",
        ) from None


def _thresholds(family: str, **overrides: float | None) -> Thresholds:
    from pydantic import ValidationError

    from zit_agent.agent.ruts import Thresholds, thresholds_for
    from zit_agent.errors import UserError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Thresholds(**{**thresholds_for(family).model_dump(), **given})
    except ValidationError as err:
        raise UserError(
            f"bad thresholds {given}: {err.errors()[0]['msg']}",
            hint="keep -1 <= --warn <= --rut <= 1",
        ) from None


def _print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    from zit_agent.agent.cli.output import new_console, plain

    console = new_console()
    t = result["thresholds"]
    table = Table(
        title=f"ruts ({plain(result['embedder'])}: warn {t['warn']}, rut {t['rut']}, "
        f"near-duplicate {t['duplicate']})"
    )
    for column in ("group", "images", "verdict", "mean sim", "newest max", "vendi", "near-dup"):
        table.add_column(column, justify="left" if column in ("group", "verdict") else "right")
    colours = {"ok": "green", "warn": "yellow", "rut": "red"}
    for name, row in [("all images", result)] + [(g["idea"], g) for g in result["groups"]]:
        table.add_row(
            plain(name),
            str(row["count"]),
            f"[{colours[row['verdict']]}]{row['verdict']}[/]",
            _number(row["mean_similarity"]),
            _number(row["max_similarity"]),
            f"{row['vendi']:.2f}",
            f"{row['near_duplicate_rate']:.0%}",
        )
    console.print(table)
    for name, row in [("all images", result)] + [(g["idea"], g) for g in result["groups"]]:
        for cluster in row["clusters"]:
            console.print(f"[bold]{plain(name)}[/]: near-duplicates: {plain(', '.join(cluster))}")
        if row["axes"] and row["verdict"] != "ok":
            axes = row["axes"]
            repeated = ", ".join(f"{a}={v}" for a, v in axes["repeated"].items()) or "none"
            unstated = ", ".join(axes["unstated"]) or "none"
            console.print(
                f"[bold]{plain(name)}[/]: as stated in the prompts: repeated: {plain(repeated)}; "
                f"unstated: {plain(unstated)}"
            )
    _print_kinds(console, result)
    for note in result["notes"]:
        console.print(f"[yellow]note[/]: {plain(note)}")


def _print_kinds(console, result: dict[str, Any]) -> None:
    """One row per group and kind (measured on the images; the axes above are as stated)."""
    from rich.markup import escape
    from rich.table import Table

    rows = [("all images", result)] + [(g["idea"], g) for g in result["groups"]]
    if not any(row.get("kinds") for _, row in rows):
        return
    table = Table(title="rut kinds (measured on the images)")
    for column in ("group", "kind", "verdict", "reading"):
        table.add_column(column)
    colours = {"ok": "green", "warn": "yellow", "rut": "red", "unmeasured": "dim"}
    for name, row in rows:
        for kind, found in (row.get("kinds") or {}).items():
            verdict = found["verdict"]
            table.add_row(
                escape(str(name)),
                kind,
                f"[{colours[verdict]}]{verdict}[/]",
                escape(found["reason"]),
            )
    console.print(table)
    for name, row in rows:
        identity = (row.get("kinds") or {}).get("identity") or {}
        for i, cluster in enumerate(identity.get("clusters") or []):
            console.print(
                f"[bold]{escape(str(name))}[/]: person {i + 1}: {escape(', '.join(cluster))}"
            )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
