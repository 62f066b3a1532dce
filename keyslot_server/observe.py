"""What the services report as they work, told to whoever watches them, or to no one.

Domain code (use cases, stores, the sweepers) is given an ``Observer`` and
tells it what happened in the domain's words: a handshake ended, S3 refused a
caller, a cache answered, a sweep pass ended, a group of writes committed.
The composition root passes the process's ``keyslot_server.metrics.Metrics``
when metrics are on; everything else (tests, tools, metrics off) gets
``NOBODY``, which ignores it all. So no domain module imports a metrics
library, and what becomes which series is decided in one place.

An observer is called on the hot path and with locks held (the group commit
reports under the write lock): it must be quick and must not raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Observer(Protocol):
    """What domain code reports; ``keyslot_server.metrics.Metrics`` counts it."""

    def handshake_ended(self, purpose: str, outcome: str, reason: str) -> None:
        """A handshake reached its final step, once its write committed (device service).

        ``outcome`` is COMMITTED, or for an abort what its owner became (FAILED,
        EXPIRED, CANCELLED, ...), ABORTED when no outcome was decided; ``reason``
        the refusal's reason, empty for a commit.
        """

    def lookup_refused(self, kind: str, limited_by: str) -> None:
        """S3 refused a look-up past a failed-look-up budget (TOO_MANY_FAILED_LOOKUPS).

        ``kind``: "code" or "connection_code"; ``limited_by``: whose budget
        ("caller", "address", "everyone").
        """

    def cache_read(self, cache: str, hits: int, misses: int) -> None:
        """A read of ``cache`` ("code", "check_in"): how many entries it answered, how many not."""

    def sweep_ended(self, seconds: float, items: Mapping[str, int], failed: bool) -> None:
        """A sweeper pass ended after ``seconds``; ``items`` handled by kind of work."""

    def group_committed(self, transactions: int) -> None:
        """One COMMIT made ``transactions`` write() bodies durable (the group commit)."""


class _Nobody:
    """The observer that ignores everything: metrics off, tests, tools."""

    def handshake_ended(self, purpose: str, outcome: str, reason: str) -> None:
        pass

    def lookup_refused(self, kind: str, limited_by: str) -> None:
        pass

    def cache_read(self, cache: str, hits: int, misses: int) -> None:
        pass

    def sweep_ended(self, seconds: float, items: Mapping[str, int], failed: bool) -> None:
        pass

    def group_committed(self, transactions: int) -> None:
        pass


NOBODY: Observer = _Nobody()
