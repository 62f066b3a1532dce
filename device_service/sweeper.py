"""The device service's background thread: delivery deadlines, recovery, retention (D4, H4)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from device_service.faults import pause_point
from device_service.handshake import Handshakes
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.retention import Pruner

log = logging.getLogger("keyslot.device.sweeper")


class Sweeper:
    """Runs a recovery pass at once (start-up), then expiry + recovery every interval."""

    def __init__(
        self,
        handshakes: Handshakes,
        interval: float,
        tasks: Sequence[Callable[[], int]] = (),
        pruner: Pruner | None = None,
        observer: Observer = NOBODY,
    ) -> None:
        self.handshakes = handshakes
        self.observer = observer  # told how each pass went (tasks by their names)
        # Further periodic work, e.g. due reserve take-overs (D9).
        self.tasks = tuple(tasks)
        # Last in each pass: history the work above just finished is kept, not pruned.
        self.pruner = pruner
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sweep(self) -> None:
        """One pass: expire deliveries past their window, then settle orphans."""
        started = time.perf_counter()
        items: dict[str, int] = {}
        failed = True
        try:
            failed = self._pass(items)
        finally:
            self.observer.sweep_ended(time.perf_counter() - started, items, failed)
        pause_point("after_sweep")

    def _pass(self, items: dict[str, int]) -> bool:
        """The work of one pass, counted into ``items``; whether a part of it failed."""
        failed = False
        expired = items["deliveries_expired"] = self.handshakes.expire_due()
        settled = items["handshakes_settled"] = self.handshakes.recover()
        if expired or settled:
            log.info("sweep: %d deliveries expired, %d handshakes settled", expired, settled)
        for task in self.tasks:
            try:
                items[getattr(task, "__name__", "task")] = task()
            except Exception:
                failed = True
                log.exception("sweep task failed")
        if self.pruner is not None:
            try:
                items["rows_pruned"] = sum(self.pruner.prune(self.handshakes.clock.now()).values())
            except Exception:
                failed = True
                log.exception("retention pass failed")
        return failed

    def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed")
            if self._stop.wait(self.interval):
                return
