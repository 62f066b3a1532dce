"""Injected clocks. Domain code never reads the wall clock itself."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from keyslot_server.timeconv import to_epoch_us

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Anything that tells the current time (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock tests set and advance by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at


class FileClock:
    """Reads "now" from a file holding one RFC 3339 timestamp, at every use.

    Tests running the services as processes move time by rewriting the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def now(self) -> datetime:
        return parse_rfc3339(self.path.read_text().strip())


def parse_rfc3339(text: str) -> datetime:
    """Parses an RFC 3339 timestamp ("2026-01-01T00:00:00Z") into aware UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return value.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    """Formats an aware datetime as RFC 3339 in UTC with a Z suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_clock(test_clock_file: str | None) -> Clock:
    """The system clock, or a file clock when KEYSLOT_TEST_CLOCK_FILE is set."""
    if test_clock_file:
        log.warning(
            "!!! KEYSLOT_TEST_CLOCK_FILE is set: time is read from %s, not the system clock. "
            "Never do this in production. !!!",
            test_clock_file,
        )
        return FileClock(test_clock_file)
    return SystemClock()


def now_us(clock: Clock) -> int:
    """The clock's now as epoch microseconds (how the stores keep time)."""
    return int(to_epoch_us(clock.now()) or 0)
