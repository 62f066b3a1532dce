"""SQLite access shared by both stores: WAL mode, reads per thread, group commit.

Reads run on one connection per thread and see committed data only.

Writes go through ``Database.write()``. Its body runs on the process's one
write connection, inside ``BEGIN IMMEDIATE``, so a read-check-write
sequence (D3's slot count) holds the write lock from its first read.
sqlite-utils table calls made inside nest as savepoints.

Group commit: a body that ends while other writers are queued does not
commit on its own. Its work stays in the open transaction (as a released
savepoint), the next writer's body runs after it, and the last writer of
the group commits once for all of them: one fsync instead of one per
writer. Each ``write()`` returns only after the COMMIT that made its work
durable, so nothing is acknowledged before it is on disk, and a body that
raises rolls back its own savepoint only. A body sees the work of the
bodies before it in its group, exactly as if they had committed one by
one: the writes stay serialized, only their fsyncs are shared.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from sqlite_utils.db import DEFAULT, NotFoundError, Table, quote_identifier

from keyslot_server.dburl import DatabaseUnavailable, is_postgres, redacted
from keyslot_server.files import private_database
from keyslot_server.observe import NOBODY, Observer

# A group commits after this many bodies even while writers keep queuing,
# so its first writer never waits on an unbounded stream of later ones.
MAX_GROUP = 32
# A body that ended without committing counted on a queued writer to do it.
# If that writer gave up, the one waiting commits the group itself after this.
_FLUSH_AFTER = 0.05


T = TypeVar("T")
__all__ = ["Database", "DatabaseUnavailable", "SqliteEngine", "unit"]

# Values sqlite3 binds as they are; anything else takes sqlite-utils' own path
# (which turns dicts and lists into JSON).
_PLAIN = frozenset({str, int, bool, float, bytes, type(None)})


class _Table(Table):
    """sqlite-utils' Table with one plain statement for a one-row insert, update
    or upsert of an existing table.

    sqlite-utils runs four to five statements for each of those (a view
    lookup, PRAGMA table_info, SELECT of the row, a savepoint pair) and spent
    about half the license service's CPU per grant call. The plain path keeps
    its semantics: INSERT fails on a taken key, update raises NotFoundError
    for a missing row, upsert leaves the columns it is not given alone. Any
    call with options, unknown columns or values needing conversion goes to
    sqlite-utils unchanged.
    """

    db: _SqliteUtils

    def insert(self, record: dict, **options: object) -> Table:  # type: ignore[override]
        if options or not self.db.plain(self.name, record):
            return super().insert(record, **options)  # type: ignore[arg-type]
        self.db.conn.execute(
            self.db.statement("insert", self.name, tuple(record)), [*record.values()]
        )
        return self

    def update(self, pk_values, updates=None, alter=False, conversions=None) -> Table:  # type: ignore[no-untyped-def,override]
        updates = updates or {}
        keys = pk_values if isinstance(pk_values, list | tuple) else [pk_values]
        plain = len(keys) == len(self.db.pks_of(self.name)) and self.db.plain(self.name, updates)
        if alter or conversions or not updates or not plain:
            return super().update(pk_values, updates, alter, conversions)
        sql = self.db.statement("update", self.name, tuple(updates))
        if self.db.conn.execute(sql, [*updates.values(), *keys]).rowcount != 1:
            raise NotFoundError
        return self

    def upsert(self, record: dict, pk=DEFAULT, **options: object) -> Table:  # type: ignore[no-untyped-def,override]
        pks = self.db.pks_of(self.name)
        wanted = pks if pk is DEFAULT else (tuple(pk) if isinstance(pk, list | tuple) else (pk,))
        if options or wanted != pks or not self.db.plain(self.name, record, keys=True):
            return super().upsert(record, pk=pk, **options)  # type: ignore[arg-type]
        sql = self.db.statement("upsert", self.name, tuple(record))
        self.db.conn.execute(sql, [*record.values()])
        return self


class _SqliteUtils(sqlite_utils.Database):
    """A sqlite-utils Database whose tables take the plain path (see _Table)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._shapes: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}  # columns, pks
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._fits: dict[tuple[str, tuple[str, ...], bool], bool] = {}  # plain(), by shape

    def table(self, table_name: str, **kwargs: object) -> Table:  # type: ignore[override]
        if kwargs or table_name not in self._shapes and not self._learn(table_name):
            return super().table(table_name, **kwargs)  # type: ignore[arg-type]
        return _Table(self, table_name)

    def __getitem__(self, table_name: str) -> Table:  # type: ignore[override]
        return self.table(table_name)

    def _learn(self, name: str) -> bool:
        """Remembers an existing table's columns and primary key (schemas are made at start)."""
        rows = self.conn.execute(
            "SELECT name, pk FROM pragma_table_info(?) WHERE ? NOT IN"
            " (SELECT name FROM sqlite_master WHERE type = 'view')",
            (name, name),
        ).fetchall()
        if not rows:
            return False
        pks = tuple(n for n, pk in sorted(rows, key=lambda r: r[1]) if pk)
        if not pks:
            return False  # rowid tables keep sqlite-utils' own handling
        self._shapes[name] = (frozenset(n for n, _ in rows), pks)
        return True

    def pks_of(self, table: str) -> tuple[str, ...]:
        shape = self._shapes.get(table)
        return shape[1] if shape else ()

    def plain(self, table: str, record: dict, keys: bool = False) -> bool:
        """Whether ``record`` fits the plain path: known columns (with the whole
        primary key if ``keys``), values sqlite3 binds as they are."""
        shape_key = (table, tuple(record), keys)
        fits = self._fits.get(shape_key)
        if fits is None:
            shape = self._shapes.get(table)
            fits = self._fits[shape_key] = (
                shape is not None
                and shape[0].issuperset(record)
                and (not keys or all(k in record for k in shape[1]))
            )
        return fits and all(type(v) in _PLAIN for v in record.values())

    def statement(self, op: str, table: str, columns: tuple[str, ...]) -> str:
        """The SQL of ``op`` on ``table`` for ``columns``, built once per shape."""
        key = (op, table, columns)
        sql = self._statements.get(key)
        if sql is None:
            sql = self._statements[key] = self._build(op, table, columns)
        return sql

    def _build(self, op: str, table: str, columns: tuple[str, ...]) -> str:
        pks = self._shapes[table][1]
        name, cols = quote_identifier(table), [quote_identifier(c) for c in columns]
        if op == "update":
            sets = ", ".join(f"{c} = ?" for c in cols)
            where = " AND ".join(f"{quote_identifier(k)} = ?" for k in pks)
            return f"UPDATE {name} SET {sets} WHERE {where}"
        insert = f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        if op == "insert":
            return insert
        keys = ", ".join(quote_identifier(k) for k in pks)
        sets = ", ".join(
            f"{c} = excluded.{c}" for c, raw in zip(cols, columns, strict=True) if raw not in pks
        )
        return f"{insert} ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")


class _Group:
    """The bodies that share one transaction on the write connection."""

    __slots__ = ("bodies", "done", "error")

    def __init__(self) -> None:
        self.bodies = 0
        self.done = False
        self.error: BaseException | None = None


class SqliteEngine:
    """A SQLite file: a read connection per thread and one write connection."""

    def __init__(
        self, path: str | Path, synchronous: str = "FULL", observer: Observer = NOBODY
    ) -> None:
        self.path = str(path)
        self.observer = observer  # told the size of each group commit
        if self.path != ":memory:":
            # Codes and credential hashes: 0600 in a 0700 directory (keyslot_server.files).
            private_database(self.path)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here instead of sleeping in SQLite's busy
        # handler (1-100 ms back-off per retry), which set the p99 under load.
        # busy_timeout still covers writers in other processes.
        self._write_lock = threading.Lock()
        self._writer: sqlite_utils.Database | None = None
        # Guards _queued and _group; notified when a group commits.
        self._state = threading.Condition()
        self._queued = 0  # threads waiting for _write_lock
        self._group: _Group | None = None  # the open transaction on the writer
        self.commits = 0  # COMMITs issued (read by tests: bodies per commit)
        self.bodies = 0  # write() bodies that committed
        # watch_changes(): (table, key) pairs the open transaction wrote, and who hears of them.
        self._changed: set[tuple[str, object]] = set()
        self._listeners: list[Callable[[set[tuple[str, object]]], None]] = []
        self._watched: dict[str, str] = {}  # table -> key column, for watch_changes()

    def _connect(self, reader: bool = False) -> sqlite_utils.Database:
        # isolation_level=None: we issue BEGIN ourselves (see write()).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        if reader and self._watched:  # see watch_changes()
            conn.execute("PRAGMA query_only=ON")
        with self._lock:
            self._all.append(conn)
        return _SqliteUtils(conn)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's sqlite-utils Database: the write connection inside ``write()``."""
        if self.in_write():
            assert self._writer is not None
            return self._writer
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect(reader=True)
        return db

    def in_write(self) -> bool:
        """Whether this thread is inside ``write()`` (its reads see uncommitted work)."""
        return bool(getattr(self._local, "writing", False))

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction holding the write lock from its first statement.

        Returns once the work is committed (possibly together with other
        writers' work, see the module doc); raises if the body or the
        COMMIT failed, and then none of the body's work is kept.
        """
        if self.in_write():  # nested use joins the outer write
            assert self._writer is not None
            yield self._writer
            return
        with self._state:
            self._queued += 1
        acquired = self._write_lock.acquire(timeout=30)
        with self._state:
            self._queued -= 1
        if not acquired:
            raise TimeoutError("database write lock not acquired in 30 s")
        callbacks: list[Callable[[], None]] = []
        try:
            # The first body of a group needs no savepoint: undoing it is a ROLLBACK.
            first = self._group is None
            group = self._join_group()
            conn = self._writer_conn()
            if not first:
                conn.execute("SAVEPOINT keyslot_write")
            self._local.writing = True
            self._local.after_commit = callbacks
            try:
                yield self._writer  # type: ignore[misc]
            except BaseException as exc:
                callbacks.clear()
                self._undo_body(conn, group, exc, first)
                raise
            else:
                if not first:
                    conn.execute("RELEASE keyslot_write")
                group.bodies += 1
            finally:
                self._local.writing = False
                self._local.after_commit = None
                if self._group is group and (self._queued == 0 or group.bodies >= MAX_GROUP):
                    self._commit(group)
        finally:
            self._write_lock.release()
        self._await_commit(group)
        # After the lock is released: a callback may wait (e.g. for cache acks).
        for callback in callbacks:
            callback()

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect()
            if self._watched:  # a new write connection (after close()) reports too
                self._install_triggers(self._writer.conn)
        return self._writer.conn

    def _join_group(self) -> _Group:
        """The open group, or a new one with its BEGIN IMMEDIATE (write lock held)."""
        if self._group is None:
            self._writer_conn().execute("BEGIN IMMEDIATE")
            self._group = _Group()
        return self._group

    def _undo_body(
        self, conn: sqlite3.Connection, group: _Group, exc: BaseException, first: bool
    ) -> None:
        """Rolls back a failed body's savepoint; the group's earlier bodies stay."""
        if first:  # alone in its group: the whole transaction is the body's
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._end_group(group, None)
            return
        if conn.in_transaction:
            conn.execute("ROLLBACK TO keyslot_write")
            conn.execute("RELEASE keyslot_write")
            return
        # SQLite undid the whole transaction (a RAISE(ROLLBACK) trigger, a full
        # disk): the earlier bodies of the group are lost with it, so they fail.
        self._end_group(group, exc)

    def _commit(self, group: _Group) -> None:
        """COMMITs the open group (write lock held) and wakes its bodies' threads."""
        conn = self._writer_conn()
        error: BaseException | None = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            error = exc
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        self.commits += 1
        if error is None:
            self.bodies += group.bodies
            self.observer.group_committed(group.bodies)
        self._end_group(group, error)

    def _end_group(self, group: _Group, error: BaseException | None) -> None:
        # Before any writer of the group is told it committed (write lock held).
        if self._changed:
            changed, self._changed = self._changed, set()
            for listener in self._listeners:
                listener(changed)
        with self._state:
            group.done, group.error = True, error
            if self._group is group:
                self._group = None
            self._state.notify_all()

    def _await_commit(self, group: _Group) -> None:
        """Blocks until ``group`` committed; raises if its COMMIT failed."""
        while True:
            with self._state:
                if not group.done:
                    self._state.wait(_FLUSH_AFTER)
                if group.done:
                    break
            # The writer this body counted on never came: commit the group here.
            with self._write_lock:
                if self._group is group:
                    self._commit(group)
        if group.error is not None:
            raise sqlite3.OperationalError(
                f"the write was not committed: {group.error}"
            ) from group.error

    def watch_changes(
        self, keys: dict[str, str], listener: Callable[[set[tuple[str, object]]], None]
    ) -> None:
        """Tells ``listener`` which rows each write transaction touched, once it ended.

        ``keys`` maps a table to the column that names its rows for the
        listener. TEMP triggers on the one write connection record every
        INSERT, UPDATE (old and new key) and DELETE, whichever code issued it,
        as ``(table, key)`` pairs. The listener runs with the write lock held,
        after the COMMIT and before any writer of the group returns; it must
        be quick and must not raise. It also runs after a rollback, where the
        pairs only over-report, so a cache fed by it errs on the safe side.

        From then on the per-thread read connections are query-only: a write
        that bypassed ``write()`` would also bypass the triggers, so it fails
        instead.
        """
        with self._write_lock:
            conn = self._writer_conn()
            self._watched.update(keys)  # from now on, new readers are query-only too
            with self._lock:
                readers = [c for c in self._all if c is not conn]
            for reader in readers:
                reader.execute("PRAGMA query_only=ON")
            self._install_triggers(conn)
            self._listeners.append(listener)

    def _install_triggers(self, conn: sqlite3.Connection) -> None:
        """watch_changes' function and triggers on a write connection (idempotent)."""
        conn.create_function("keyslot_changed", 2, self._record_change)
        # Rows an INSERT OR REPLACE deletes fire DELETE triggers only so.
        conn.execute("PRAGMA recursive_triggers=ON")
        for table, column in self._watched.items():
            for event, rows in (
                ("INSERT", ("NEW",)),
                ("UPDATE", ("OLD", "NEW")),
                ("DELETE", ("OLD",)),
            ):
                calls = ", ".join(f"keyslot_changed('{table}', {r}.{column})" for r in rows)
                conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS keyslot_changed_{table}_{event}"
                    f" AFTER {event} ON main.{table} BEGIN SELECT {calls}; END"
                )

    def _record_change(self, table: str, key: object) -> None:
        self._changed.add((table, key))

    def transact(self, body: Callable[[], T]) -> T:
        """``body()`` as one unit of work: joins an open ``write()``, else runs in its own.

        SQLite's write lock is taken at BEGIN IMMEDIATE, so a unit never
        meets a serialization failure here and is never re-run.
        """
        with self.write():
            return body()

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

    def send(
        self,
        sql: str,
        params: tuple | dict = (),  # type: ignore[type-arg]
        *,
        one_row: Callable[[], Exception] | None = None,
    ) -> None:
        """A write whose answer the caller does not read (see ``Database.send``)."""
        cur = self.conn.execute(sql, params)
        if one_row is not None and cur.rowcount != 1:
            raise one_row()

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
        self._writer = None


class Database:
    """A store's database: a SQLite file (the default) or a PostgreSQL URL.

    Stores subclass it and see one API whatever the engine: ``write()`` for a
    transaction (nested uses join the outer one), ``transact(body)`` or the
    ``@unit`` decorator for a unit of work (re-run whole on a serialization
    failure on PostgreSQL; on SQLite, where BEGIN IMMEDIATE serializes
    writers, it never is), ``db``/``conn`` for this thread's connection,
    ``query``/``one``, ``on_commit`` and ``watch_changes``. SQL is written
    once, in SQLite's spelling (``?`` parameters); the PostgreSQL engine
    translates it (keyslot_server.pg), and the few statements that cannot be
    portable ask ``self.postgres``.
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "FULL",
        observer: Observer = NOBODY,
        *,
        units: int = 1,
    ) -> None:
        target = str(path)
        self.postgres = is_postgres(target)
        if self.postgres:
            from keyslot_server.pg import PostgresEngine  # psycopg loads only when used

            self.engine: Any = PostgresEngine(target, observer, units=units)
        else:
            self.engine = SqliteEngine(target, synchronous, observer)

    def __getattr__(self, name: str) -> Any:
        # The engine's own attributes (path, commits, ...), read through the store.
        if name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    @property
    def db(self) -> Any:
        """This thread's connection (a sqlite-utils-like Database): the unit's inside one."""
        return self.engine.db

    @property
    def conn(self) -> Any:
        return self.engine.db.conn

    @property
    def name(self) -> str:
        """The database for messages and logs (a URL's password redacted)."""
        return redacted(self.engine.path)

    def write(self) -> Any:
        return self.engine.write()

    def transact(self, body: Callable[[], T]) -> T:
        return self.engine.transact(body)  # type: ignore[no-any-return]

    def in_write(self) -> bool:
        return self.engine.in_write()  # type: ignore[no-any-return]

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.engine.on_commit(callback)

    def watch_changes(
        self, keys: dict[str, str], listener: Callable[[set[tuple[str, object]]], None]
    ) -> None:
        self.engine.watch_changes(keys, listener)

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:  # type: ignore[type-arg]
        return self.engine.query(sql, params)  # type: ignore[no-any-return]

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:  # type: ignore[type-arg]
        return self.engine.one(sql, params)  # type: ignore[no-any-return]

    def send(
        self,
        sql: str,
        params: tuple | dict = (),  # type: ignore[type-arg]
        *,
        one_row: Callable[[], Exception] | None = None,
    ) -> None:
        """Runs a write whose answer the caller does not read. On SQLite at once; on
        PostgreSQL, inside a unit, it goes in one round trip with the unit's next
        statement that is read, or with its COMMIT. ``one_row``: the statement must
        change exactly one row, else that error is raised (at the latest before the
        COMMIT) and the unit rolls back. Either way its error fails the unit."""
        self.engine.send(sql, params, one_row=one_row)

    def close(self) -> None:
        self.engine.close()


def unit(method: Callable[..., T]) -> Callable[..., T]:
    """Runs the decorated method as one unit of work (``Database.transact``).

    For a method of a store, or of an object whose ``store`` (or ``db``) is one. Called
    inside another unit it joins it; outermost, it may run more than once
    on PostgreSQL, so its body makes no remote call and keeps no effect
    outside the database that a second run would repeat.
    """
    import functools

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> T:
        database = self if isinstance(self, Database) else getattr(self, "store", None) or self.db
        return database.transact(lambda: method(self, *args, **kwargs))

    return run
