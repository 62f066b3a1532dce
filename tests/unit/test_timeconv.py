"""keyslot_server.timeconv: stored epoch microseconds <-> protobuf Timestamps, exactly;
well-known types outside their valid range are ValueErrors (S4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from keyslot_server.timeconv import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    duration_problem,
    from_duration,
    from_epoch_us,
    from_timestamp,
    timestamp_from_epoch_us,
    timestamp_problem,
    to_epoch_us,
    to_timestamp,
)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 5, 5, 1, 2, 3, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 123_456, tzinfo=UTC),  # before the epoch
        datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),  # not UTC
    ],
)
def test_timestamps_match_protobufs_own_conversion(moment: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(moment.astimezone(UTC))
    assert to_timestamp(moment) == expected
    us = to_epoch_us(moment)
    assert timestamp_from_epoch_us(us) == expected
    assert from_epoch_us(us) == moment
    assert 0 <= expected.nanos < 1_000_000_000


def test_none_stays_unset() -> None:
    assert to_timestamp(None) is None and timestamp_from_epoch_us(None) is None


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (MIN_TIMESTAMP_SECONDS, 0, datetime(1, 1, 1, tzinfo=UTC)),
        (MAX_TIMESTAMP_SECONDS, 999_999_999, datetime(9999, 12, 31, 23, 59, 59, 999_999, UTC)),
    ],
)
def test_s4_timestamps_at_the_edges_of_their_range_convert(
    seconds: int, nanos: int, expected: datetime
) -> None:
    ts = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert timestamp_problem(ts) is None
    assert from_timestamp(ts) == expected


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (MIN_TIMESTAMP_SECONDS - 1, 0),
        (MAX_TIMESTAMP_SECONDS + 1, 0),
        (2**63 - 1, 0),
        (0, -1),
        (0, 1_000_000_000),
    ],
)
def test_s4_timestamps_out_of_range_are_value_errors(seconds: int, nanos: int) -> None:
    ts = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert timestamp_problem(ts)
    with pytest.raises(ValueError, match="must be between"):
        from_timestamp(ts)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (MAX_DURATION_SECONDS + 1, 0),
        (-(2**63), 0),
        (9007199254740993, 0),  # OverflowError in ToTimedelta before the range check
        (1, -1),  # signs differ
        (0, 1_000_000_000),
    ],
)
def test_s4_durations_out_of_range_are_value_errors(seconds: int, nanos: int) -> None:
    d = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    assert duration_problem(d)
    with pytest.raises(ValueError, match="must"):
        from_duration(d)


def test_s4_durations_in_range_convert() -> None:
    longest = duration_pb2.Duration(seconds=MAX_DURATION_SECONDS, nanos=999_999_999)
    assert from_duration(longest) == timedelta(seconds=MAX_DURATION_SECONDS, microseconds=999_999)
    assert from_duration(duration_pb2.Duration(seconds=-1, nanos=-5)) == timedelta(seconds=-1)
