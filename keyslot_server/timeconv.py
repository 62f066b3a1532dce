"""Conversions between aware datetimes / timedeltas and protobuf well-known types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2

# The valid ranges of the well-known types (google/protobuf/timestamp.proto, duration.proto).
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000  # about 10,000 years either way
MAX_NANOS = 999_999_999


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """An aware datetime as a Timestamp; None stays None (field left unset)."""
    if value is None:
        return None
    return timestamp_from_epoch_us(to_epoch_us(value))


def timestamp_from_epoch_us(us: int | None) -> timestamp_pb2.Timestamp | None:
    """Stored epoch microseconds as a Timestamp, exactly; None stays None.

    Built from the integer directly: Timestamp.FromDatetime is pure Python and
    showed in the profile of every answer that carries times.
    """
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)  # floor: nanos stay in [0, 1e9)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def timestamp_problem(ts: timestamp_pb2.Timestamp) -> str | None:
    """Why ``ts`` is outside Timestamp's valid range, or None when it is a valid Timestamp."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    if not 0 <= ts.nanos <= MAX_NANOS:
        return f"nanos must be between 0 and {MAX_NANOS}"
    return None


def from_timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime; ValueError outside Timestamp's valid range."""
    problem = timestamp_problem(ts)
    if problem is not None:
        raise ValueError(problem)
    return ts.ToDatetime(tzinfo=UTC)


def to_duration(value: timedelta) -> duration_pb2.Duration:
    """A timedelta as a Duration."""
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def duration_problem(d: duration_pb2.Duration) -> str | None:
    """Why ``d`` is outside Duration's valid range, or None when it is a valid Duration."""
    if not -MAX_DURATION_SECONDS <= d.seconds <= MAX_DURATION_SECONDS:
        return f"seconds must be between -{MAX_DURATION_SECONDS} and {MAX_DURATION_SECONDS}"
    if not -MAX_NANOS <= d.nanos <= MAX_NANOS:
        return f"nanos must be between -{MAX_NANOS} and {MAX_NANOS}"
    if d.seconds * d.nanos < 0:
        return "seconds and nanos must have the same sign"
    return None


def from_duration(d: duration_pb2.Duration) -> timedelta:
    """A Duration as a timedelta; ValueError outside Duration's valid range."""
    problem = duration_problem(d)
    if problem is not None:
        raise ValueError(problem)
    return d.ToTimedelta()


def to_epoch_us(value: datetime | None) -> int | None:
    """Microseconds since the epoch, as stored in SQLite (exact, sortable)."""
    if value is None:
        return None
    delta = value - _EPOCH  # aware datetimes subtract across time zones
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int | None) -> datetime | None:
    """The inverse of to_epoch_us."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
