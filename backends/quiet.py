"""Quiet diffusers', transformers' and huggingface_hub's progress bars and logging.

Loading a model prints a screen of bars ("Loading pipeline components", "Loading weights", download
bars) and info lines on stderr; before a one-line error they bury it. Loaders call
`quiet_libraries()` after importing their libraries; a front end calls `quiet_libraries(verbose)`
once at start to choose (`--verbose` keeps the libraries' own output). Errors are still logged, and
a verbosity the user set in the libraries' own variables (`TRANSFORMERS_VERBOSITY`, ...) is kept.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

# module with the library's logging functions, its verbosity variable, its progress-bar switches
_LIBRARIES = (
    ("diffusers", "DIFFUSERS_VERBOSITY", "disable_progress_bar", "enable_progress_bar"),
    ("transformers", "TRANSFORMERS_VERBOSITY", "disable_progress_bar", "enable_progress_bar"),
    ("huggingface_hub", "HF_HUB_VERBOSITY", None, None),
)
_HUB_BARS = "HF_HUB_DISABLE_PROGRESS_BARS"

_verbose = False
_set_here: set[str] = set()  # environment variables this module set (a user's are left alone)


def quiet_libraries(verbose: bool | None = None) -> None:
    """Quiet the libraries, or with `verbose` leave them as they are.

    `verbose=None` (what loaders pass) keeps the front end's earlier choice; quiet when none was
    made. Libraries not imported yet are quieted through their environment variables, read when
    they load; imported ones through their logging modules.
    """
    global _verbose
    if verbose is not None:
        _verbose = verbose
    level = logging.WARNING if _verbose else logging.ERROR
    for package, variable, disable_bars, enable_bars in _LIBRARIES:
        users_choice = variable in os.environ and variable not in _set_here
        _set_env(variable, "error")
        if package not in sys.modules:
            continue
        module = importlib.import_module(f"{package}.utils.logging")
        if not users_choice:
            module.set_verbosity(level)
        if disable_bars:
            getattr(module, enable_bars if _verbose else disable_bars)()
    _set_env(_HUB_BARS, "1")
    if "huggingface_hub" in sys.modules:
        hub = importlib.import_module("huggingface_hub.utils")
        hub.enable_progress_bars() if _verbose else hub.disable_progress_bars()


def _set_env(name: str, quiet_value: str) -> None:
    """Set a library's variable when quiet (unless the user set it); when verbose, drop it if
    this module set it."""
    if not _verbose and name not in os.environ:
        os.environ[name] = quiet_value
        _set_here.add(name)
    elif _verbose and name in _set_here:
        os.environ.pop(name, None)
        _set_here.discard(name)
