"""S4: request validation. Every refusal is INVALID_ARGUMENT naming the field, before
anything is changed."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import date, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from keyslot_server.errors import FieldViolation
from keyslot_server.timeconv import (
    duration_problem,
    from_duration,
    from_timestamp,
    timestamp_problem,
)
from license_service.errors import LicenseError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REQUEST_ID = 64
MAX_ID = 64
# Explicit ASCII classes, matched with fullmatch: \s, \d and \w take Unicode look-alikes
# and "$" matches before a trailing newline (S4).
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# Request ids and the ids this service or its peer assigned: printable ASCII, no blanks.
ASCII_KEY = re.compile(r"[\x21-\x7e]+")
# Order numbers as shops print them: printable ASCII, blanks allowed (routing.py ignores
# those around the number).
ORDER_NUMBER = re.compile(r"[\x20-\x7e]*")
MAX_ORDER_NUMBER = 64
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Page tokens are URL-safe base64; b64decode would silently drop any other character.
PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# Tokens this service issues are far shorter; a longer one is refused unparsed (S4).
MAX_PAGE_TOKEN = 512
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER range
# Grant deadlines come from the peer's clock. Ours may run ahead of it by up to
# this much: a deadline that far in the past is still accepted (see grant_deadline).
CLOCK_SKEW = timedelta(minutes=5)


class Violations:
    """Collects field violations so one answer names every bad field."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise LicenseError.invalid_many(self.items)


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


def page_size(value: int) -> int:
    """0 means the default; 1-1000 otherwise."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise LicenseError.invalid("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    return value


def encode_page_token(key: Any) -> str:
    """An opaque token for the next page: base64 of the last key."""
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def decode_page_token(token: str, kind: type) -> Any:
    """The last key of the previous page, or None for the first page.

    Anything but a key of ``kind`` that SQLite can bind is INVALID_ARGUMENT (S4).
    """
    if not token:
        return None
    refusal = LicenseError.invalid("page_token", "is not a token this service issued")
    if len(token) > MAX_PAGE_TOKEN or not PAGE_TOKEN.fullmatch(token):
        raise refusal
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = data["after"]
        if isinstance(key, str):
            key.encode()  # a lone surrogate (JSON "\ud800") cannot be bound to SQLite
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeError, RecursionError):
        raise refusal from None
    if not isinstance(key, kind) or isinstance(key, bool):
        raise refusal
    if isinstance(key, int) and not INT64_MIN <= key <= INT64_MAX:
        raise refusal
    return key


def email(v: Violations, field: str, value: str) -> None:
    if not value.strip():
        v.add(field, "is required")
    elif len(value) > 254 or not EMAIL.fullmatch(value):
        v.add(field, "must be an e-mail address")


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
