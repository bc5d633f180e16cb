"""The declared run options (`zit_agent.options`) as typer options.

`@with_options()` adds every declared option to a command's signature (help panels by group,
`--name-with-dashes` flags, `--x/--no-x` for negatable booleans) and hands the command one
`RunOptions` in its `options` parameter, with only the options the person set. Bounds are checked
by `RunOptions`, so a bad value is one line that names the flag, not a usage box.

Only typer and the standard library at module level: `zit --help` stays light.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from zit_agent.options import DECLARED, Option, run_options


def _parameter(option: Option) -> inspect.Parameter:
    if option.type is bool:
        flags = [f"{option.flag}/--no-{option.flag[2:]}"] if option.negatable else [option.flag]
    else:
        flags = [option.flag, *([option.short] if option.short else [])]
    annotation = Annotated[
        option.type | None,
        typer.Option(*flags, help=option.help_text, rich_help_panel=option.group),
    ]
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def with_options(*, only: tuple[str, ...] | None = None) -> Callable[[Callable], Callable]:
    """Give the command every declared option (or `only` these); it receives
    `options=RunOptions` with the ones the person set."""
    chosen = [o for o in DECLARED if only is None or o.name in only]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "options"]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name, None) for o in chosen}
            return command(*args, options=run_options(**values), **kwargs)

        positional = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
        parameters = [*positional, *keyword, *map(_parameter, chosen)]
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate
