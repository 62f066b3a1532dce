"""The background sweeper: time-driven work every ``interval`` seconds (H2, L4, retention)."""

from __future__ import annotations

import logging
import threading
import time

from keyslot_server.clock import Clock
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.retention import Pruner
from license_service.ops import LicenseOps

log = logging.getLogger("keyslot.license.sweeper")


class Sweeper:
    """A daemon thread calling ``ops.sweep(now)`` and then pruning history (``pruner``);
    ``stop()`` ends it and waits."""

    def __init__(
        self,
        ops: LicenseOps,
        clock: Clock,
        interval: float,
        pruner: Pruner | None = None,
        observer: Observer = NOBODY,
    ) -> None:
        self.ops = ops
        self.clock = clock
        self.interval = interval
        self.pruner = pruner
        self.observer = observer  # told how each pass went
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="license-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> None:
        """One pass at one moment: grant deadlines and renewals, then retention."""
        now = self.clock.now()
        started = time.perf_counter()
        items: dict[str, int] = {}
        failed = True
        try:
            try:
                items.update(self.ops.sweep(now))
            finally:  # a failed pass still prunes: history must not grow behind it
                if self.pruner is not None:
                    items["rows_pruned"] = sum(self.pruner.prune(now).values())
            failed = False
        finally:
            self.observer.sweep_ended(time.perf_counter() - started, items, failed)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # a bad pass must not end the sweeper; the next one retries
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(self.interval, 5.0))
