"""The PostgreSQL engine behind ``Database`` (keyslot_server.db): psycopg 3, no ORM.

Connections: one per thread, opened on first use and kept (the gRPC worker
pool is bounded, so the count is too), in autocommit mode with
``default_transaction_read_only`` on. A read outside a unit is one
statement with its own snapshot, as on SQLite; a write can only happen
inside ``write()``, which opens ``BEGIN ISOLATION LEVEL SERIALIZABLE READ
WRITE`` on the thread's connection. Reads inside the unit run on the same
connection and see its work.

Units of work: ``transact(body)`` runs ``body`` in one SERIALIZABLE
transaction and, when PostgreSQL reports a serialization failure (40001)
or a deadlock (40P01), rolls back and runs it again, with a short random
back-off, up to ``MAX_ATTEMPTS`` times. Under SERIALIZABLE every
read-check-write (D3's slot count, L-rule read-modify-writes, H1's
claim-by-unique-key) either commits as if the units ran one at a time or
fails and is re-run, so the stores keep their SQLite code: no row locks,
no advisory locks, no LISTEN/NOTIFY. A unit that joins an outer one is not
re-run on its own; the outermost is. ``on_commit`` callbacks of an attempt
that is rolled back are dropped; they run once, after the final COMMIT.
Commits are durable: ``synchronous_commit`` is on for every session.

Concurrency: SERIALIZABLE is what keeps the data right, whatever runs at
once; how many units one process runs at once is a matter of speed
(``--db-units``, 1 by default, waiting at most ``GATE_TIMEOUT``). On the
bench's tables (hundreds to thousands of rows, so every index is a few
pages) PostgreSQL's predicate locks are page-grained, and 16 units at once
made unrelated activations conflict: 7.7 re-runs per ActivateDevice and
61/s; one at a time, 0 re-runs and 97/s (tests/bench, same machine). A
process then queues its writers as the SQLite engine does; replicas of a
service still run their units concurrently, and conflict only with each
other. The gate is taken after any wait of the body's caller and released
before the callbacks run, so a callback that waits (a feed's acks) never
holds it.

SQL: the stores write SQLite's spelling. ``translate`` turns ``?`` and
``:name`` parameters into psycopg's, doubles a literal ``%``, and drops
SQLite's index hints (``INDEXED BY``, ``NOT INDEXED``), once per statement
text. Tables whose rows need an insertion order have a ``rowid`` identity
column on PostgreSQL (SQLite's implicit one elsewhere); like SQLite's it
is left out of ``SELECT *`` results unless the statement names it.

Round trips: a statement costs a round trip to the server (about 125 us of
this process's CPU on the bench machine, most of it system time), so a unit
sends what it can together, through psycopg's pipeline mode. BEGIN goes
with the unit's first statement. A write whose answer the caller does not
read (``Database.send``; the one-row insert and update of ``db[table]``)
is queued and goes with the next statement that is read, or with the
COMMIT; it is still inside the unit, so its failure (a taken key, a
serialization failure) fails the whole unit, which is rolled back or
re-run. A queued write that must change exactly one row (``one_row``) is
checked by the server (a division by zero when it did not), so the check
stops the COMMIT queued after it without a round trip of its own. Server-
side prepared statements are off (see ``connect``).

Exact caches: ``watch_changes`` installs AFTER ROW triggers that append the
changed keys to a transaction-local setting (``keyslot.changed``); the unit
reads it just before COMMIT and tells the listeners after the COMMIT
succeeded. An attempt that rolls back reports nothing.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from sqlite_utils.db import NotFoundError

from keyslot_server.dburl import DatabaseUnavailable, redacted
from keyslot_server.observe import NOBODY, Observer

T = TypeVar("T")

# Serialization failures and deadlocks: the unit is rolled back whole, and re-run.
RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
MAX_ATTEMPTS = 100
_FIRST_BACKOFF = 0.001  # seconds; doubles per attempt up to _MAX_BACKOFF, randomized
_MAX_BACKOFF = 0.1
# Session settings. lock_timeout: a unit waiting this long on a row lock gives up
# (DatabaseUnavailable) instead of holding a worker thread for ever.
SESSION = {
    "default_transaction_read_only": "on",
    "synchronous_commit": "on",
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "60s",
}
GATE_TIMEOUT = 30.0
# Set KEYSLOT_DB_STRICT_UNITS=1 (the tests do) to refuse a write() that is not
# inside a unit of work: such a write cannot be re-run after a serialization failure.
STRICT_UNITS_ENV = "KEYSLOT_DB_STRICT_UNITS"

log = logging.getLogger("keyslot.db")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HINTS = re.compile(r"\s+(?:INDEXED\s+BY\s+\w+|NOT\s+INDEXED\b)", re.IGNORECASE)
_ROWID = re.compile(r"\browid\b", re.IGNORECASE)


def translate(sql: str) -> str:
    """SQLite-spelled SQL as psycopg takes it (module doc)."""
    # A JSON array parameter as a table of its elements (as text; the SQL casts them).
    sql = sql.replace("json_each(?)", "json_array_elements_text(CAST(? AS json))")
    out: list[str] = []
    quote = ""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if quote:
            out.append("%%" if c == "%" else c)  # psycopg reads % inside literals too
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            out.append(c)
        elif c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        elif c == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            if i and sql[i - 1] == ":":  # a PostgreSQL cast (::type), kept
                out.append(c)
            else:
                match = _NAME.match(sql, i + 1)
                assert match is not None
                out.append(f"%({match.group()})s")
                i = match.end()
                continue
        else:
            out.append(c)
        i += 1
    return _HINTS.sub("", "".join(out))


class _NumericLoader(Loader):
    """NUMERIC results (SUM of BIGINT) as int when whole, as on SQLite."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        return int(text) if "." not in text and "e" not in text.lower() else float(text)


def _param(value: Any) -> Any:
    # SQLite keeps booleans as 0/1 in INTEGER columns; the PostgreSQL schema does too.
    if value is True or value is False:
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _params(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: _param(v) for k, v in params.items()}
    return [_param(v) for v in params]


class Session:
    """One thread's connection, with the sqlite-utils-like surface the stores use."""

    def __init__(self, engine: PostgresEngine, raw: psycopg.Connection) -> None:
        self.engine = engine
        self.raw = raw
        self.in_tx = False
        self.in_unit = False
        # BEGIN not sent yet: it goes in one round trip with the unit's first statement.
        self.begin_pending = False
        # Statements of the unit not sent yet (BEGIN, then ``send``s): they go out
        # with the next statement whose answer is read, or with the COMMIT.
        self.pending: list[_Pending] = []
        self.callbacks: list[Callable[[], None]] = []

    @property
    def conn(self) -> Session:
        return self

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        # Parameters always given (maybe none), so psycopg reads the doubled % back.
        if self.pending:
            return self.flush((self.engine.sql(sql), _params(params), None))
        return self.raw.execute(self.engine.sql(sql), _params(params))

    def send(
        self, sql: str, params: Any = (), *, one_row: Callable[[], Exception] | None = None
    ) -> None:
        """A write whose answer the caller does not read (module doc, "Round trips").

        ``one_row``: the statement must change exactly one row, else this error
        is raised, at the latest by the COMMIT (which it then keeps from
        happening), and the unit is rolled back.
        """
        if one_row is not None:
            # The server checks the count, so the check needs no round trip of its own.
            sql = f"WITH changed AS ({sql} RETURNING 1) {_ONE_ROW}"
        item = (self.engine.sql(sql), _params(params), one_row)
        if self.in_tx:
            self.pending.append(item)
        else:
            self.flush(item)

    def flush(self, last: _Pending | None = None) -> Any:
        """Sends the pending statements and ``last`` in one round trip; ``last``'s cursor."""
        items, self.pending = self.pending, []
        if last is not None:
            items.append(last)
        return self.pipelined(items)[-1]

    def pipelined(self, items: list[_Pending]) -> list[psycopg.Cursor[Any]]:
        """Runs ``items`` in one round trip; their cursors. Raises the first failure:
        a ``one_row`` check's own error when that is what failed."""
        self.begin_pending = False  # from here on a failure needs a ROLLBACK
        cursors: list[psycopg.Cursor[Any]] = []
        try:
            with self.raw.pipeline():
                for sql, params, _ in items:
                    cursors.append(self.raw.execute(sql, params))
        except pg_errors.DivisionByZero:
            # The first statement without a result is the one that failed.
            for (_, _, one_row), cur in zip(items, cursors, strict=True):
                if cur.pgresult is None:
                    if one_row is not None:
                        raise one_row() from None
                    break
            raise
        return cursors

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.pending:
            self.flush()
        with self.raw.cursor() as cur:
            cur.executemany(self.engine.sql(sql), [_params(r) for r in rows])

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        if cur.description is None:
            return []
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        if "rowid" in names and not _ROWID.search(sql):
            for row in rows:  # as SQLite's "*", which leaves its rowid out
                del row["rowid"]
        return rows

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def __getitem__(self, table: str) -> _Table:
        return _Table(self, table)


class _Table:
    """The one-row insert and update (and insert_all) the stores call."""

    def __init__(self, session: Session, name: str) -> None:
        self.session = session
        self.name = name

    def insert(self, record: dict[str, Any]) -> _Table:
        # Sent with the next statement (module doc, "Round trips"); a taken key fails the unit.
        cols = tuple(record)
        self.session.send(
            self.session.engine.statement("insert", self.name, cols), [*record.values()]
        )
        return self

    def insert_all(self, records: Iterable[dict[str, Any]]) -> _Table:
        rows = list(records)
        if rows:
            cols = tuple(rows[0])
            sql = self.session.engine.statement("insert", self.name, cols)
            self.session.executemany(sql, [[r[c] for c in cols] for r in rows])
        return self

    def update(self, pk_values: Any, updates: dict[str, Any] | None = None) -> _Table:
        # As sqlite-utils: NotFoundError for a missing row (here by the unit's next round trip).
        updates = updates or {}
        keys = list(pk_values) if isinstance(pk_values, list | tuple) else [pk_values]
        sql = self.session.engine.statement("update", self.name, tuple(updates))
        self.session.send(sql, [*updates.values(), *keys], one_row=NotFoundError)
        return self


class PostgresEngine:
    """A PostgreSQL database named by a URL: a connection per thread, SERIALIZABLE units."""

    def __init__(self, url: str, observer: Observer = NOBODY, *, units: int = 1) -> None:
        self.path = url
        self.observer = observer
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection] = []
        self._sql: dict[str, str] = {}
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._pks: dict[str, tuple[str, ...]] = {}
        self._listeners: list[Callable[[set[tuple[str, object]]], None]] = []
        self._watched: dict[str, str] = {}
        self._strict = os.environ.get(STRICT_UNITS_ENV) == "1"
        # At most this many units at once in this process (module doc, "Concurrency").
        self._gate = threading.BoundedSemaphore(units)
        self.retries = 0  # attempts re-run after a serialization failure or deadlock
        self.db  # noqa: B018 - connect now: a wrong URL is a start-up error, not the first call's

    # -- connections -------------------------------------------------------

    def connect(self, **options: Any) -> psycopg.Connection:
        """A new connection with the session settings (module doc)."""
        try:
            # prepare_threshold=None: no server-side prepared statements. psycopg
            # records a statement as prepared when its Parse is queued, so a pipeline
            # aborted by a serialization failure left names the server never
            # created ("prepared statement _pg3_2 does not exist" with --db-units 2);
            # unprepared statements also pass through a transaction-pooling pgbouncer.
            raw = psycopg.connect(
                self.path, autocommit=True, connect_timeout=10, prepare_threshold=None, **options
            )
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable(f"cannot connect to {redacted(self.path)}: {err}") from err
        raw.adapters.register_loader("numeric", _NumericLoader)
        for name, value in SESSION.items():
            raw.execute(f"SET {name} = '{value}'")
        with self._lock:
            self._all.append(raw)
        return raw

    @property
    def db(self) -> Session:
        """This thread's session (reconnected if its connection was lost)."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None or (session.raw.closed and not session.in_tx):
            session = self._local.session = Session(self, self.connect())
        return session

    def in_write(self) -> bool:
        session: Session | None = getattr(self._local, "session", None)
        return session is not None and session.in_tx

    # -- SQL ---------------------------------------------------------------

    def sql(self, text: str) -> str:
        done = self._sql.get(text)
        if done is None:
            if len(self._sql) > 8192:  # statements built with varying IN lists
                self._sql.clear()
            done = self._sql[text] = translate(text)
        return done

    def pks(self, table: str) -> tuple[str, ...]:
        pks = self._pks.get(table)
        if pks is None:
            rows = self.db.raw.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary"
                " ORDER BY array_position(i.indkey, a.attnum)",
                (table,),
            ).fetchall()
            pks = self._pks[table] = tuple(r[0] for r in rows)
        return pks

    def statement(self, op: str, table: str, columns: tuple[str, ...]) -> str:
        """The SQL (SQLite spelling) of ``op`` (insert, update) on ``table`` for ``columns``,
        built once."""
        key = (op, table, columns)
        sql = self._statements.get(key)
        if sql is None:
            sql = self._statements[key] = self._build(op, table, columns)
        return sql

    def _build(self, op: str, table: str, columns: tuple[str, ...]) -> str:
        cols = [f'"{c}"' for c in columns]
        if op == "update":
            sets = ", ".join(f"{c} = ?" for c in cols)
            where = " AND ".join(f'"{k}" = ?' for k in self.pks(table))
            return f'UPDATE "{table}" SET {sets} WHERE {where}'
        return f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'

    # -- units of work -----------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One SERIALIZABLE transaction on this thread's connection (nested uses join it).

        Returns once committed. A serialization failure or deadlock propagates
        (``transact`` re-runs the unit); outside a unit it becomes
        ``DatabaseUnavailable``, as does a lost connection.
        """
        session = self.db
        if session.in_tx:
            yield session
            return
        if self._strict and not session.in_unit:
            raise RuntimeError("write() outside a unit of work (use Database.transact or @unit)")
        callbacks: list[Callable[[], None]] = []
        changed: set[tuple[str, object]] = set()
        if not self._gate.acquire(timeout=GATE_TIMEOUT):
            raise DatabaseUnavailable(f"no unit of work could start in {GATE_TIMEOUT:g} s")
        gated = True
        session.in_tx, session.callbacks = True, callbacks
        raw = session.raw
        session.begin_pending = True
        session.pending = list(_OPENING)
        try:
            try:
                yield session
            except BaseException:
                _rollback_quietly(raw)
                raise
            try:
                # Whether the unit ran or queued a statement (else BEGIN was never sent).
                ran = not session.begin_pending or len(session.pending) > len(_OPENING)
                if ran:
                    # The unsent statements, the change report and COMMIT: one round trip.
                    tail = [(_NOTED, None, None)] if self._watched else []
                    pending, session.pending = session.pending, []
                    cursors = session.pipelined([*pending, *tail, (_COMMIT, None, None)])
                    noted = cursors[-2] if tail else None
                    row = noted.fetchone() if noted is not None else None
                    changed = _changes(row[0] if row else None)
            except BaseException as err:
                if raw.broken or raw.closed:
                    raise DatabaseUnavailable(
                        f"the outcome of a commit is unknown (connection lost: {err})"
                    ) from err
                # A statement that failed in the pipeline kept the COMMIT after it from
                # running: the transaction is still open, and nothing of it is kept.
                _rollback_quietly(raw)
                raise
        except RETRYABLE as err:
            if not session.in_unit:
                raise DatabaseUnavailable(f"the database is busy: {err}") from err
            raise
        except psycopg.OperationalError as err:
            if isinstance(err, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
                raise DatabaseUnavailable(f"a lock was not granted in time: {err}") from err
            raise DatabaseUnavailable(f"the database connection failed: {err}") from err
        finally:
            session.in_tx, session.callbacks, session.begin_pending = False, [], False
            session.pending = []
            if gated:
                self._gate.release()
        self.observer.group_committed(1)
        if changed:
            for listener in self._listeners:
                listener(changed)
        for callback in callbacks:
            callback()

    def transact(self, body: Callable[[], T]) -> T:
        """``body()`` as one unit of work, re-run on a serialization failure (module doc)."""
        session = self.db
        if session.in_tx:
            return body()
        outer = session.in_unit
        session.in_unit = True
        delay = _FIRST_BACKOFF
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    with self.write():
                        return body()
                except RETRYABLE as err:
                    if attempt == MAX_ATTEMPTS:
                        raise DatabaseUnavailable(
                            f"gave up after {attempt} serialization failures: {err}"
                        ) from err
                    self.retries += 1
                    time.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not a secret
                    delay = min(delay * 2, _MAX_BACKOFF)
            raise AssertionError("unreachable")
        finally:
            session.in_unit = outer

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` once the current unit commits; at once outside one."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None or not session.in_tx:
            callback()
        else:
            session.callbacks.append(callback)

    # -- change capture (exact caches) ---------------------------------------

    def watch_changes(
        self, keys: dict[str, str], listener: Callable[[set[tuple[str, object]]], None]
    ) -> None:
        """Tells ``listener`` the (table, key) pairs each committed unit wrote (module doc)."""
        raw = self.connect()
        try:
            raw.execute("SET default_transaction_read_only = off")
            for attempt in range(MAX_ATTEMPTS):
                try:
                    with raw.transaction():
                        raw.execute(_NOTE_FUNCTION)
                        for table, column in keys.items():
                            raw.execute(
                                f"CREATE OR REPLACE TRIGGER keyslot_changed AFTER INSERT OR UPDATE"
                                f' OR DELETE ON "{table}" FOR EACH ROW'
                                f" EXECUTE FUNCTION keyslot_note_change('{column}')"
                            )
                    break
                except (*RETRYABLE, pg_errors.UniqueViolation, pg_errors.InternalError_):
                    if attempt == MAX_ATTEMPTS - 1:  # two services starting on one database
                        raise
                    time.sleep(random.uniform(0, 0.05))  # noqa: S311
        finally:
            raw.close()
        self._watched.update(keys)
        self._listeners.append(listener)

    # -- reads -------------------------------------------------------------

    def send(
        self, sql: str, params: Any = (), *, one_row: Callable[[], Exception] | None = None
    ) -> None:
        self.db.send(sql, params, one_row=one_row)

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return self.db.query(sql, params)

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return self.db.one(sql, params)

    def close(self) -> None:
        with self._lock:
            for raw in self._all:
                with suppress(psycopg.Error):
                    raw.close()
            self._all.clear()
        self._local = threading.local()


def _changes(noted: str | None) -> set[tuple[str, object]]:
    changed: set[tuple[str, object]] = set()
    for line in (noted or "").splitlines():
        table, _, key = line.partition("\t")
        if table:
            changed.add((table, key))
    return changed


# A statement not sent yet: its SQL (psycopg's spelling), parameters, and the error
# to raise unless it changes exactly one row.
_Pending = tuple[str, Any, Callable[[], Exception] | None]
BEGIN = "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE"
# A sequential scan takes a predicate lock on the whole table, so under SERIALIZABLE
# it conflicts with every concurrent write of that table; small tables (a few pages)
# get one by default. Inside units the planner uses an index wherever one applies.
NO_SEQSCAN = "SET LOCAL enable_seqscan = off"
_NOTED = "SELECT current_setting('keyslot.changed', true)"
_COMMIT = "COMMIT"
# What a statement that must change one row is followed by (Session.send): no row, or
# more than one, divides by zero on the server, which stops the COMMIT after it.
_ONE_ROW = "SELECT 1 / CAST(COUNT(*) = 1 AS integer) FROM changed"
# What opens every unit, sent with its first statement.
_OPENING: tuple[_Pending, ...] = ((BEGIN, None, None), (NO_SEQSCAN, None, None))


def _rollback_quietly(raw: psycopg.Connection) -> None:
    """Ends the connection's transaction, if one is open (its failure is not the news)."""
    with suppress(psycopg.Error):
        if not raw.closed and raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raw.execute("ROLLBACK")


# Appends "table<TAB>key<LF>" for the old and new row to the transaction-local
# setting keyslot.changed, once per key (see watch_changes).
_NOTE_FUNCTION = """
CREATE OR REPLACE FUNCTION keyslot_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  noted text := coalesce(current_setting('keyslot.changed', true), '');
  entry text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    entry := TG_TABLE_NAME || chr(9) || coalesce(to_jsonb(OLD) ->> TG_ARGV[0], '') || chr(10);
    IF strpos(noted, entry) = 0 THEN noted := noted || entry; END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    entry := TG_TABLE_NAME || chr(9) || coalesce(to_jsonb(NEW) ->> TG_ARGV[0], '') || chr(10);
    IF strpos(noted, entry) = 0 THEN noted := noted || entry; END IF;
  END IF;
  PERFORM set_config('keyslot.changed', noted, true);
  RETURN NULL;
END $$
"""
