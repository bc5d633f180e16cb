"""Fixtures of the eval tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evals.helpers import zit


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The shipped smoke suite, run once through `zit eval` for the whole session."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    env = {"ZIT_HOME": str(out.parent / "home"), "ZIT_CONFIG": str(out.parent / "none.toml")}
    result = zit("eval", "smoke", "--out", str(out), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    return out
