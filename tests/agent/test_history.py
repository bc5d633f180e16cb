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
from zit_agent.backends.base import Embedder
from zit_agent.backends.embedders import HashEmbedder


class CountingEmbedder(Embedder):
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


# -- the judge's windows: right rows, flat cost ---------------------------------------------------
LAYOUTS = ("interleaved", "one idea newest", "other embedder newest")


def fill(store: HistoryStore, size: int, layout: str) -> None:
    """`size` images over 5 ideas with 4-float vectors. The layouts are the ones that made an
    unindexed window slow: ideas taking turns; all but the oldest 100 of idea 0 (the wider window
    of idea 0 lies behind them); all but the oldest 100 embedded only by another embedder."""
    old = 100

    def idea(i: int) -> str:
        return "idea 0" if layout == "one idea newest" and i >= old else f"idea {i % 5}"

    store.add_images([{"path": f"{i}.png", "content_hash": f"h{i}", "idea": idea(i)}
                      for i in range(size)])  # fmt: skip
    vectors = {f"h{i}": np.full(4, i, dtype=np.float32) for i in range(size)}
    if layout == "other embedder newest":
        store.put_embeddings("other", {h: v for h, v in vectors.items() if int(h[1:]) >= old})
        vectors = {h: v for h, v in vectors.items() if int(h[1:]) < old}
    store.put_embeddings("hash", vectors)


def brute_window(store: HistoryStore, limit: int, idea=None, other_than_idea=None) -> list[str]:
    """The window by its definition, from every row."""
    embedded = {h for h, e in store._db.execute("SELECT content_hash, embedder FROM embeddings")
                if e == "hash"}  # fmt: skip
    rows = [r for r in store.images() if r.content_hash in embedded
            and (idea is None or r.idea == idea)
            and (other_than_idea is None or r.idea != other_than_idea)]  # fmt: skip
    return [r.content_hash for r in rows[-limit:]]


def vm_steps(store: HistoryStore, read) -> int:
    """SQLite virtual-machine instructions `read()` runs: a cost that no machine noise moves."""
    steps = 0

    def count():
        nonlocal steps
        steps += 1

    store._db.set_progress_handler(count, 1)
    try:
        read()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def judge_reads(store: HistoryStore) -> None:
    store.recent_vectors("hash", limit=8, idea="idea 0")
    store.recent_vectors("hash", limit=32, other_than_idea="idea 0")
    store.recent_vectors("hash", limit=8)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_windows_hold_the_newest_rows_of_each_layout(tmp_path, layout):
    with HistoryStore(tmp_path / "h.sqlite") as store:
        fill(store, 600, layout)
        for window in ({"idea": "idea 0"}, {"other_than_idea": "idea 0"}, {"idea": "idea 3"},
                       {"other_than_idea": "idea 3"}, {}):  # fmt: skip
            vectors, rows = store.recent_vectors("hash", limit=12, **window)
            assert [r.content_hash for r in rows] == brute_window(store, 12, **window), window
            assert vectors[:, 0].tolist() == [float(r.content_hash[1:]) for r in rows]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_judging_costs_the_same_at_any_history_size(tmp_path, layout):
    """The judge's three reads run as many SQLite instructions at 10,000 stored images as at 200
    (an unindexed wider window ran 50x more here)."""
    steps = {}
    for size in (200, 10_000):
        with HistoryStore(tmp_path / f"{size}.sqlite") as store:
            fill(store, size, layout)
            steps[size] = vm_steps(store, lambda s=store: judge_reads(s))
    assert steps[10_000] <= 1.1 * steps[200], steps


def test_an_older_database_gets_its_windows_indexed(tmp_path):
    """A history written before the window index existed is indexed when it is opened."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    for i in range(6):
        db.execute("INSERT INTO images (path, content_hash, idea, created_at) VALUES (?, ?, ?, 0)",
                   (f"{i}.png", f"h{i}", "cat" if i % 2 else "dog"))  # fmt: skip
        db.execute("INSERT INTO embeddings VALUES (?, 'hash', 1, ?, 0)",
                   (f"h{i}", np.float32(i).tobytes()))  # fmt: skip
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with HistoryStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert [r.content_hash for r in store.recent_vectors("hash", limit=2, idea="cat")[1]] == [
            "h3", "h5"]  # fmt: skip
        _, others = store.recent_vectors("hash", limit=5, other_than_idea="cat")
        assert [r.content_hash for r in others] == ["h0", "h2", "h4"]


def test_an_image_seen_again_joins_the_windows_of_its_new_idea(tmp_path, db_path):
    """Vectors are stored per content: a known image recorded under another idea is in that
    idea's window at once, with nothing embedded again."""
    png = save_image(tmp_path / "a.png", 3)
    with HistoryStore(db_path) as store:
        first = store.add_image(png, idea="cat")
        store.put_embeddings("hash", {first.content_hash: np.ones(4, dtype=np.float32)})
        again = store.add_image(png, idea="dog")
        assert [r.id for r in store.recent_vectors("hash", limit=4, idea="dog")[1]] == [again.id]
        assert [r.id for r in store.recent_vectors("hash", limit=4, other_than_idea="dog")[1]] == [
            first.id]  # fmt: skip


class FailingEmbedder(CountingEmbedder):
    """Counts the images of each call and fails on the call numbered `fail_on`."""

    def __init__(self, fail_on: int | None = None):
        super().__init__()
        self.calls: list[int] = []
        self.fail_on = fail_on

    def embed(self, images):
        self.calls.append(len(images))
        if len(self.calls) == self.fail_on:
            raise RuntimeError("out of memory")
        return super().embed(images)


def test_embedding_runs_in_bounded_chunks_stored_as_they_go(tmp_path, db_path):
    from zit_agent.agent.history import EMBED_CHUNK

    count = 2 * EMBED_CHUNK + 3
    paths = [save_image(tmp_path / f"{i}.png", i) for i in range(count)]
    hashes = [file_hash(p) for p in paths]
    by_hash = dict(zip(hashes, paths, strict=True))
    embedder = FailingEmbedder(fail_on=2)
    with HistoryStore(db_path) as store:
        with pytest.raises(RuntimeError):
            store.embed_missing(hashes, embedder, load=lambda h: Image.open(by_hash[h]))
        assert embedder.calls == [EMBED_CHUNK, EMBED_CHUNK]
        kept = [h for h in hashes if store.embedding(h, embedder.name) is not None]
        assert kept == hashes[:EMBED_CHUNK]  # the first chunk survived the failure
        embedder = FailingEmbedder()
        assert (
            store.embed_missing(hashes, embedder, lambda h: Image.open(by_hash[h]))
            == count - EMBED_CHUNK
        )
        assert embedder.calls == [EMBED_CHUNK, 3]
