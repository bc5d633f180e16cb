"""core/files.py: the journal appends of `append_line` (atomic writes are covered where they are
used: the run folder, provenance, settings)."""

from __future__ import annotations

import pytest

from zit_agent.errors import UserError
from zit_agent.files import append_line


def test_lines_are_appended_whole(tmp_path):
    path = tmp_path / "journal.jsonl"
    append_line(path, b'{"a": 1}\n')
    append_line(path, b'{"b": 2}\n')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'


def test_a_line_a_crash_cut_short_stays_apart_from_the_next(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": ')  # the machine stopped mid-append
    append_line(path, b'{"c": 3}\n')
    assert path.read_bytes().splitlines() == [b'{"a": 1}', b'{"b": ', b'{"c": 3}']


@pytest.mark.parametrize("line", [b"no newline", b"two\nlines\n", b""])
def test_only_one_whole_line_is_taken(tmp_path, line):
    with pytest.raises(ValueError, match="exactly one line"):
        append_line(tmp_path / "journal.jsonl", line)
    assert not (tmp_path / "journal.jsonl").exists()


def test_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me")
    (tmp_path / "journal.jsonl").symlink_to(target)
    with pytest.raises(UserError, match="is a symbolic link"):
        append_line(tmp_path / "journal.jsonl", b"{}\n")
    assert target.read_bytes() == b"keep me"
