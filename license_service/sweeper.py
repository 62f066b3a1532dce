"""The background sweeper: time-driven work every ``interval`` seconds (H2, L4)."""

from __future__ import annotations

import logging
import threading

from keyslot.runtime.clock import Clock

from license_service.ops import LicenseOps

log = logging.getLogger("keyslot.license.sweeper")


class Sweeper:
    """A daemon thread calling ``ops.sweep(now)``; ``stop()`` ends it and waits."""

    def __init__(self, ops: LicenseOps, clock: Clock, interval: float) -> None:
        self.ops = ops
        self.clock = clock
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="license-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ops.sweep(self.clock.now())
            except Exception:  # a bad pass must not end the sweeper; the next one retries
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(self.interval, 5.0))
