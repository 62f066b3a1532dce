"""The code change feed behind WatchCodeChanges.

The store reports the codes a transaction changed once it commits
(``publish``). Every open watch gets them as one numbered batch; ``publish``
returns when each watch has acknowledged its batch, or ends the watches that
did not within ``ack_timeout`` (their watcher drops its cache when its
stream ends). So when a code-changing call answers, no watcher still serves
the old code from its cache: a check-in right after a BlockCode sees the
block.

``watch_code_changes`` is the stream of one WatchCodeChanges call over the feed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from keyslot.license.v1 import license_service_pb2 as pb

from keyslot_server import formats

log = logging.getLogger("keyslot.feed")


class Watch:
    """One open WatchCodeChanges stream: batches to send and the last acknowledged."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._codes: dict[str, None] = {}  # not yet sent, in order, once each
        self.sequence = 1  # the first response (sequence 1) opens the watch
        self.queued = 1  # sequence the queued codes will be sent under
        self.acked = 0
        self.closed = False

    def push(self, codes: Iterable[str]) -> int:
        """Queues codes; returns the sequence whose acknowledgement covers them."""
        with self._cond:
            if not self._codes:
                self.queued += 1
            self._codes.update(dict.fromkeys(codes))
            self._cond.notify_all()
            return self.queued

    def next_batch(self, timeout: float) -> tuple[int, list[str]] | None:
        """The queued codes under their sequence; None after ``timeout`` or once closed."""
        with self._cond:
            if not self._codes and not self.closed:
                self._cond.wait(timeout)
            if self.closed or not self._codes:
                return None
            codes, self._codes = list(self._codes), {}
            self.sequence = self.queued
            return self.sequence, codes

    def ack(self, sequence: int) -> None:
        with self._cond:
            if sequence > self.acked:
                self.acked = min(sequence, self.sequence)
                self._cond.notify_all()

    def wait_acked(self, sequence: int, deadline: float) -> bool:
        """Waits for ``sequence`` to be acknowledged; False at the deadline."""
        with self._cond:
            while self.acked < sequence and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True  # acknowledged, or closed: a closed watch serves nothing

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class CodeFeed:
    """The open watches of this license service."""

    def __init__(self, ack_timeout: float = 2.0) -> None:
        self.ack_timeout = ack_timeout
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()

    def open(self) -> Watch:
        watch = Watch()
        with self._lock:
            self._watches.add(watch)
        return watch

    def remove(self, watch: Watch) -> None:
        watch.close()
        with self._lock:
            self._watches.discard(watch)

    def publish(self, codes: Iterable[str]) -> None:
        """Sends committed changes to every watch and waits for their acknowledgements."""
        codes = list(codes)
        with self._lock:
            watches = list(self._watches)
        if not codes or not watches:
            return
        waits = [(watch, watch.push(codes)) for watch in watches]
        deadline = time.monotonic() + self.ack_timeout
        for watch, sequence in waits:
            if not watch.wait_acked(sequence, deadline):
                log.warning(
                    "a code watch did not acknowledge within %.1f s; ending it", self.ack_timeout
                )
                self.remove(watch)

    def close(self) -> None:
        """Ends every watch (shutdown)."""
        with self._lock:
            watches, self._watches = list(self._watches), set()
        for watch in watches:
            watch.close()


def watch_code_changes(feed: CodeFeed, requests: Iterator[Any], context: Any) -> Iterator[Any]:
    """One WatchCodeChanges stream: opens a watch, reads the acknowledgements on a
    thread of their own, and answers the watch's batches until either side ends."""
    watch = feed.open()
    context.add_callback(lambda: feed.remove(watch))
    threading.Thread(
        target=_read_acks, args=(requests, watch), name="watch-acks", daemon=True
    ).start()
    return _watch_responses(watch, context, feed)


def _read_acks(requests: Iterator[Any], watch: Watch) -> None:
    """Applies the watcher's acknowledgements until its side of the stream ends."""
    try:
        for request in requests:
            watch.ack(request.ack_sequence)
    except Exception:  # noqa: BLE001 - a broken stream only ends the watch
        pass
    watch.close()


def _watch_responses(watch: Watch, context: Any, feed: CodeFeed) -> Iterator[Any]:
    try:
        yield pb.WatchCodeChangesResponse(sequence=1)
        while context.is_active() and not watch.closed:
            batch = watch.next_batch(timeout=0.5)
            if batch is not None:
                codes = [formats.display_code(code) for code in batch[1]]  # as in Code.code
                yield pb.WatchCodeChangesResponse(sequence=batch[0], codes=codes)
    finally:
        feed.remove(watch)
