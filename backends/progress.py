"""Per-step progress of a render, for front ends that show it (the server's job events).

A front end sets a callback for the work it runs (`reporting_steps`); an image backend wraps its
per-step hook with `step_callback`, which calls it after each denoising step with (step, steps).
The callback may raise to stop the render (a cancelled job): the exception leaves the pipeline.
A context variable, not an argument: `RenderOptions` stay plain data, and renders that nobody
watches pay nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

StepReport = Callable[[int, int], None]
_REPORT: ContextVar[StepReport | None] = ContextVar("zit_render_steps", default=None)


@contextlib.contextmanager
def reporting_steps(report: StepReport) -> Iterator[None]:
    """Renders started inside this block call `report(step, steps)` after each step."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


def step_callback(inner: Callable | None, steps: int) -> Callable | None:
    """diffusers' `callback_on_step_end`: `inner` (may be None), then the report, if one is set."""
    report = _REPORT.get()
    if report is None:
        return inner

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        out = inner(pipe, step, timestep, kwargs) if inner is not None else {}
        report(step + 1, steps)
        return out

    return callback
