"""Pure device-service rules: its own formats, validation and who may reach what (S2).

No grpc, no SQL, no clock: callers pass time in. Errors are DeviceError. The formats
both services read (codes, versions, regions, e-mail, page tokens) are
keyslot_server.formats's.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from device_service.errors import DeviceError
from keyslot_server import formats
from keyslot_server.auth import Principal, caller_key

# --- activation codes ----------------------------------------------------------------


def normalize_code(raw: str, field: str = "code") -> str:
    """A typed activation code in the display form this service stores and sends to the
    license service ("ABCDE-12345-FGHIJ-67890"); INVALID_ARGUMENT naming ``field``."""
    return formats.display_code(formats.require(DeviceError, field, formats.normalize_code, raw))


# --- connection codes (D1) ------------------------------------------------------

# Crockford base32: no I, L, O, U, so what people read they can type.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CONNECTION_CODE_LEN = 12  # 12 x 5 bits = 60 bits of entropy (D1 asks >= 40)
_CROCKFORD_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_connection_code() -> str:
    """A fresh connection code shown as three groups of four ("K7QM-3XPA-9RTW")."""
    chars = "".join(secrets.choice(CROCKFORD) for _ in range(CONNECTION_CODE_LEN))
    return format_connection_code(chars)


def format_connection_code(compact: str) -> str:
    return "-".join(compact[i : i + 4] for i in range(0, CONNECTION_CODE_LEN, 4))


def normalize_connection_code(raw: str) -> str | None:
    """The compact form of a typed connection code, or None if it cannot be one."""
    compact = formats.CODE_SEPARATORS.sub("", raw or "")
    if not compact.isascii():  # upper() maps some non-ASCII letters to ASCII
        return None
    compact = compact.upper().translate(_CROCKFORD_ALIASES)
    if len(compact) != CONNECTION_CODE_LEN or any(c not in CROCKFORD for c in compact):
        return None
    return compact


# --- field validation (S4) ----------------------------------------------------------

# Matched with fullmatch (a "$" also matches before a trailing newline).
_ID = re.compile(r"[a-z]{2,4}_[A-Za-z0-9_-]{1,64}")
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")


def display_name(value: str) -> str:
    """A name shown to people: 1-200 characters after trimming (a formats rule)."""
    value = (value or "").strip()
    if not value:
        raise formats.FormatError("required")
    if len(value) > 200:
        raise formats.FormatError("at most 200 characters")
    return value


def resource_id(value: str, field: str) -> str:
    """An id this service assigned ("dev_...", "acc_..."); anything else is malformed."""
    if not value:
        raise DeviceError.invalid(field, "required")
    if not _ID.fullmatch(value):
        raise DeviceError.invalid(field, "malformed id")
    return value


def request_id(value: str, field: str = "request_id", required: bool = True) -> str:
    """An idempotency key: 1-64 printable ASCII characters (H1)."""
    if not value and not required:
        return ""
    if not _REQUEST_ID.fullmatch(value or ""):
        raise DeviceError.invalid(field, "1-64 printable ASCII characters required")
    return value


def page(
    page_size: int, page_token: str, shape: tuple[type, ...], listing: str
) -> tuple[int, formats.Key | None]:
    """A listing's page size and the sort key its page starts after (None: the first)."""
    v = formats.Violations(DeviceError)
    size = v.check("page_size", formats.page_size, page_size)
    after = v.check("page_token", formats.decode_page_token, page_token, shape, listing)
    v.raise_if_any()
    assert size is not None
    return size, after


# --- who may reach what (S1, S2) ---------------------------------------------------
#
# Policy, applied the same way everywhere:
#   * a caller of the wrong KIND for a method (a device asking for an account's
#     subscriptions, an account credential calling a device-only method) gets
#     PERMISSION_DENIED;
#   * a caller of the right kind asking for someone else's resource gets
#     NOT_FOUND, exactly as if it did not exist (no existence oracle).
# The portal and console service tokens (static, no account) act for any
# account: they are the portal and console backends.


def is_service(p: Principal) -> bool:
    """The portal or console backend itself, acting for any account."""
    return p.kind in ("portal", "console") and not p.account_id


def is_account_caller(p: Principal) -> bool:
    """Portal/console backends, account credentials and console members."""
    return p.kind in ("portal", "console")


def require_account_caller(p: Principal) -> None:
    if not is_account_caller(p):
        raise DeviceError.denied("only the portal, the console or an account may call this")


def require_device(p: Principal) -> None:
    if p.kind != "device" or not p.device_id:
        raise DeviceError.denied("only a device credential may call this")


def reaches_account(p: Principal, account_id: str) -> bool:
    """Whether an account caller may act for ``account_id`` (S2)."""
    return is_service(p) or (is_account_caller(p) and p.account_id == account_id)


def reaches_device(p: Principal, device_account_id: str, device_id: str) -> bool:
    """A device reaches only itself; an account caller only its account's devices."""
    if p.kind == "device":
        return p.device_id == device_id
    return reaches_account(p, device_account_id)


@dataclass(frozen=True)
class Caller:
    """Who asks for a handshake: the key its request ids are scoped by (H1) and the
    channel and role the license's CallerContext names (from the principal only, S1)."""

    key: str
    channel: str
    role: str = ""


def caller(p: Principal) -> Caller:
    """The Caller of a principal that may take part in a handshake; PERMISSION_DENIED else."""
    if p.kind == "portal":
        return Caller(caller_key(p), "PORTAL")
    if p.kind == "console":
        return Caller(
            caller_key(p), "CONSOLE", p.role if p.role in ("ADMINISTRATOR", "MEMBER") else ""
        )
    if p.kind == "device":
        return Caller(caller_key(p), "DEVICE")
    raise DeviceError.denied("this caller cannot take part in a handshake")


def lookup_subject(account_id: str) -> str:
    """Whose failed code look-ups a typed code counts against (S3): the account's, for
    the account itself, its console members and its devices alike, so connecting a
    fresh device (or adding a member) does not buy a fresh budget."""
    return f"account:{account_id}"


def subscription_refusal(status_name: str) -> str | None:
    """Why a code cannot be added to an account (blocked, cancelled), or None."""
    return {"CODE_STATUS_BLOCKED": "CODE_BLOCKED", "CODE_STATUS_CANCELLED": "CODE_CANCELLED"}.get(
        status_name
    )
