"""S3: failure budgets, kept in the database.

One mechanism for every secret a caller could guess. The license service
counts failed code look-ups per caller (for the peer: per end caller it
names); the device service counts failed connection-code redemptions per
client address and overall. A failure is a row (subject, time, count) in the
service's own database, so a restart forgives nothing and replicas over one
database share the count (§8). A success writes nothing: only failures cost
a write, and the rows older than the window are pruned by the sweeper.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from keyslot_server.db import Database, unit
from keyslot_server.retention import Prune
from keyslot_server.timeconv import to_epoch_us

TABLE = "failed_attempts"
_WINDOW_INDEX = f"{TABLE}_at"


def create_table(db: Any) -> None:
    """The failures table with its indexes (``db``: a sqlite-utils Database in a transaction).

    Part of version 1 of both services' schemas (keyslot_server.migrations):
    change it only through a new migration.
    """
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " subject TEXT NOT NULL, at_us INTEGER NOT NULL, failures INTEGER NOT NULL)"
    )
    db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_subject ON {TABLE}(subject, at_us)")
    db.execute(f"CREATE INDEX IF NOT EXISTS {_WINDOW_INDEX} ON {TABLE}(at_us)")


class FailureBudget:
    """Allows ``budget`` failures per subject within a rolling ``window``; 0 switches it off.

    Time is passed in (the service's injected clock), so tests move it with
    the fake clock. Several budgets may share the table (their subjects differ).
    """

    def __init__(self, db: Database, budget: int, window: timedelta) -> None:
        self.db = db
        self.budget = budget
        self.window = window
        # The stores make the table in their migrations (on both engines); a bare SQLite
        # Database (the unit tests) gets it here.
        made = db.postgres or db.one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        )
        if not made:  # the stores make it in their migrations; a bare Database gets it here
            with db.write() as w:
                create_table(w)

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def _span(self, now: datetime) -> tuple[int, int]:
        """The window around ``now`` in µs: failures after its start count (and, should
        the clock step back, those up to one window ahead of it)."""
        now_us = int(to_epoch_us(now) or 0)
        window_us = self.window // timedelta(microseconds=1)
        return now_us - window_us, now_us + window_us

    def _used(self, subject: str, now: datetime) -> int:
        low, high = self._span(now)
        row = self.db.one(
            f"SELECT COALESCE(SUM(failures), 0) AS used FROM {TABLE}"  # noqa: S608 - constant
            " WHERE subject = ? AND at_us > ? AND at_us <= ?",
            (subject, low, high),
        )
        return int(row["used"]) if row else 0

    def _wait(self, subject: str, used: int, now: datetime) -> timedelta:
        """How long until fewer than ``budget`` failures of ``subject`` are in the window."""
        low, high = self._span(now)
        # The oldest row whose leaving brings the count under the budget.
        row = self.db.one(
            "SELECT at_us FROM (SELECT at_us, SUM(failures) OVER (ORDER BY at_us, rowid) AS upto"
            f" FROM {TABLE} WHERE subject = ? AND at_us > ? AND at_us <= ?)"  # noqa: S608
            " AS w WHERE upto > ? ORDER BY at_us LIMIT 1",
            (subject, low, high, used - self.budget),
        )
        if row is None:
            return self.window
        # It leaves the window at at_us + window, which is at_us - low from now.
        return max(timedelta(microseconds=int(row["at_us"]) - low), timedelta(seconds=1))

    def retry_after(self, subject: str, now: datetime) -> timedelta | None:
        """None while ``subject`` may try (read only); else how long until it may again."""
        if not self.enabled:
            return None
        used = self._used(subject, now)
        return None if used < self.budget else self._wait(subject, used, now)

    @unit
    def charge(self, subject: str, now: datetime, failures: int = 1) -> timedelta | None:
        """Counts ``failures`` in one write transaction (check and count together).

        None when they fit the budget: the caller may answer them. Otherwise
        the wait, and the caller refuses instead of answering: a batch that
        holds more unknowns than the budget leaves, or a guess that raced
        others past it, learns nothing.
        """
        if not self.enabled or failures <= 0:
            return None
        with self.db.write() as w:
            used = self._used(subject, now)
            w.execute(
                f"INSERT INTO {TABLE} (subject, at_us, failures) VALUES (?, ?, ?)",  # noqa: S608
                (subject, to_epoch_us(now), failures),
            )
            if used + failures <= self.budget:
                return None
            return self._wait(subject, used + failures, now)

    def prune_rule(self) -> Prune:
        """The sweeper's rule: failures older than the window count for nothing."""
        return Prune("failed attempts", TABLE, "at_us", self.window, index=_WINDOW_INDEX)


def client_address(peer: str) -> str:
    """Who is calling, from gRPC's ``context.peer()``: the IP address without the port;
    for IPv6 its /64 network (one host usually holds a whole /64)."""
    kind, _, rest = peer.partition(":")
    rest = unquote(rest)  # gRPC spells "[::1]" as "%5B::1%5D"
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]") if "]" in rest else rest
        host = host.split("%")[0]  # a zone id ("fe80::1%eth0") is not part of the address
        try:
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
        except ValueError:
            return host
    return peer  # unix sockets and the like: the peer string itself
