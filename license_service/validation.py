"""S4: request validation. Every refusal is INVALID_ARGUMENT naming the field, before
anything is changed."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from keyslot_server import formats
from keyslot_server.timeconv import (
    duration_problem,
    from_duration,
    from_timestamp,
    timestamp_problem,
)
from license_service.errors import LicenseError

MAX_REQUEST_ID = 64
MAX_ID = 64
# Explicit ASCII classes, matched with fullmatch: \s, \d and \w take Unicode look-alikes
# and "$" matches before a trailing newline (S4). Formats both services read (codes,
# versions, regions, e-mail, page tokens) are keyslot_server.formats's.
# Request ids and the ids this service or its peer assigned: printable ASCII, no blanks.
ASCII_KEY = re.compile(r"[\x21-\x7e]+")
# Order numbers as shops print them: printable ASCII, blanks allowed (routing.py ignores
# those around the number).
ORDER_NUMBER = re.compile(r"[\x20-\x7e]*")
MAX_ORDER_NUMBER = 64
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Grant deadlines come from the peer's clock. Ours may run ahead of it by up to
# this much: a deadline that far in the past is still accepted (see grant_deadline).
CLOCK_SKEW = timedelta(minutes=5)


class Violations(formats.Violations):
    """The shared collector of field violations, raising LicenseError."""

    def __init__(self) -> None:
        super().__init__(LicenseError)


def text(v: Violations, field: str, value: str, *, max_len: int, required: bool = False) -> None:
    """A string's presence and length."""
    if required and not value.strip():
        v.add(field, "is required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")


def enum(
    v: Violations, field: str, value: int, enum_type: Any, *, allow_unset: bool = False
) -> str:
    """An enum value by its name without prefix; rejects UNSPECIFIED and unknown numbers."""
    try:
        name = enum_type.Name(value)
    except ValueError:
        v.add(field, f"unknown value {value}")
        return ""
    if value == 0:
        if not allow_unset:
            v.add(field, "must be set")
        return ""
    prefix = enum_type.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix)


def count(v: Violations, field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        v.add(field, f"must be between {low} and {high}")


def term_length(
    v: Violations, field: str, value: duration_pb2.Duration, low: timedelta, high: timedelta
) -> timedelta | None:
    """A term length (duration, grace): whole seconds from ``low`` to ``high``; None, with
    a violation, otherwise. Whole seconds: every expiry and phase change falls on a second."""
    problem = duration_problem(value)
    if problem is not None:
        v.add(field, problem)
        return None
    low_s, high_s = int(low.total_seconds()), int(high.total_seconds())
    if value.nanos != 0:
        v.add(field, "must be a whole number of seconds (nanos must be 0)")
        return None
    if not low_s <= value.seconds <= high_s:
        v.add(field, f"must be between {low_s} s and {high_s} s ({high.days // 365} years)")
        return None
    return timedelta(seconds=value.seconds)


def timestamp(v: Violations, field: str, value: timestamp_pb2.Timestamp) -> datetime | None:
    """A Timestamp as a datetime; None, with a violation, outside Timestamp's range."""
    problem = timestamp_problem(value)
    if problem is not None:
        v.add(field, problem)
        return None
    return from_timestamp(value)


def duration(v: Violations, field: str, value: duration_pb2.Duration) -> timedelta | None:
    """A Duration as a timedelta; None, with a violation, outside Duration's range."""
    problem = duration_problem(value)
    if problem is not None:
        v.add(field, problem)
        return None
    return from_duration(value)


def ascii_key(v: Violations, field: str, value: str, *, max_len: int, required: bool) -> None:
    """An id or idempotency key: up to ``max_len`` printable ASCII characters, no blanks."""
    if not value:
        if required:
            v.add(field, "is required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")
    elif not ASCII_KEY.fullmatch(value):
        v.add(field, "must be printable ASCII characters without blanks")


def request_id(v: Violations, value: str, *, required: bool, field: str = "request_id") -> None:
    ascii_key(v, field, value, max_len=MAX_REQUEST_ID, required=required)


def order_number(v: Violations, field: str, value: str) -> None:
    """An order number (may be empty): printable ASCII, up to 64 characters (L8)."""
    if len(value) > MAX_ORDER_NUMBER:
        v.add(field, f"must be at most {MAX_ORDER_NUMBER} characters")
    elif not ORDER_NUMBER.fullmatch(value):
        v.add(field, "must be printable ASCII letters, digits and punctuation")


def page(
    page_size: int, page_token: str, shape: tuple[type, ...], listing: str
) -> tuple[int, formats.Key | None]:
    """A listing's page size and the sort key its page starts after (None: the first)."""
    v = Violations()
    size = v.check("page_size", formats.page_size, page_size)
    after = v.check("page_token", formats.decode_page_token, page_token, shape, listing)
    v.raise_if_any()
    assert size is not None
    return size, after


def email(v: Violations, field: str, value: str) -> None:
    v.check(field, formats.email, value)


def past_date(v: Violations, field: str, value: str, today: date) -> None:
    """A YYYY-MM-DD date not after today."""
    if not value.strip():
        v.add(field, "is required")
        return
    try:
        if not ISO_DATE.fullmatch(value):  # fromisoformat also takes "2025-W01-1"
            raise ValueError(value)
        parsed = date.fromisoformat(value)
    except ValueError:
        v.add(field, "must be a date YYYY-MM-DD")
        return
    if parsed > today:
        v.add(field, "must not be in the future")


def grant_deadline(
    v: Violations, field: str, value: datetime, now: datetime, most: timedelta
) -> datetime:
    """The time a grant is held until, for a deadline the peer computed from its clock.

    A deadline up to CLOCK_SKEW in the past by our clock is the peer's clock running
    behind ours: accepted, and held at least CLOCK_SKEW from now so it can be committed.
    """
    if value <= now - CLOCK_SKEW:
        v.add(field, f"must be in the future (clocks may differ by at most {CLOCK_SKEW})")
    elif value > now + most:
        v.add(field, f"must be within {most} from now")
    return max(value, now + CLOCK_SKEW)
