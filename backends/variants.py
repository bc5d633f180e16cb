"""Z-Image (base) or Z-Image-Turbo: which variant a model is, and the render settings it takes.

Both variants share the architecture, so the files tell them apart only by their names and their
scheduler config: Turbo ships a static shift of 3.0, base 6.0 (`defaults.VARIANTS`). Detection, in
order: the variant given; a weight file's name (`turbo`, or `base` as a word); the folder's
scheduler shift; the folder's or repo's name; else Turbo. The source is recorded with the variant,
and `variant_options` gives the settings to render with, so base never runs with Turbo's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from zit_agent.backends.base import RenderOptions
from zit_agent.defaults import DEFAULT_VARIANT, VARIANTS, VariantDefaults
from zit_agent.errors import UserError

_BASE_WORD = re.compile(r"(^|[^a-z])base([^a-z]|$)")


def check_variant(name: str) -> str:
    key = name.strip().lower()
    if key not in VARIANTS:
        raise UserError(f"unknown model variant {name!r}", hint=f"use one of {', '.join(VARIANTS)}")
    return key


def variant_defaults(variant: str) -> VariantDefaults:
    """The variant's own steps, guidance, shift, CFG normalization and negative prompt."""
    return VARIANTS[check_variant(variant)]


def variant_options(variant: str, options: RenderOptions | None = None) -> RenderOptions:
    """`options` (default: `RenderOptions()`) with the variant's steps, guidance, shift and CFG
    normalization. The negative prompt (`variant_defaults(v).negative`) is text: the caller
    tokenizes it; an empty negative is what the backend encodes when none is given."""
    found = variant_defaults(variant)
    return (options or RenderOptions()).model_copy(
        update={
            "steps": found.steps,
            "guidance": found.guidance,
            "shift": found.shift,
            "cfg_normalization": found.cfg_normalization,
        }
    )


def detect_variant(
    root: Path | None, *, names: list[str], given: str | None = None
) -> tuple[str, str]:
    """(variant, where it came from). `names`: weight-file names first, then the model's name."""
    if given:
        return check_variant(given), "given"
    files, model_name = names[:-1], names[-1:]
    for name in files:
        found = _from_name(name)
        if found:
            return found, f"file name {Path(name).name}"
    shift = _scheduler_shift(root) if root else None
    if shift is not None:
        closest = min(VARIANTS, key=lambda v: abs(VARIANTS[v].shift - shift))
        return closest, f"scheduler shift {shift:g}"
    for name in model_name:
        found = _from_name(name)
        if found:
            return found, f"model name {name}"
    return DEFAULT_VARIANT, "default"


def _from_name(name: str) -> str | None:
    stem = Path(str(name)).name.lower()
    if "turbo" in stem:
        return "turbo"
    if _BASE_WORD.search(stem):
        return "base"
    return None


def _scheduler_shift(root: Path) -> float | None:
    path = root / "scheduler" / "scheduler_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if config.get("use_dynamic_shifting"):
        return None
    shift = config.get("shift")
    return float(shift) if isinstance(shift, int | float) else None
