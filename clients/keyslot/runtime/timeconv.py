"""Conversions between aware datetimes / timedeltas and protobuf well-known types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2


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


def from_timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime."""
    return ts.ToDatetime(tzinfo=UTC)


def to_duration(value: timedelta) -> duration_pb2.Duration:
    """A timedelta as a Duration."""
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def from_duration(d: duration_pb2.Duration) -> timedelta:
    """A Duration as a timedelta."""
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
