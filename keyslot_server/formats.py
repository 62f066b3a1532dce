"""The formats both services read and write, each rule in one place (S4).

Activation codes (normal and display form), app versions (parsing, comparison and a
product's range, D5/D11), regions, e-mail addresses, page sizes and the one page-token
scheme, plus a collector of field violations. Pure: no gRPC, no database, no clock.

Every rule is ASCII-only and matched whole (fullmatch): ``\\s``, ``\\d`` and ``\\w`` take
Unicode look-alikes, ``$`` matches before a trailing newline, and ``upper()`` maps some
non-ASCII letters to ASCII ("ß" -> "SS", the ligature U+FB01 -> "FI"), so ASCII is
checked before upper-casing.

A rule raises ``FormatError`` (what is wrong, without the field); the caller names the
field, through ``Violations`` (every bad field of a request at once) or ``require`` (one
field), and the service's error type raises the list as INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from keyslot.fields import FieldViolation

from keyslot_server.errors import ServiceError

T = TypeVar("T")


class FormatError(ValueError):
    """A value that breaks a format; ``description`` says how, without naming the field."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


# --- field violations ----------------------------------------------------------------


class Violations:
    """Collects field violations so one answer names every bad field (S4)."""

    def __init__(self, error: type[ServiceError]) -> None:
        self.error = error
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def check(self, field: str, rule: Callable[..., T], value: Any, *args: Any) -> T | None:
        """``rule(value, *args)``; None, with a violation naming ``field``, if it refuses."""
        try:
            return rule(value, *args)
        except FormatError as err:
            self.add(field, err.description)
            return None

    def raise_if_any(self) -> None:
        """The service's INVALID_ARGUMENT naming every collected field, if any."""
        if self.items:
            raise self.error.invalid_many(self.items)


def require(
    error: type[ServiceError], field: str, rule: Callable[..., T], value: Any, *args: Any
) -> T:
    """``rule(value, *args)``, or the service's INVALID_ARGUMENT naming ``field``."""
    try:
        return rule(value, *args)
    except FormatError as err:
        raise error.invalid(field, err.description) from None


# --- activation codes (section 2) ------------------------------------------------------

CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CODE_LENGTH = 20  # 36**20 ~ 2**103: at least 100 bits of entropy (S3)
CODE_GROUP = 5
MAX_CODE_INPUT = 64  # longer input is refused before any work is done (S4)
# What typed codes may carry between characters: ASCII spaces and hyphens only. Not \s:
# it also takes tabs, newlines and Unicode blanks (U+3000, U+00A0).
CODE_SEPARATORS = re.compile(r"[ -]+")
_CODE = re.compile(r"[A-Z0-9]{20}")


def normalize_code(text: str) -> str:
    """The 20-character normal (stored) form of a typed code: case, ASCII spaces and
    hyphens ignored; anything else, a wrong length or nothing at all is refused."""
    if not text or not text.strip():
        raise FormatError("is required")
    if len(text) > MAX_CODE_INPUT:
        raise FormatError(f"must be at most {MAX_CODE_INPUT} characters")
    compact = CODE_SEPARATORS.sub("", text)
    # Checked before upper(): it maps some non-ASCII letters to ASCII ("ß" -> "SS").
    compact = compact.upper() if compact.isascii() else ""
    if not _CODE.fullmatch(compact):
        raise FormatError("must be 20 letters A-Z and digits, shown as ABCDE-12345-FGHIJ-67890")
    return compact


def display_code(code: str) -> str:
    """The display form of a normal-form code: four groups of five ("ABCDE-12345-...")."""
    return "-".join(code[i : i + CODE_GROUP] for i in range(0, CODE_LENGTH, CODE_GROUP))


# --- app versions and where a product fits (D5, D11) -----------------------------------
#
# Dotted numbers compared numerically ("10.2" < "10.10"); missing trailing parts count
# as 0 ("10" == "10.0"). [0-9], not \d, which takes any Unicode digit.

VERSION = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}")


def app_version(text: str) -> str:
    """An app version: 1-4 dotted numbers of up to 6 digits each ("10.2.1")."""
    if not VERSION.fullmatch(text or ""):
        raise FormatError("must be dotted numbers such as 10.2.1")
    return text


def parse_version(text: str) -> tuple[int, ...]:
    """Dotted numbers as a tuple of ints (the text is already validated)."""
    return tuple(int(part) for part in text.split("."))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1."""
    pa, pb = parse_version(a), parse_version(b)
    width = max(len(pa), len(pb))
    pa, pb = pa + (0,) * (width - len(pa)), pb + (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def version_in_range(version: str, minimum: str, maximum: str) -> bool:
    """Whether ``version`` is in [minimum, maximum); an empty bound is open."""
    if minimum and compare_versions(version, minimum) < 0:
        return False
    return not (maximum and compare_versions(version, maximum) >= 0)


def released_in(regions: Collection[str], region: str) -> bool:
    """Whether a product released in ``regions`` (empty = everywhere) is in ``region``."""
    return not regions or region.upper() in regions


# --- regions ---------------------------------------------------------------------------

_REGION = re.compile(r"[A-Z]{2}")


def region(text: str) -> str:
    """An ISO 3166-1 alpha-2 region, upper-cased; nothing around it (strip() would take
    Unicode blanks)."""
    text = text or ""
    # ASCII first: upper() maps some other letters to ASCII (the ligature U+FB01 to "FI").
    if not text.isascii() or not _REGION.fullmatch(text.upper()):
        raise FormatError("must be an ISO 3166-1 alpha-2 code such as FI")
    return text.upper()


# --- e-mail ----------------------------------------------------------------------------

MAX_EMAIL = 254
# Local part: 1-64 of RFC 5322's atext and dots. Domain: two or more DNS labels of
# letters, digits and inner hyphens, up to 63 characters each.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")


def email(text: str) -> str:
    """A plausible e-mail address of ASCII characters, up to 254 of them; not stripped."""
    if not text or not text.strip():
        raise FormatError("is required")
    if len(text) > MAX_EMAIL or not _EMAIL.fullmatch(text):
        raise FormatError("must be an e-mail address")
    return text


# --- paging ----------------------------------------------------------------------------

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Tokens we issue are far shorter; a longer one is refused unparsed (S4).
MAX_PAGE_TOKEN = 512
PAGE_TOKEN_VERSION = 1
# Unpadded URL-safe base64; b64decode would silently drop any other character.
_PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER range
Key = tuple[int | str, ...]


def page_size(value: int) -> int:
    """0 means the default (100); 1-1000 otherwise."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise FormatError(f"must be between 0 and {MAX_PAGE_SIZE}")
    return value


def encode_page_token(key: Key, listing: str = "") -> str:
    """An opaque token for the page after the row whose sort key is ``key``.

    Unpadded URL-safe base64 of compact JSON {"v": version, "l": listing, "k": key}:
    a keyset token, so the next page is an index search from ``key``, never an OFFSET.
    """
    body = {"v": PAGE_TOKEN_VERSION, "l": listing, "k": list(key)}
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, shape: tuple[type, ...], listing: str = "") -> Key | None:
    """The sort key a token from ``encode_page_token(key, listing)`` carries; None for
    the first page (an empty token).

    Refused (FormatError): too long, not unpadded URL-safe ASCII base64, not our JSON,
    another version or listing, a key not of ``shape`` (ints of SQLite's 64-bit range,
    strings SQLite can bind), or nesting deep enough to exhaust recursion.
    """
    if not token:
        return None
    refusal = FormatError("is not a token this service issued")
    if len(token) > MAX_PAGE_TOKEN or not _PAGE_TOKEN.fullmatch(token):
        raise refusal
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise refusal from None
    if not isinstance(body, dict) or set(body) != {"v", "l", "k"}:
        raise refusal
    if body["v"] != PAGE_TOKEN_VERSION or type(body["v"]) is not int or body["l"] != listing:
        raise refusal
    key = body["k"]
    if not isinstance(key, list) or len(key) != len(shape):
        raise refusal
    for part, kind in zip(key, shape, strict=True):
        # type(), not isinstance(): True is an int, and no key part is a bool.
        if type(part) is not kind or kind not in (int, str):
            raise refusal
        if kind is int and not INT64_MIN <= part <= INT64_MAX:
            raise refusal
        if kind is str:
            try:
                part.encode()  # a lone surrogate (JSON "\ud800") cannot be bound to SQLite
            except UnicodeError:
                raise refusal from None
    return tuple(key)
