from __future__ import annotations

import json

import pytest

from zit_agent import files


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "out.json"
    files.write_json_atomic(target, {"a": 1})
    files.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    files.write_text_atomic(target, "old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError):
        files.write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_write_never_follows_a_symbolic_link(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    # a link planted at the temporary name the write will take: refused, the target untouched
    monkeypatch.setattr(files, "temp_path", lambda path: out / ".planted.tmp")
    (out / ".planted.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        files.write_text_atomic(out / "report.html", "new")
    # a link at the target name itself is replaced by the file, never written through
    monkeypatch.undo()
    (out / "summary.json").symlink_to(victim)
    files.write_text_atomic(out / "summary.json", "new")
    assert not (out / "summary.json").is_symlink() and (out / "summary.json").read_text() == "new"
    (out / "run.lock").symlink_to(victim)
    with pytest.raises(files.UserError, match="is a symbolic link"):
        files.open_plain(out / "run.lock")
    assert victim.read_text() == "keep me"


def test_a_folder_is_claimed_only_when_new_empty_or_of_the_same_kind(tmp_path):
    new, empty, mine = tmp_path / "new", tmp_path / "empty", tmp_path / "mine"
    empty.mkdir()
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "precious"}')
    assert files.claim_folder(new, "demo") == {"kind": "demo"}
    assert files.claim_folder(empty, "demo", note=1) == {"kind": "demo", "note": 1}
    assert files.claim_folder(empty, "demo") == {"kind": "demo", "note": 1}  # ours already
    with pytest.raises(files.UserError, match="holds a zit demo, not a zit eval run"):
        files.claim_folder(empty, "eval run")
    with pytest.raises(files.UserError, match="is not empty and holds no zit demo"):
        files.claim_folder(mine, "demo")
    assert [p.name for p in mine.iterdir()] == ["config.json"]
    assert files.claim_folder(mine, "demo", adopt=True)["kind"] == "demo"  # zit's own folder
    with pytest.raises(files.UserError, match="is a file, not a folder"):
        files.claim_folder(mine / "config.json", "demo")
    assert (mine / "config.json").read_text() == '{"my": "precious"}'
