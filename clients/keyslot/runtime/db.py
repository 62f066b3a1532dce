"""SQLite access shared by both stores: one connection per thread, WAL mode.

Writes go through ``Database.write()``, which opens ``BEGIN IMMEDIATE`` so a
read-check-write sequence (D3's slot count) holds the write lock from the
first read. sqlite-utils table calls made inside nest as savepoints.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils


class Database:
    """A SQLite file opened per thread with the settings every store wants."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here instead of sleeping in SQLite's busy
        # handler (1-100 ms back-off per retry), which set the p99 under load.
        # busy_timeout still covers writers in other processes.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite_utils.Database:
        # isolation_level=None: we issue BEGIN ourselves (see write()).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._all.append(conn)
        return sqlite_utils.Database(conn)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's sqlite-utils Database."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction holding the write lock from its first statement."""
        conn = self.conn
        if conn.in_transaction:  # nested use joins the outer transaction
            yield self.db
            return
        if not self._write_lock.acquire(timeout=30):
            raise TimeoutError("database write lock not acquired in 30 s")
        callbacks: list[Callable[[], None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._local.after_commit = callbacks
            try:
                yield self.db
            except BaseException:
                callbacks.clear()
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            self._local.after_commit = None
            self._write_lock.release()
        # After the lock is released: a callback may wait (e.g. for cache acks).
        for callback in callbacks:
            callback()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` once the current ``write()`` commits; never after a rollback.

        Outside a ``write()`` it runs at once (the change is already committed).
        """
        pending = getattr(self._local, "after_commit", None)
        if pending is None:
            callback()
        else:
            pending.append(callback)

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:  # type: ignore[type-arg]
        """Rows as dicts."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:  # type: ignore[type-arg]
        """The first row as a dict, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def journal_mode(self) -> str:
        return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
