"""Codes kept between changes, invalidated by the license service's change feed.

A check-in needs its code's state; reading it from the license service on
every check-in doubled the work of the hot path. The cache keeps a code read
from the license service while three things hold:

- the WatchCodeChanges stream is live: the license service answers a call
  that changed a code only after this watcher acknowledged the change (it is
  dropped first), so a BlockCode is seen by the very next check-in;
- the service clock has not reached the code's next time-driven change
  (expire_time, grace_end_time): its phase is derived at read time (L2);
- it was read less than ``max_age`` seconds ago (a bound for the case the
  license service ends a watch it could not reach in time).

When the stream ends, everything kept is dropped and reads go to the license
service until a new watch is live. A read that began before a change arrived
is not kept (the generation check), so a stale answer never enters the cache.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc
from keyslot.license.v1 import license_service_pb2 as lpb

from keyslot_server.clock import Clock
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.timeconv import to_epoch_us

log = logging.getLogger("keyslot.device.cache")

NEVER = 2**63 - 1


def valid_until_us(code: lpb.Code, now_us: int) -> int:
    """The first instant after ``now_us`` at which the code's phase may change by time."""
    later = [
        ts.ToMicroseconds()
        for name, ts in (("expire_time", code.expire_time), ("grace_end_time", code.grace_end_time))
        if code.HasField(name) and ts.ToMicroseconds() > now_us
    ]
    return min(later, default=NEVER)


class CodeCache:
    """Codes by their canonical form, valid while the change feed is live."""

    def __init__(
        self,
        watch: Callable[
            [Iterator[lpb.WatchCodeChangesRequest]], Iterator[lpb.WatchCodeChangesResponse]
        ],
        clock: Clock,
        size: int = 20_000,
        max_age: float = 60.0,
        observer: Observer = NOBODY,
    ) -> None:
        self._watch = watch
        self._observer = observer  # told how many codes each read found kept
        self._clock = clock
        self.size = size
        self.max_age = max_age
        # code -> (Code, valid until in service-clock µs, monotonic time read)
        self._entries: dict[str, tuple[lpb.Code, int, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # moves on every drop: reads started before are not kept
        self.live = False
        self._stopping = threading.Event()
        self._call: grpc.Future | None = None  # type: ignore[type-arg]
        self._thread = threading.Thread(target=self._run, name="code-watch", daemon=True)

    # --- reads -------------------------------------------------------------------------

    def get_many(
        self, codes: list[str], fetch: Callable[[list[str]], list[lpb.Code]]
    ) -> list[lpb.Code]:
        """The codes found, in the order asked; misses are read with ``fetch`` and kept."""
        now_us = int(to_epoch_us(self._clock.now()) or 0)
        found: dict[str, lpb.Code] = {}
        misses = list(codes)
        if self.live and self.size > 0:
            oldest = time.monotonic() - self.max_age
            misses = []
            for code in codes:
                entry = self._entries.get(code)
                if entry is not None and entry[1] > now_us and entry[2] > oldest:
                    found[code] = entry[0]
                else:
                    misses.append(code)
        self._observer.cache_read("code", len(found), len(misses))
        if not misses:
            return [found[c] for c in codes]
        generation = self._generation
        read_at = time.monotonic()
        fetched = fetch(misses)
        self._keep(fetched, generation, now_us, read_at)
        for code in fetched:
            found[code.code] = code
        asked = set(codes)
        # Input not in the canonical form is answered too (it is never a hit).
        return [found[c] for c in codes if c in found] + [c for c in fetched if c.code not in asked]

    def _keep(self, fetched: list[lpb.Code], generation: int, now_us: int, read_at: float) -> None:
        if self.size <= 0 or not fetched:
            return
        with self._lock:
            if not self.live or generation != self._generation:
                return  # a change (or a lost watch) came while this read was out
            for code in fetched:
                self._entries.pop(code.code, None)
                while len(self._entries) >= self.size:
                    self._entries.pop(next(iter(self._entries)))  # the oldest kept
                self._entries[code.code] = (code, valid_until_us(code, now_us), read_at)

    def drop(self, codes: list[str] | None = None) -> None:
        """Drops some codes (or all) and fails reads that are out now."""
        with self._lock:
            self._generation += 1
            if codes is None:
                self._entries.clear()
            else:
                for code in codes:
                    self._entries.pop(code, None)

    def __len__(self) -> int:
        return len(self._entries)

    # --- the watch -----------------------------------------------------------------------

    def start(self) -> None:
        if self.size > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._follow()
            except grpc.RpcError as err:
                if not self._stopping.is_set():
                    log.info("code watch ended: %s", err.code())  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - the watch restarts; reads go direct meanwhile
                log.exception("code watch failed")
            finally:
                self.live = False
                self.drop()
            # Back off while the license service is away; at once after a long, good watch.
            delay = 0.1 if time.monotonic() - started > 10 else min(delay * 2, 2.0)
            self._stopping.wait(delay)

    def _follow(self) -> None:
        acks: queue.Queue[int] = queue.Queue()
        done = threading.Event()

        def requests() -> Iterator[lpb.WatchCodeChangesRequest]:
            yield lpb.WatchCodeChangesRequest(ack_sequence=0)
            while not done.is_set():
                try:
                    sequence = acks.get(timeout=0.5)
                except queue.Empty:
                    continue
                yield lpb.WatchCodeChangesRequest(ack_sequence=sequence)

        try:
            responses = self._watch(requests())
            self._call = responses  # type: ignore[assignment]
            if self._stopping.is_set():
                return
            for response in responses:
                if response.sequence == 1:
                    self.drop()
                    self.live = True
                    log.info("code watch live")
                    continue
                self.drop(list(response.codes))
                acks.put(response.sequence)
        finally:
            done.set()
            self._call = None
