"""Check-in views kept in memory, exact: a view is dropped when its rows change.

A check-in reads its device, shown reserve and PENDING deliveries (one
statement) and turns them into messages. A device that checks in again and
again (an app retrying, restarting, or polling a multi-device code) asks for
the same answer each time, so the view and its messages are kept.

Exactness comes from the store, not from the code paths that write: the
store's write connection reports every row of ``devices``, ``reserves`` and
``deliveries`` a transaction touched (``Database.watch_changes``), after the
COMMIT and before any writer is told it committed. Those devices' views are
dropped then. A view read while such a transaction committed is not kept: the
generation moved between the read and the keeping. Time does not enter a
view: codes, and the take-over moment that depends on them and on the clock,
are looked up on every check-in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

# Tables whose rows a view shows, and the column naming the device of each row.
WATCHED = {"devices": "device_id", "reserves": "device_id", "deliveries": "device_id"}


@dataclass(slots=True, eq=False)
class CheckInView:
    """A device row, its shown reserve and its PENDING deliveries (oldest first).

    Shared between calls once kept: treat the rows as read-only. ``messages``
    is where the API keeps what it built from them.
    """

    device: Row | None
    reserve: Row | None
    pending: list[Row]
    messages: Any = None


class CheckInCache:
    """Views by device id; emptied when full (``size`` 0 keeps nothing)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._views: dict[str, CheckInView] = {}
        self._lock = threading.Lock()
        self.generation = 0  # moves whenever a committed write touched a view's rows

    def get(self, device_id: str) -> CheckInView | None:
        return self._views.get(device_id)

    def keep(self, device_id: str, view: CheckInView, generation: int) -> None:
        """Keeps ``view``, read after ``generation`` was seen, unless a write ended since."""
        with self._lock:
            if generation != self.generation or self.size <= 0:
                return
            if len(self._views) >= self.size:
                self._views.clear()
            self._views[device_id] = view

    def changed(self, rows: set[tuple[str, object]]) -> None:
        """Listener of ``Database.watch_changes``: drops the views of those devices."""
        with self._lock:
            self.generation += 1
            for _table, device_id in rows:
                self._views.pop(device_id, None)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._views)
