"""mypy checks the core and the run API against the installed package, with `RunOptions` reads
resolved (a written-out class, not one built at run time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECKED = ("zit_agent", "zit_agent.axes", "zit_agent.defaults", "zit_agent.errors",
           "zit_agent.files", "zit_agent.options", "zit_agent.sequence", "zit_agent.settings",
           "zit_agent.agent.run")  # fmt: skip


def mypy(*args: str, cwd) -> subprocess.CompletedProcess:
    from pathlib import Path

    config = Path(__file__).parents[1] / "pyproject.toml"
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
         str(cwd / ".mypy_cache"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_mypy_passes_on_the_core_and_the_run_api_and_resolves_option_reads(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from zit_agent.options import RunOptions\n\n\n"
        "def f(options: RunOptions) -> int:\n    return options.noise + options.no_such_option\n"
    )
    checked = mypy(*[arg for module in CHECKED for arg in ("-m", module)], cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = mypy(str(probe), cwd=tmp_path).stdout
    # The probe's one bad read is found, so `zit_agent` was resolved (not taken as Any); if not,
    # the install is one mypy cannot follow: pip install -e . --config-settings editable_mode=strict
    assert 'probe.py:5: error: "RunOptions" has no attribute "no_such_option"' in out, out
    assert out.count("error:") == 1, out
