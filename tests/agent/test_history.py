"""The history store: it keeps what it was given, embeds each image once, and survives two
writers at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from zit_agent.agent.history import MIGRATIONS, HistoryStore, file_hash, image_hash
from zit_agent.agent.ruts import judge, thresholds_for
from zit_agent.backends.embedders import HashEmbedder


class CountingEmbedder:
    """A fake wrapper that counts the images the real hash embedder is asked to embed."""

    def __init__(self):
        self.inner = HashEmbedder()
        self.name = self.inner.name
        self.embedded = 0

    def embed(self, images):
        self.embedded += len(images)
        return self.inner.embed(images)


def save_image(path, shade: int):
    Image.new("RGB", (32, 32), (shade, 255 - shade, 90)).save(path)
    return path


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "history.sqlite"


def test_reopening_keeps_images_embeddings_and_events(tmp_path, db_path):
    png = save_image(tmp_path / "a.png", 10)
    vector = np.arange(4, dtype=np.float32)
    with HistoryStore(db_path) as store:
        row = store.add_image(png, idea="a cat", seed=7, settings={"steps": 8}, session="s1")
        store.put_embeddings("hash", {row.content_hash: vector})
        report = judge(np.eye(2), embedder="hash", thresholds=thresholds_for("hash"))
        store.add_rut_event(report, idea="a cat", session="s1")

    with HistoryStore(db_path) as store:
        [again] = store.images()
        assert again == row and again.settings == {"steps": 8}
        np.testing.assert_array_equal(store.embedding(row.content_hash, "hash"), vector)
        assert store.embedding(row.content_hash, "other") is None
        [event] = store.rut_events(idea="a cat")
        assert event.verdict == "ok" and event.report["embedder"] == "hash"
        assert store.schema_version == len(MIGRATIONS)


def test_embeddings_are_computed_once_per_content(tmp_path, db_path):
    paths = [save_image(tmp_path / f"{i}.png", 40 * i) for i in range(3)]
    copy = tmp_path / "copy.png"
    copy.write_bytes(paths[0].read_bytes())  # same content, another path
    embedder = CountingEmbedder()
    with HistoryStore(db_path) as store:
        rows = [store.add_image(p) for p in [*paths, copy]]
        hashes = [r.content_hash for r in rows]
        by_hash = {r.content_hash: r.path for r in rows}
        first = store.vectors(hashes, embedder, load=lambda h: Image.open(by_hash[h]))
        assert embedder.embedded == 3 and first.shape == (4, HashEmbedder().dim)
    with HistoryStore(db_path) as store:
        second = store.vectors(hashes, embedder, load=lambda h: Image.open(by_hash[h]))
    assert embedder.embedded == 3
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[0], first[3])


def test_recent_vectors_read_only_the_window(tmp_path, db_path):
    with HistoryStore(db_path) as store:
        for i in range(10):
            row = store.add_image(
                tmp_path / f"{i}.png", content_hash=f"h{i}", idea="cat" if i % 2 else "dog"
            )
            store.put_embeddings("hash", {row.content_hash: np.full(3, i, dtype=np.float32)})
        vectors, rows = store.recent_vectors("hash", limit=3, idea="cat")
        assert [r.content_hash for r in rows] == ["h5", "h7", "h9"]  # newest last
        assert vectors[:, 0].tolist() == [5.0, 7.0, 9.0]
        _, others = store.recent_vectors("hash", limit=2, other_than_idea="cat")
        assert [r.idea for r in others] == ["dog", "dog"]
        assert store.recent_vectors("other", limit=5)[1] == []
        assert [r.content_hash for r in store.images(limit=2)] == ["h8", "h9"]


def test_content_hashes():
    a, b = Image.new("RGB", (8, 8), (1, 2, 3)), Image.new("RGB", (8, 8), (1, 2, 4))
    assert image_hash(a) == image_hash(a.copy()) != image_hash(b)


def test_migrations_run_once_and_newer_databases_are_refused(db_path):
    HistoryStore(db_path).close()
    HistoryStore(db_path).close()  # a second open does not re-run the migrations
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    from zit_agent.errors import UserError

    with pytest.raises(UserError, match="newer zit"):
        HistoryStore(db_path)


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.ruts import judge, thresholds_for

    path, name = sys.argv[1], sys.argv[2]
    report = judge(np.eye(2), embedder="hash", thresholds=thresholds_for("hash"))
    store = HistoryStore(path)
    for i in range(150):
        row = store.add_image(f"{name}-{i}.png", content_hash=f"{name}-{i}", idea=name, seed=i)
        store.put_embeddings("hash", {row.content_hash: np.full(8, i, dtype=np.float32)})
        if i % 10 == 0:
            store.add_rut_event(report, idea=name)
    store.close()
    """
)


def test_two_writer_processes_do_not_corrupt_it(db_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), name], stderr=subprocess.PIPE)
        for name in ("left", "right")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with HistoryStore(db_path) as store:
        for name in ("left", "right"):
            rows = store.images(idea=name)
            assert [r.seed for r in rows] == list(range(150))
            assert len(store.rut_events(idea=name)) == 15
            assert store.embedding(f"{name}-149", "hash").tolist() == [149.0] * 8
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 300


def test_file_hash_is_the_content(tmp_path):
    a = save_image(tmp_path / "a.png", 1)
    (tmp_path / "b.png").write_bytes(a.read_bytes())
    assert file_hash(a) == file_hash(tmp_path / "b.png")
