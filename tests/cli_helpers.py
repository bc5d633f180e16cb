"""Running the `zit` CLI in-process from tests."""

from __future__ import annotations

from zit_agent.agent.cli import main


def run_zit(capsys, *args: str) -> tuple[int, str, str]:
    """Run `zit ARGS...` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code or 0
    out, err = capsys.readouterr()
    return code, out, err
