"""S4: request validation. Every refusal is INVALID_ARGUMENT naming the field, before
anything is changed."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import date, datetime, timedelta
from typing import Any

from keyslot.runtime.errors import FieldViolation

from license_service.errors import LicenseError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REQUEST_ID = 64
MAX_ID = 64
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


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


def span(v: Violations, field: str, value: timedelta, low: timedelta, high: timedelta) -> None:
    if not low <= value <= high:
        v.add(field, f"must be between {low} and {high}")


def request_id(v: Violations, value: str, *, required: bool, field: str = "request_id") -> None:
    text(v, field, value, max_len=MAX_REQUEST_ID, required=required)


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
    """The last key of the previous page, or None for the first page."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeError):
        raise LicenseError.invalid("page_token", "is not a token this service issued") from None
    if not isinstance(key, kind) or isinstance(key, bool):
        raise LicenseError.invalid("page_token", "is not a token this service issued")
    return key


def email(v: Violations, field: str, value: str) -> None:
    if not value.strip():
        v.add(field, "is required")
    elif len(value) > 254 or not EMAIL.match(value):
        v.add(field, "must be an e-mail address")


def past_date(v: Violations, field: str, value: str, today: date) -> None:
    """A YYYY-MM-DD date not after today."""
    if not value.strip():
        v.add(field, "is required")
        return
    try:
        if len(value) != 10:
            raise ValueError(value)
        parsed = date.fromisoformat(value)
    except ValueError:
        v.add(field, "must be a date YYYY-MM-DD")
        return
    if parsed > today:
        v.add(field, "must not be in the future")


def future_time(
    v: Violations, field: str, value: datetime | None, now: datetime, most: timedelta
) -> None:
    if value is None:
        v.add(field, "is required")
    elif value <= now:
        v.add(field, "must be in the future")
    elif value > now + most:
        v.add(field, f"must be within {most} from now")
