"""The image and rut history: one SQLite file (`settings.history_db`, under ZIT_HOME).

- `images`: every rendered (or checked) image: path, content hash, idea, sequence hash, seed and
  render settings.
- `embeddings`: one float32 vector per (image content hash, embedder): an image is embedded once
  per embedder, whatever path or idea it is seen under.
- `rut_events`: every rut report that was not `ok`, as JSON.

WAL mode, a busy timeout, and short `BEGIN IMMEDIATE` write transactions make it safe for two
processes (a CLI run and an agent session) writing at once. The schema grows only by appending to
`MIGRATIONS`; `PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from zit_agent.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.agent.ruts import RutReport
    from zit_agent.backends.base import Embedder
    from zit_agent.settings import Settings

BUSY_TIMEOUT_S = 30.0

# Append only: never edit or reorder a migration that has shipped.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            idea TEXT,
            sequence_hash TEXT,
            seed INTEGER,
            settings TEXT NOT NULL DEFAULT '{}',
            session TEXT,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX images_by_idea ON images (idea, id)",
        "CREATE INDEX images_by_hash ON images (content_hash)",
        """CREATE TABLE embeddings (
            content_hash TEXT NOT NULL,
            embedder TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (content_hash, embedder)
        )""",
        """CREATE TABLE rut_events (
            id INTEGER PRIMARY KEY,
            idea TEXT,
            session TEXT,
            embedder TEXT NOT NULL,
            verdict TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX rut_events_by_idea ON rut_events (idea, id)",
    ],
]


class ImageRow(BaseModel):
    id: int
    path: str
    content_hash: str
    idea: str | None = None
    sequence_hash: str | None = None
    seed: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    session: str | None = None
    created_at: float


class RutEvent(BaseModel):
    id: int
    idea: str | None
    session: str | None
    embedder: str
    verdict: str
    report: dict[str, Any]
    created_at: float


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes: the key embeddings are stored under."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_hash(image: Image.Image) -> str:
    """sha256 of an in-memory image's mode, size and pixels (for images not saved yet)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes creating the file at once can find it locked, and SQLite
    does not apply the busy timeout to a journal-mode change: retry until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class HistoryStore:
    """The history database. Open with `HistoryStore(path)` or `HistoryStore.open(settings)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (`_write`), so none stays open by accident.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; no fsync per commit
        except (OSError, sqlite3.Error) as err:
            raise UserError(
                f"cannot open the history database {self.path}: {err}",
                hint="check ZIT_HOME points at a writable directory",
            ) from None
        self._db.row_factory = sqlite3.Row
        self._migrate()

    @classmethod
    def open(cls, settings: Settings | None = None) -> HistoryStore:
        from zit_agent.settings import load_settings

        return cls((settings or load_settings()).history_db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the write lock is taken up front (no upgrade deadlocks)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        if self.schema_version == len(MIGRATIONS):
            return
        with self._write() as db:
            done = self.schema_version  # re-read under the lock: another process may have run them
            if done > len(MIGRATIONS):
                raise UserError(
                    f"history database {self.path} is from a newer zit (schema {done})",
                    hint="upgrade zit-agent or point ZIT_HOME elsewhere",
                )
            for statements in MIGRATIONS[done:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    # -- images ----------------------------------------------------------------------------------
    def add_image(
        self,
        path: str | Path,
        *,
        content_hash: str | None = None,
        idea: str | None = None,
        sequence_hash: str | None = None,
        seed: int | None = None,
        settings: dict[str, Any] | None = None,
        session: str | None = None,
    ) -> ImageRow:
        """Record an image; its content hash is computed from the file unless given."""
        row = {
            "path": str(path),
            "content_hash": content_hash or file_hash(path),
            "idea": idea,
            "sequence_hash": sequence_hash,
            "seed": seed,
            "settings": json.dumps(settings or {}, sort_keys=True),
            "session": session,
            "created_at": time.time(),
        }
        with self._write() as db:
            cursor = db.execute(
                f"INSERT INTO images ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        return ImageRow(id=cursor.lastrowid, **{**row, "settings": settings or {}})

    def images(
        self, *, idea: str | None = None, session: str | None = None, limit: int | None = None
    ) -> list[ImageRow]:
        """Images, oldest first; with `limit`, the newest `limit` of them."""
        where, args = _filters(idea=idea, session=session)
        sql = f"SELECT * FROM images {where} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._db.execute(sql, args).fetchall()
        return [_image_row(r) for r in reversed(rows)]

    def images_by_hash(self, content_hash: str) -> list[ImageRow]:
        """Every record of the image with these bytes, newest first."""
        rows = self._db.execute(
            "SELECT * FROM images WHERE content_hash = ? ORDER BY id DESC", (content_hash,)
        ).fetchall()
        return [_image_row(r) for r in rows]

    # -- embeddings ------------------------------------------------------------------------------
    def embedding(self, content_hash: str, embedder: str) -> np.ndarray | None:
        found = self._db.execute(
            "SELECT vector FROM embeddings WHERE content_hash = ? AND embedder = ?",
            (content_hash, embedder),
        ).fetchone()
        return None if found is None else np.frombuffer(found[0], dtype=np.float32)

    def put_embeddings(self, embedder: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors by content hash; an existing (hash, embedder) entry is kept as it is."""
        now = time.time()
        rows = [
            (h, embedder, int(v.size), np.asarray(v, dtype=np.float32).tobytes(), now)
            for h, v in vectors.items()
        ]
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO embeddings (content_hash, embedder, dim, vector, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def vectors(
        self,
        hashes: list[str],
        embedder: Embedder,
        load: Callable[[str], Image.Image],
    ) -> np.ndarray:
        """Vectors for `hashes` (in order): stored ones are reused, the rest are computed with
        `embedder` on `load(hash)` and stored."""
        known = self._stored(hashes, embedder.name)
        missing = list(dict.fromkeys(h for h in hashes if h not in known))
        if missing:
            computed = embedder.embed([load(h) for h in missing])
            fresh = dict(zip(missing, computed, strict=True))
            self.put_embeddings(embedder.name, fresh)
            known.update(fresh)
        if not hashes:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[h] for h in hashes]).astype(np.float32)

    def _stored(self, hashes: list[str], embedder: str) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):  # below SQLite's bound-parameter limit
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                "SELECT content_hash, vector FROM embeddings WHERE embedder = ? AND content_hash"
                f" IN ({', '.join('?' * len(chunk))})",
                [embedder, *chunk],
            ).fetchall()
            found.update((r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows)
        return found

    def recent_vectors(
        self,
        embedder: str,
        *,
        limit: int,
        idea: str | None = None,
        other_than_idea: str | None = None,
    ) -> tuple[np.ndarray, list[ImageRow]]:
        """The newest `limit` images that have a vector from `embedder` (of one idea, or of all
        ideas but one), oldest first: what a windowed rut check reads. Cost grows with `limit`,
        not with the history."""
        where, args = _filters(idea=idea, other_than_idea=other_than_idea, prefix="i.")
        where = f"{where} {'AND' if where else 'WHERE'} e.embedder = ?"
        rows = self._db.execute(
            f"SELECT i.*, e.vector FROM images i JOIN embeddings e "
            f"ON e.content_hash = i.content_hash {where} ORDER BY i.id DESC LIMIT ?",
            [*args, embedder, limit],
        ).fetchall()[::-1]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), []
        vectors = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
        return vectors, [_image_row(r) for r in rows]

    # -- rut events ------------------------------------------------------------------------------
    def add_rut_event(
        self, report: RutReport, *, idea: str | None = None, session: str | None = None
    ) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO rut_events (idea, session, embedder, verdict, report, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    idea,
                    session,
                    report.embedder,
                    report.verdict,
                    report.model_dump_json(),
                    time.time(),
                ),
            )
        return cursor.lastrowid

    def rut_events(self, *, idea: str | None = None, limit: int | None = None) -> list[RutEvent]:
        """Rut events, oldest first (the newest `limit` with a limit)."""
        where, args = _filters(idea=idea)
        sql = f"SELECT * FROM rut_events {where} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [
            RutEvent(**{**dict(r), "report": json.loads(r["report"])})
            for r in reversed(self._db.execute(sql, args).fetchall())
        ]


def _filters(
    *,
    idea: str | None = None,
    session: str | None = None,
    other_than_idea: str | None = None,
    prefix: str = "",
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, op, value in (
        ("idea", "=", idea),
        ("session", "=", session),
        ("idea", "IS NOT", other_than_idea),
    ):
        if value is not None:
            clauses.append(f"{prefix}{column} {op} ?")
            args.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def _image_row(row: sqlite3.Row) -> ImageRow:
    data = {k: row[k] for k in row.keys() if k != "vector"}  # noqa: SIM118 (sqlite3.Row)
    return ImageRow(**{**data, "settings": json.loads(data["settings"])})
