"""H1: idempotency by request id, one facility for both services.

A mutating call that carries a request id runs once: a retry gets the first
answer, a first refusal included (stored as its full rich status, replayed
byte for byte), and the same id with other parameters is
``REQUEST_ID_REUSED``. A request is keyed by caller, method and request id;
a batch call (SendSubscription) keeps one record per target ``position``.

Each service keeps its records in one table of its own database
(``create_table``) with the columns of ``Record``. Two ways to use it:

- ``RequestLog.run``: work done in one transaction (the license service).
  The record is read, the work runs and its answer is stored in the same
  ``write()``, so the answer exists exactly when the effect does.
- ``claim`` / ``finish``: work that spans transactions and remote calls (the
  device service's handshakes). ``claim`` inserts a ``CLAIMED`` record naming
  the work (``ref``, a handshake id) in the transaction that writes the
  work's intent row; ``finish`` stores a final refusal (or answer). A retry
  that finds a ``CLAIMED`` record resumes the work named by ``ref`` (the
  caller's own logic: settle the handshake, answer from where it ended).

Answers that say nothing final about the request are never stored, so a
retry is judged afresh: ``NOT_STORED``.

The primary key is the unique index a second claim of the same request fails
on: on SQLite the writes are serialized anyway; on PostgreSQL the INSERT of a
concurrent duplicate blocks on that index inside its transaction and then
fails, and the loser replays (``AlreadyClaimed``). Until the replicas issue,
the device service also serializes a request's read-check-claim sequence in
process with a ``KeyedLock``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.rpc import status_pb2

from keyslot_server.db import Database, unit
from keyslot_server.errors import Code, ServiceError

M = TypeVar("M", bound=Message)

CLAIMED = "CLAIMED"  # the answer is not final yet: the work named by ``ref`` is under way
FINISHED = "FINISHED"  # ``response`` or ``status`` is the answer

# Not answers about the request's subject (bad input, rate limit, outcome unknown):
# nothing to replay, a retry is judged afresh.
NOT_STORED = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.UNAVAILABLE,
        Code.DEADLINE_EXCEEDED,
        Code.INTERNAL,
        Code.RESOURCE_EXHAUSTED,
    }
)


def stored(err: ServiceError) -> bool:
    """Whether ``err`` is a final answer, recorded for its request id."""
    return err.code not in NOT_STORED


def fingerprint(*parts: Any) -> str:
    """The parameters of a request (request id excluded), serialized deterministically."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def message_fingerprint(request: Message, *ignored: str) -> str:
    """The parameters of a request message, without its request id and ``ignored`` fields."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("request_id", *ignored):
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


@dataclass(frozen=True)
class Key:
    """One request: who called which method with which request id."""

    caller: str
    method: str
    request_id: str


@dataclass(frozen=True)
class Record:
    """What is stored for one position (target) of a request."""

    position: int
    fingerprint: str
    state: str
    ref: str
    response: bytes | None
    status: bytes | None
    create_us: int

    @property
    def refusal(self) -> status_pb2.Status | None:
        """The stored refusal's rich status, if the answer was a refusal."""
        return None if self.status is None else status_pb2.Status.FromString(self.status)


class AlreadyClaimed(Exception):
    """Another attempt claimed the request first: replay instead of doing the work again."""


def create_table(db: Any, table: str) -> None:
    """The request table of a service (``db``: a sqlite-utils Database), with its indexes.

    Part of version 1 of both services' schemas (keyslot_server.migrations):
    change it only through a new migration.
    """
    db[table].create(
        {
            "caller": str,
            "method": str,
            "request_id": str,
            "position": int,
            "fingerprint": str,
            "state": str,
            "ref": str,
            "response": bytes,
            "status": bytes,
            "create_us": int,
        },
        pk=("caller", "method", "request_id", "position"),
        not_null={"fingerprint", "state", "create_us"},
        defaults={"position": 0, "ref": ""},
        if_not_exists=True,
    )
    db.conn.execute(
        f"CREATE INDEX IF NOT EXISTS {index_of(table)} ON {table}(create_us)"  # noqa: S608
    )
    db.conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_ref ON {table}(ref)")  # noqa: S608


def index_of(table: str) -> str:
    """The index on a request table's create time (what retention walks)."""
    return f"{table}_create"


class KeyedLock:
    """An in-process exclusion per key: one thread at a time holds a key.

    It covers what one process must not do twice at once (drive one handshake,
    run one request's check-then-claim). The replicas issue turns a hold into
    a lease row (key, holder, expiry) in the shared database; callers only see
    ``hold`` and ``try_acquire``/``release``.
    """

    def __init__(self) -> None:
        self._busy: set[str] = set()
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, key: str, wait: float = 10.0, busy: Callable[[], Exception] | None = None):  # type: ignore[no-untyped-def]
        """Holds ``key`` for this thread; raises ``busy()`` (TimeoutError) if another
        holds it longer than ``wait`` seconds."""
        end = time.monotonic() + wait
        with self._cond:
            while key in self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    raise busy() if busy else TimeoutError(f"{key} is busy")
                self._cond.wait(left)
            self._busy.add(key)
        try:
            yield
        finally:
            self.release(key)

    def try_acquire(self, key: str) -> bool:
        """Takes ``key`` if free; never waits."""
        with self._cond:
            if key in self._busy:
                return False
            self._busy.add(key)
            return True

    def release(self, key: str) -> None:
        with self._cond:
            self._busy.discard(key)
            self._cond.notify_all()


class RequestLog:
    """The request ids of one service, over one table of its database."""

    def __init__(
        self,
        db: Database,
        table: str,
        error_type: type[ServiceError],
        now_us: Callable[[], int],
        lock: KeyedLock | None = None,
        busy: Callable[[], Exception] | None = None,
    ) -> None:
        self.db = db
        self.table = table
        self.error_type = error_type
        self.now_us = now_us
        self.lock = lock or KeyedLock()
        self.busy = busy  # what ``exclusive`` raises when the request stays held too long

    # --- single-transaction work ---------------------------------------------------------

    def run(self, key: Key, fingerprint: str, response_type: type[M], work: Callable[[], M]) -> M:
        """``work()``'s answer, or the first answer to the request; without a request id,
        just ``work()``. The answer is stored in the transaction of the work."""
        if not key.request_id:
            return work()
        response, refusal = self.db.transact(
            lambda: self._answer(key, fingerprint, response_type, work)
        )
        if refusal is not None:
            raise refusal  # after the commit, so the refusal is stored
        assert response is not None
        return response

    def _answer(
        self, key: Key, fingerprint: str, response_type: type[M], work: Callable[[], M]
    ) -> tuple[M | None, ServiceError | None]:
        """``run``'s unit: the stored answer, or ``work()``'s, stored with it."""
        seen = self.records(key, fingerprint).get(0)
        if seen is not None:
            if seen.status is not None:
                raise self.replayed(seen)
            return response_type.FromString(seen.response or b""), None
        try:
            response = work()
        except self.error_type as err:
            if not stored(err):
                raise
            self.finish(key, 0, fingerprint, refusal=err)
            return None, err
        self.finish(key, 0, fingerprint, response=response.SerializeToString())
        return response, None

    # --- work that spans transactions ----------------------------------------------------

    @contextmanager
    def exclusive(self, key: Key) -> Iterator[None]:
        """Serializes one request's check-then-claim in this process (see ``KeyedLock``)."""
        name = json.dumps([key.caller, key.method, key.request_id])
        with self.lock.hold("req:" + name, busy=self.busy):
            yield

    def records(self, key: Key, fingerprint: str) -> dict[int, Record]:
        """The stored positions of a request; REQUEST_ID_REUSED if stored with other
        parameters."""
        rows = self.db.conn.execute(
            f"SELECT position, fingerprint, state, ref, response, status, create_us"  # noqa: S608
            f" FROM {self.table} WHERE caller = ? AND method = ? AND request_id = ?",
            (key.caller, key.method, key.request_id),
        ).fetchall()
        found = {row[0]: Record(*row) for row in rows}
        if any(r.fingerprint != fingerprint for r in found.values()):
            raise self.error_type(
                "REQUEST_ID_REUSED",
                "the request id was used with other parameters",
                Code.ALREADY_EXISTS,
                metadata={"requestId": key.request_id},
            )
        return found

    @unit
    def claim(
        self, key: Key, position: int, fingerprint: str, ref: str, *, after: str = ""
    ) -> None:
        """Records the request as CLAIMED by the work ``ref``, in the caller's transaction
        (the one writing the work's intent row). ``after``: the claimed work a retry found
        ended without an answer, which ``ref`` replaces. AlreadyClaimed if another attempt
        claimed it first."""

        def taken() -> Exception:
            return AlreadyClaimed(f"{key} position {position}")

        with self.db.write():
            if after:
                self.db.send(
                    f"UPDATE {self.table} SET ref = ? WHERE caller = ? AND method = ?"  # noqa: S608
                    " AND request_id = ? AND position = ? AND state = ? AND ref = ?",
                    (ref, *_key(key, position), CLAIMED, after),
                    one_row=taken,
                )
            else:
                self.db.send(
                    f"INSERT INTO {self.table} (caller, method, request_id, position,"  # noqa: S608
                    " fingerprint, state, ref, create_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (caller, method, request_id, position) DO NOTHING",
                    (*_key(key, position), fingerprint, CLAIMED, ref, self.now_us()),
                    one_row=taken,
                )

    @unit
    def finish(
        self,
        key: Key,
        position: int,
        fingerprint: str,
        *,
        refusal: ServiceError | None = None,
        response: bytes | None = None,
    ) -> None:
        """Stores the final answer (a refusal's full rich status, or response bytes); a
        claimed record keeps its ``ref`` and create time."""
        status = refusal.to_status().SerializeToString() if refusal is not None else None
        with self.db.write():
            self.db.send(
                f"INSERT INTO {self.table} (caller, method, request_id, position,"  # noqa: S608
                " fingerprint, state, response, status, create_us)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                # The conflict target is named: PostgreSQL requires it for DO UPDATE.
                " ON CONFLICT (caller, method, request_id, position)"
                " DO UPDATE SET state = excluded.state,"
                " response = excluded.response, status = excluded.status",
                (*_key(key, position), fingerprint, FINISHED, response, status, self.now_us()),
            )

    def replayed(self, record: Record) -> ServiceError:
        """The stored refusal, as the error that answers it again byte for byte."""
        status = record.refusal
        assert status is not None
        return self.error_type.replayed(status)


def _key(key: Key, position: int) -> tuple[str, str, str, int]:
    return (key.caller, key.method, key.request_id, position)
