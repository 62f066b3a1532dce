"""keyslot.runtime.timeconv: stored epoch microseconds <-> protobuf Timestamps, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2
from keyslot.runtime.timeconv import (
    from_epoch_us,
    timestamp_from_epoch_us,
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
