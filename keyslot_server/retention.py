"""Retention: how long history records are kept, and pruning them in small batches.

Each store describes its kinds of history record as ``Prune`` rules (the
SQL stays in the store); the sweeper runs a ``Pruner`` over them once per
pass. A batch is one short write transaction, so pruning never holds the
write lock for long, and a pass stops after ``max_batches`` per kind, so a
backlog is worked off over several passes instead of in one long one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyslot_server.db import Database
from keyslot_server.requests import index_of
from keyslot_server.timeconv import to_epoch_us

log = logging.getLogger("keyslot.retention")

# H1: a retry within 24 h gets its first answer, so request ids live at least that long.
MIN_RETENTION_HOURS = 24.0
DEFAULT_RETENTION_HOURS = 48.0
# History a person looks at (ListDeliveries, a code's activations): kept this long.
HISTORY = timedelta(days=90)

_FIRST = (-(2**63), -(2**63))  # before every (time, rowid)


def check_retention_hours(hours: float) -> None:
    """Refuses a retention shorter than H1's 24 hours (NaN included); the caller
    names the setting."""
    if not hours >= MIN_RETENTION_HOURS:
        raise ValueError(
            f"must be at least {MIN_RETENTION_HOURS:g}: request ids are replayed for"
            f" 24 h (H1); got {hours:g}"
        )


def request_log_rule(table: str, retention: timedelta) -> Prune:
    """H1's one rule for a service's request table (keyslot_server.requests): a record
    goes once older than ``retention``, never younger than 24 h, so a retry within
    24 h always gets its first answer."""
    keep = max(retention, timedelta(hours=MIN_RETENTION_HOURS))
    return Prune("request ids", table, "create_us", keep, index=index_of(table))


@dataclass(frozen=True)
class Prune:
    """One kind of history record: which rows of ``table`` may go, and when.

    A row is a candidate once ``time`` (epoch microseconds) is more than
    ``keep`` in the past. ``index`` is the index on ``time`` the search walks
    in order (named, so a planner without statistics never picks a scan);
    ``scope`` is its WHERE if it is partial (repeated verbatim, as SQLite
    requires). ``guard`` is what the rules still need of a candidate: a
    condition on the row, naming its table, checked when it is deleted.
    """

    kind: str
    table: str
    time: str
    keep: timedelta
    index: str
    scope: str = ""
    guard: str = ""

    def _where(self) -> str:
        return f"({self.scope}) AND " if self.scope else ""

    @property
    def candidates_sql(self) -> str:
        """The next candidates after a (time, rowid), oldest first: cutoff, time, rowid, limit."""
        return (
            f"SELECT {self.time}, rowid FROM {self.table} INDEXED BY {self.index}"  # noqa: S608
            f" WHERE {self._where()}{self.time} < ? AND ({self.time}, rowid) > (?, ?)"
            f" ORDER BY {self.time}, rowid LIMIT ?"
        )

    @property
    def delete_sql(self) -> str:
        """Deletes the listed candidates that are still due: rowids as JSON, cutoff."""
        guard = f" AND ({self.guard})" if self.guard else ""
        return (
            # NOT INDEXED: by rowid, never along an index on the scope's columns.
            f"DELETE FROM {self.table} NOT INDEXED"  # noqa: S608 - names come from code
            f" WHERE rowid IN (SELECT CAST(value AS BIGINT) FROM json_each(?))"
            f" AND {self._where()}{self.time} < ?{guard}"
        )


class Pruner:
    """Runs a store's ``Prune`` rules in batches; remembers where each kind got to.

    Candidates are read without the write lock; each batch's DELETE re-checks
    the cutoff and the guard under it. A kind whose rows are kept by their
    guard (a handshake a live reserve still needs) is not read again and
    again: the next batch, and the next pass, go on after the last candidate,
    and the search starts from the oldest row again once it reached the end.
    """

    def __init__(
        self,
        db: Database,
        rules: Sequence[Prune],
        *,
        batch: int = 500,
        max_batches: int = 20,
    ) -> None:
        self.db = db
        self.rules = tuple(rules)
        self.batch = batch
        self.max_batches = max_batches
        self._after: dict[str, tuple[int, int]] = {}

    def prune(self, now: datetime) -> dict[str, int]:
        """One pass over every kind, in order; how many rows of each kind went."""
        pruned = {rule.kind: self._prune(rule, now) for rule in self.rules}
        if any(pruned.values()):
            log.info(
                "retention: pruned %s", ", ".join(f"{n} {kind}" for kind, n in pruned.items() if n)
            )
        return pruned

    def _prune(self, rule: Prune, now: datetime) -> int:
        cutoff = to_epoch_us(now - rule.keep)
        after = self._after.get(rule.kind, _FIRST)
        pruned = 0
        for _ in range(self.max_batches):
            params = (cutoff, *after, self.batch)
            rows = self.db.conn.execute(rule.candidates_sql, params).fetchall()
            if rows:
                rowids = json.dumps([rowid for _, rowid in rows])
                pruned += self.db.transact(
                    lambda: self.db.conn.execute(rule.delete_sql, (rowids, cutoff)).rowcount  # noqa: B023
                )
                after = (rows[-1][0], rows[-1][1])
            if len(rows) < self.batch:
                after = _FIRST  # reached the end: the next pass starts from the oldest
                break
        self._after[rule.kind] = after
        return pruned
