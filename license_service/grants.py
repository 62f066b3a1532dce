"""The license side of the handshake: which codes may be granted to which device (D5, L6, H3).

Pure rules; the order of checks is the agreed contract (first failure wins).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from license_service.errors import LicenseError
from license_service.products import Product, released_in, version_compatible
from license_service.terms import (
    SUBSCRIPTION,
    CodeRecord,
    expire_at,
    later,
    phase_at,
    status_at,
)
from license_service.terms import usable_refusal as _usable_refusal

ACTIVATE = "ACTIVATE"
SEND = "SEND"
RESERVE = "RESERVE"
# D11: a per-user code added to an account; the grant's device_id is the account id.
ACCOUNT = "ACCOUNT"

PREPARED = "PREPARED"
COMMITTED = "COMMITTED"
ABORTED = "ABORTED"


@dataclass(frozen=True)
class DeviceContext:
    """The target device as the device service knows it."""

    device_id: str
    app_version: str = ""
    region: str = ""
    current_code: str = ""  # normalised, or empty


@dataclass(frozen=True)
class CallerContext:
    """The original caller as the device service authenticated it (S1)."""

    channel: str
    role: str = ""


@dataclass(frozen=True)
class GrantRecord:
    """One stored grant."""

    grant_id: str
    code: str
    purpose: str
    device_id: str
    app_version: str
    region: str
    state: str
    expire_time: datetime
    create_time: datetime
    end_time: datetime | None = None
    abort_reason: str = ""


def in_term(rec: CodeRecord, now: datetime) -> bool:
    """The code's term has not ended: phase ACTIVE or NOT_ACTIVATED, status ACTIVE or PAUSED."""
    return phase_at(rec, now) in ("ACTIVE", "NOT_ACTIVATED") and status_at(rec, now) in (
        "ACTIVE",
        "PAUSED",
    )


def auto_renewing(rec: CodeRecord) -> bool:
    """An auto-renewing subscription."""
    return rec.kind == SUBSCRIPTION and rec.auto_renew


def subscription_active(current: CodeRecord, now: datetime) -> bool:
    """L6: the device uses a subscription whose term has not ended."""
    return current.kind == SUBSCRIPTION and in_term(current, now)


def effective_expiry(rec: CodeRecord, start: datetime, now: datetime) -> datetime | None:
    """When the code would expire if it took over at ``start``; None = never.

    A code already activated counts from its first activation (L1)."""
    if rec.unlimited:
        return None
    if rec.first_activate_time is not None:
        return expire_at(rec, now)
    assert rec.duration is not None
    return later(start, rec.duration, rec.periods)


def expires_earlier(new: datetime | None, current: datetime | None) -> bool:
    """Whether the new code's expiry is not later than the current one (None = never)."""
    if new is None:
        return False
    if current is None:
        return True
    return new <= current


def usable_refusal(rec: CodeRecord, now: datetime) -> LicenseError | None:
    """Blocked, paused, cancelled or expired (H3's re-check)."""
    return _usable_refusal(rec, now)


def check_prepare(
    *,
    rec: CodeRecord,
    product: Product,
    purpose: str,
    device: DeviceContext,
    caller: CallerContext,
    current: CodeRecord | None,
    now: datetime,
) -> None:
    """Raises the first refusal for granting ``rec`` to ``device`` for ``purpose``."""
    refusal = usable_refusal(rec, now)
    if refusal is not None:
        raise refusal
    if purpose == ACCOUNT:
        # Region and version are the devices' business, checked when one starts using it.
        if rec.slot_kind != "PER_USER":
            raise LicenseError.invalid(
                "purpose", "ACCOUNT is for per-user codes; a per-device code goes to devices"
            )
        return
    if purpose == SEND and rec.slot_kind == "PER_USER":
        # Before SAME_AS_CURRENT: a device may use this very code through its account (D11).
        raise LicenseError.refused(
            "PER_USER_SERVICE", "per-user codes activate themselves on connection"
        )
    if device.current_code and device.current_code == rec.code:
        raise LicenseError.refused("SAME_AS_CURRENT", "the device already uses this code")
    if purpose in (SEND, RESERVE) and (rec.trial or rec.free):
        raise LicenseError.refused("TRIAL_OR_FREE", "trial and free codes cannot be used so")
    if (
        purpose == SEND
        and product.console_managed
        and not (caller.channel == "CONSOLE" and caller.role == "ADMINISTRATOR")
    ):
        raise LicenseError.refused(
            "CONSOLE_ONLY", "sent only from the console by the subscription's administrator"
        )
    if not released_in(product, device.region):
        raise LicenseError.refused(
            "REGION_UNAVAILABLE", "the product is not released in the device's region"
        )
    if device.app_version and not version_compatible(product, device.app_version):
        raise LicenseError.refused(
            "VERSION_INCOMPATIBLE", "the code does not fit the device's app version"
        )
    if current is not None:
        check_against_current(rec=rec, purpose=purpose, current=current, now=now)


def check_against_current(
    *, rec: CodeRecord, purpose: str, current: CodeRecord, now: datetime
) -> None:
    """Step 7 of the contract: the new code against the device's current code."""
    if purpose == ACTIVATE and subscription_active(current, now):
        raise LicenseError.refused(
            "SUBSCRIPTION_ACTIVE", "the device uses a subscription whose term has not ended"
        )
    if purpose == RESERVE and auto_renewing(current):
        raise LicenseError.refused(
            "SUBSCRIPTION_ACTIVE", "the device uses an auto-renewing subscription"
        )
    if purpose == SEND:
        current_in_term = in_term(current, now)
        if auto_renewing(current) and current_in_term and not auto_renewing(rec):
            raise LicenseError.refused(
                "LIMITED_WHILE_AUTO_RENEW",
                "a limited code cannot go to a device on an auto-renewing subscription",
            )
        if auto_renewing(rec) and not auto_renewing(current) and current_in_term:
            raise LicenseError.refused(
                "AUTO_RENEW_WHILE_LIMITED",
                "an auto-renewing subscription cannot go to a device on an active limited code",
            )
    if purpose in (SEND, RESERVE):
        current_end = effective_expiry(current, now, now)
        start = now
        if purpose == RESERVE and current_end is not None:
            start = current_end  # a reserve takes over when the current code expires
        if expires_earlier(effective_expiry(rec, start, now), current_end):
            raise LicenseError.refused(
                "EXPIRES_EARLIER", "the code would expire earlier than the device's current one"
            )


def check_commit(
    rec: CodeRecord, product: Product, grant: GrantRecord, app_version: str, now: datetime
) -> None:
    """H3: the code is still usable; a reserve also still fits the device's app version."""
    refusal = usable_refusal(rec, now)
    if refusal is not None:
        raise refusal
    version = app_version or grant.app_version
    if grant.purpose == RESERVE and version and not version_compatible(product, version):
        raise LicenseError.refused(
            "VERSION_INCOMPATIBLE", "the code does not fit the device's app version"
        )


def expire_grant(grant: GrantRecord, now: datetime) -> GrantRecord:
    """H2: a grant still PREPARED at its deadline is aborted."""
    return replace(grant, state=ABORTED, abort_reason="GRANT_EXPIRED", end_time=now)


def abort_grant(grant: GrantRecord, reason: str, now: datetime) -> GrantRecord:
    """A PREPARED grant abandoned on request; an ABORTED one stays as it is."""
    if grant.state == COMMITTED:
        raise LicenseError.refused(
            "GRANT_COMMITTED", "the grant was committed", grantId=grant.grant_id
        )
    if grant.state == ABORTED:
        return grant
    return replace(grant, state=ABORTED, abort_reason=reason or "REQUESTED", end_time=now)


def closed_refusal(grant: GrantRecord) -> LicenseError:
    """Why an ABORTED grant cannot be committed."""
    if grant.abort_reason == "GRANT_EXPIRED":
        return LicenseError.refused(
            "GRANT_EXPIRED", "the grant passed its deadline", grantId=grant.grant_id
        )
    return LicenseError.refused("GRANT_ABORTED", "the grant was aborted", grantId=grant.grant_id)
