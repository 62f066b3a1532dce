"""S3: failed code look-ups are counted per caller in a sliding window."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from datetime import datetime, timedelta


class FailedLookupLimiter:
    """Allows ``budget`` failed look-ups per caller within ``window``; then refuses
    every look-up by that caller until the oldest failure leaves the window.

    Time is passed in (the service's clock), so tests drive it with the fake clock.
    Kept in memory: a restart forgives, which costs a guesser a restart of ours.
    """

    def __init__(self, budget: int, window: timedelta) -> None:
        self.budget = budget
        self.window = window
        self._failures: dict[str, deque[datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, failures: deque[datetime], now: datetime) -> None:
        while failures and (failures[0] <= now - self.window or failures[0] > now + self.window):
            failures.popleft()

    def retry_after(self, caller: str, now: datetime) -> timedelta | None:
        """None when the caller may look up; else how long until it may again."""
        if self.budget <= 0:
            return None  # 0 switches the limit off
        with self._lock:
            failures = self._failures.get(caller)
            if not failures:
                return None
            self._trim(failures, now)
            if len(failures) < self.budget:
                return None
            return max(failures[0] + self.window - now, timedelta(seconds=1))

    def record_failure(self, caller: str, now: datetime) -> None:
        """Counts one failed look-up."""
        if self.budget <= 0:
            return
        with self._lock:
            failures = self._failures[caller]
            self._trim(failures, now)
            failures.append(now)
