"""The image and rut history: one SQLite file (`settings.history_db`, under ZIT_HOME).

- `images`: every rendered (or checked) image: path, content hash, idea, sequence hash, seed and
  render settings.
- `embeddings`: one float32 vector per (image content hash, embedder): an image is embedded once
  per embedder, whatever path or idea it is seen under.
- `rut_events`: every rut report that was not `ok`, as JSON.
- `observations`: one analyzer's observation of an image (faces, boxes, descriptors) as JSON, per
  (content hash, analyzer): an image is analysed once per analyzer, like embeddings.

WAL mode, a busy timeout, and short `BEGIN IMMEDIATE` write transactions make it safe for two
processes (a CLI run and an agent session) writing at once. The schema grows only by appending to
`MIGRATIONS`; `PRAGMA user_version` records how many have run.
"""

from __future__ import annotations

import functools
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
    from zit_agent.backends.analyzers import Analyzer, Observation
    from zit_agent.backends.base import Embedder
    from zit_agent.settings import Settings

BUSY_TIMEOUT_S = 30.0
# Images decoded at once when embedding: 16 RGB images of 1024x1024 hold 48 MB of pixels.
EMBED_CHUNK = 16
# The wider window first looks among the newest SCAN_FACTOR times its size (history.py, below).
SCAN_FACTOR = 4

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
    # The judge's windows, indexed per embedder: `image_vectors` lists the images that have a
    # vector from an embedder (idea '' for none), `idea_latest` each idea's newest such image.
    # Triggers keep both in step with `images` and `embeddings`, whoever writes them.
    [
        """CREATE TABLE image_vectors (
            embedder TEXT NOT NULL,
            image_id INTEGER NOT NULL,
            idea TEXT NOT NULL,
            PRIMARY KEY (embedder, image_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX image_vectors_by_idea ON image_vectors (embedder, idea, image_id)",
        """CREATE TABLE idea_latest (
            embedder TEXT NOT NULL,
            idea TEXT NOT NULL,
            image_id INTEGER NOT NULL,
            PRIMARY KEY (embedder, idea)
        ) WITHOUT ROWID""",
        "CREATE INDEX idea_latest_by_image ON idea_latest (embedder, image_id)",
        """CREATE TRIGGER idea_latest_on_vector AFTER INSERT ON image_vectors BEGIN
            INSERT INTO idea_latest (embedder, idea, image_id)
            VALUES (NEW.embedder, NEW.idea, NEW.image_id)
            ON CONFLICT (embedder, idea) DO UPDATE SET image_id = max(image_id, excluded.image_id);
        END""",
        """CREATE TRIGGER image_vectors_on_embedding AFTER INSERT ON embeddings BEGIN
            INSERT OR IGNORE INTO image_vectors (embedder, image_id, idea)
            SELECT NEW.embedder, id, ifnull(idea, '') FROM images
            WHERE content_hash = NEW.content_hash;
        END""",
        """CREATE TRIGGER image_vectors_on_image AFTER INSERT ON images BEGIN
            INSERT OR IGNORE INTO image_vectors (embedder, image_id, idea)
            SELECT embedder, NEW.id, ifnull(NEW.idea, '') FROM embeddings
            WHERE content_hash = NEW.content_hash;
        END""",
        """INSERT OR IGNORE INTO image_vectors (embedder, image_id, idea)
            SELECT e.embedder, i.id, ifnull(i.idea, '') FROM images i
            JOIN embeddings e ON e.content_hash = i.content_hash""",
    ],
    # Analyzer observations (faces and what is derived from them), JSON per content hash.
    [
        """CREATE TABLE observations (
            content_hash TEXT NOT NULL,
            analyzer TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (content_hash, analyzer)
        )""",
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


def table_columns(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Each table of a database and its column names."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: {col[1] for col in db.execute(f'PRAGMA table_info("{name}")')} for name in names}


def schema_fault(db: sqlite3.Connection, expected: dict[str, set[str]]) -> str | None:
    """What a database lacks of the tables and columns zit writes (None: nothing): a foreign
    database with tables of the same names, or one whose tables were dropped."""
    found = table_columns(db)
    for table, columns in sorted(expected.items()):
        if table not in found:
            return f"it has no {table} table"
        if lacking := columns - found[table]:
            return f"its {table} table lacks {', '.join(sorted(lacking))}"
    return None


_CHECKED: set[tuple[str, int]] = set()


def integrity_fault(db: sqlite3.Connection, path: Path) -> str | None:
    """SQLite's `quick_check` of a database file, once per process and file version (a few
    milliseconds a megabyte): scrambled pages are named here, with the file, instead of failing
    some later query."""
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key in _CHECKED:
        return None
    rows = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    if rows != ["ok"]:
        return f"damaged pages ({'; '.join(map(str, rows))[:120]})"
    _CHECKED.add(key)
    return None


@functools.cache
def _history_schema() -> dict[str, set[str]]:
    db = sqlite3.connect(":memory:")
    try:
        for statements in MIGRATIONS:
            for statement in statements:
                db.execute(statement)
        return table_columns(db)
    finally:
        db.close()


DAMAGED_HISTORY = (
    "move it aside (the images stay; their history and cached embeddings are lost) "
    "or point ZIT_HOME elsewhere"
)


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
        on_disk = self.path.name != ":memory:"
        try:
            if on_disk and (damaged := integrity_fault(self._db, self.path)):
                raise UserError(
                    f"the history database {self.path} is damaged: {damaged}",
                    hint=DAMAGED_HISTORY,
                )
            self._migrate()
            fault = schema_fault(self._db, _history_schema()) if on_disk else None
        except sqlite3.DatabaseError as err:  # scrambled pages, a foreign schema
            self._db.close()
            raise UserError(
                f"the history database {self.path} is damaged: {err}", hint=DAMAGED_HISTORY
            ) from None
        except UserError:
            self._db.close()
            raise
        if fault:
            self._db.close()
            raise UserError(
                f"the history database {self.path} is not zit's: {fault}", hint=DAMAGED_HISTORY
            )

    @classmethod
    def in_memory(cls) -> HistoryStore:
        """A store of one run's own, gone when closed (an eval job judges its images alone)."""
        return cls(":memory:")

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
            if done == 0 and (tables := sorted(table_columns(db))):
                raise UserError(
                    f"the history database {self.path} is not zit's: it holds tables zit did "
                    f"not make ({', '.join(tables[:5])})",
                    hint=DAMAGED_HISTORY,
                )
            if done < 0:
                raise UserError(
                    f"the history database {self.path} has a schema version of {done}",
                    hint=DAMAGED_HISTORY,
                )
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
        fields = {"content_hash": content_hash, "idea": idea, "sequence_hash": sequence_hash}
        fields |= {"seed": seed, "settings": settings, "session": session}
        return self.add_images([{"path": path, **fields}])[0]

    def add_images(self, images: list[dict[str, Any]]) -> list[ImageRow]:
        """Record many images in one transaction; each dict holds `add_image`'s arguments."""
        rows = [_new_image_row(image) for image in images]
        found = []
        with self._write() as db:
            for image, row in zip(images, rows, strict=True):
                cursor = db.execute(
                    f"INSERT INTO images ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
                settings = image.get("settings") or {}
                found.append(ImageRow(id=cursor.lastrowid, **{**row, "settings": settings}))
        return found

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
        `embedder` on `load(hash)` and stored (see `embed_missing`)."""
        self.embed_missing(hashes, embedder, load)
        if not hashes:
            return np.zeros((0, 0), dtype=np.float32)
        known = self._stored(hashes, embedder.name)
        return np.stack([known[h] for h in hashes]).astype(np.float32)

    def embed_missing(
        self,
        hashes: list[str],
        embedder: Embedder,
        load: Callable[[str], Image.Image],
    ) -> int:
        """Embed and store the images of `hashes` that have no vector from `embedder` yet, in
        chunks of EMBED_CHUNK: at most that many images are decoded at once, and each chunk is
        stored before the next is loaded (an interrupted run keeps what it embedded). Returns how
        many were embedded."""
        known = self._stored_hashes(hashes, embedder.name)
        missing = list(dict.fromkeys(h for h in hashes if h not in known))
        for start in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[start : start + EMBED_CHUNK]
            computed = embedder.embed([load(h) for h in chunk])
            self.put_embeddings(embedder.name, dict(zip(chunk, computed, strict=True)))
        return len(missing)

    def _stored(self, hashes: list[str], embedder: str) -> dict[str, np.ndarray]:
        return {
            h: np.frombuffer(v, dtype=np.float32)
            for h, v in self._by_hash(hashes, embedder, "content_hash, vector")
        }

    def _stored_hashes(self, hashes: list[str], embedder: str) -> set[str]:
        return {h for (h,) in self._by_hash(hashes, embedder, "content_hash")}

    def _by_hash(self, hashes: list[str], embedder: str, columns: str) -> Iterator[sqlite3.Row]:
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):  # below SQLite's bound-parameter limit
            chunk = unique[start : start + 500]
            yield from self._db.execute(
                f"SELECT {columns} FROM embeddings WHERE embedder = ? AND content_hash"
                f" IN ({', '.join('?' * len(chunk))})",
                [embedder, *chunk],
            )

    def recent_vectors(
        self,
        embedder: str,
        *,
        limit: int,
        idea: str | None = None,
        other_than_idea: str | None = None,
    ) -> tuple[np.ndarray, list[ImageRow]]:
        """The newest `limit` images that have a vector from `embedder` (of one idea, or of all
        ideas but one), oldest first: what a windowed rut check reads. Every window is read from
        an index, so the cost grows with `limit`, never with the history (whatever its layout)."""
        if idea is not None and other_than_idea is not None:
            raise ValueError("give idea or other_than_idea, not both")
        if other_than_idea is not None:
            ids = self._newest_of_other_ideas(embedder, other_than_idea, limit)
        else:
            ids = self._newest(embedder, limit, idea)
        rows = self._db.execute(
            "SELECT i.*, e.vector FROM images i JOIN embeddings e ON e.content_hash = "
            "i.content_hash AND e.embedder = ? WHERE i.id IN (SELECT value FROM json_each(?)) "
            "ORDER BY i.id",
            (embedder, json.dumps(ids)),
        ).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), []
        vectors = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
        return vectors, [_image_row(r) for r in rows]

    def _newest(self, embedder: str, limit: int, idea: str | None = None) -> list[int]:
        where = "embedder = ?" + (" AND idea = ?" if idea is not None else "")
        return self._ids(
            f"SELECT image_id FROM image_vectors WHERE {where} ORDER BY image_id DESC LIMIT ?",
            [embedder, *([] if idea is None else [idea]), limit],
        )

    def _newest_of_other_ideas(self, embedder: str, idea: str, limit: int) -> list[int]:
        """The ids of the newest `limit` images of ideas other than `idea`.

        Most often they lie among the newest few images: the newest `SCAN_FACTOR * limit` are
        read first. When `idea` fills those, the images sought belong to at most `limit` ideas,
        the ones whose own newest images are the newest, and none is older than the newest image
        of the `limit`-th of those ideas. So at most `limit` images of each of at most `limit`
        ideas are read, however many rows of `idea` (or of other embedders) lie in between."""
        near = self._ids(
            "SELECT image_id FROM (SELECT image_id, idea FROM image_vectors WHERE embedder = ? "
            "ORDER BY image_id DESC LIMIT ?) WHERE idea != ? LIMIT ?",
            [embedder, SCAN_FACTOR * limit, idea, limit],
        )
        if len(near) == limit:
            return near
        ideas = self._db.execute(
            "SELECT idea, image_id FROM idea_latest WHERE embedder = ? AND idea != ? "
            "ORDER BY image_id DESC LIMIT ?",
            (embedder, idea, limit),
        ).fetchall()
        if not ideas:
            return []
        oldest = ideas[-1]["image_id"] if len(ideas) == limit else 0
        one = (
            "SELECT * FROM (SELECT image_id FROM image_vectors WHERE embedder = ? AND idea = ? "
            "AND image_id >= ? ORDER BY image_id DESC LIMIT ?)"
        )
        union = " UNION ALL ".join([one] * len(ideas))
        args = [v for row in ideas for v in (embedder, row["idea"], oldest, limit)]
        return self._ids(f"{union} ORDER BY image_id DESC LIMIT ?", [*args, limit])

    def _ids(self, sql: str, args: list[Any]) -> list[int]:
        return [row[0] for row in self._db.execute(sql, args)]

    # -- observations ----------------------------------------------------------------------------
    def observations(
        self,
        hashes: list[str],
        analyzer: Analyzer,
        load: Callable[[str], Image.Image],
    ) -> list[Observation]:
        """The analyzer's observations of the images of `hashes` (in order): stored ones are
        reused, the rest computed on `load(hash)` in chunks of EMBED_CHUNK, each chunk stored
        before the next is loaded."""
        from zit_agent.backends.analyzers import Observation

        known = self._observed(hashes, analyzer.name)
        missing = list(dict.fromkeys(h for h in hashes if h not in known))
        for start in range(0, len(missing), EMBED_CHUNK):
            chunk = missing[start : start + EMBED_CHUNK]
            found = analyzer.analyze([load(h) for h in chunk])
            now = time.time()
            rows = [
                (h, analyzer.name, o.model_dump_json(), now)
                for h, o in zip(chunk, found, strict=True)
            ]
            with self._write() as db:
                db.executemany(
                    "INSERT OR IGNORE INTO observations (content_hash, analyzer, data, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
            known.update({row[0]: row[2] for row in rows})
        return [Observation.model_validate_json(known[h]) for h in hashes]

    def stored_observations(self, hashes: list[str], analyzer: str) -> dict[str, Observation]:
        """The observations already stored for `hashes` (nothing is computed), by hash."""
        from zit_agent.backends.analyzers import Observation

        return {
            h: Observation.model_validate_json(data)
            for h, data in self._observed(hashes, analyzer).items()
        }

    def _observed(self, hashes: list[str], analyzer: str) -> dict[str, str]:
        unique, found = list(dict.fromkeys(hashes)), {}
        for start in range(0, len(unique), 500):  # below SQLite's bound-parameter limit
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                "SELECT content_hash, data FROM observations WHERE analyzer = ? AND "
                f"content_hash IN ({', '.join('?' * len(chunk))})",
                [analyzer, *chunk],
            )
            found.update({row[0]: row[1] for row in rows})
        return found

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


def _filters(*, idea: str | None = None, session: str | None = None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, value in (("idea", idea), ("session", session)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


NEW_IMAGE_KEYS = {"path", "content_hash", "idea", "sequence_hash", "seed", "settings", "session"}


def _new_image_row(image: dict[str, Any]) -> dict[str, Any]:
    """The `images` row of an `add_image` argument dict (settings as JSON text)."""
    if unknown := set(image) - NEW_IMAGE_KEYS:
        raise TypeError(f"unknown image fields {sorted(unknown)}")
    return {
        "path": str(image["path"]),
        "content_hash": image.get("content_hash") or file_hash(image["path"]),
        "idea": image.get("idea"),
        "sequence_hash": image.get("sequence_hash"),
        "seed": image.get("seed"),
        "settings": json.dumps(image.get("settings") or {}, sort_keys=True),
        "session": image.get("session"),
        "created_at": time.time(),
    }


def _image_row(row: sqlite3.Row) -> ImageRow:
    data = {k: row[k] for k in row.keys() if k != "vector"}  # noqa: SIM118 (sqlite3.Row)
    return ImageRow(**{**data, "settings": json.loads(data["settings"])})
