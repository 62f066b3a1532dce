"""A code's terms and lifecycle (L1-L5): its state is derived at a moment from stored facts.

Everything here is pure: a ``CodeRecord`` holds what was stored, functions take
``now`` and return values or new records. Nothing about time is stored stale:
phase, status (cancel at period end), expiry and entitlements are computed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from license_service.entitlements import entitlements_for
from license_service.errors import LicenseError

LICENSE = "LICENSE"
SUBSCRIPTION = "SUBSCRIPTION"

# The last second a Timestamp holds. A term renewed for centuries ends here rather
# than overflowing (durations and grace go up to 100 years each, renewals add up).
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class CodeRecord:
    """The stored facts of one code."""

    code: str
    provider: str
    product_id: str
    kind: str
    coverage: str
    duration: timedelta | None  # None: unlimited
    grace: timedelta
    max_devices: int
    slot_kind: str
    trial: bool
    free: bool
    auto_renew: bool
    purchase_channel: str
    provider_name: str
    order_number: str
    issue_time: datetime
    seq: int = 0
    console_managed: bool = False  # copied from the product when read
    blocked: bool = False
    block_reason: str = ""
    pause_time: datetime | None = None
    paused_total: timedelta = timedelta(0)  # paused time of the current term chain (L5)
    cancel_time: datetime | None = None  # cancelled immediately at this moment
    cancel_at_period_end: bool = False
    first_activate_time: datetime | None = None  # L1
    term_start: datetime | None = None  # start of the current term chain
    periods: int = 1  # periods counted from term_start (1 + renewals)
    prepaid_periods: int = 0
    auto_renewals_applied: int = 0
    activation_count: int = 0

    @property
    def unlimited(self) -> bool:
        return self.duration is None

    @property
    def is_subscription(self) -> bool:
        return self.kind == SUBSCRIPTION


def later(start: datetime, span: timedelta, times: int = 1) -> datetime:
    """``start + span * times``, exact to the microsecond, but never past LATEST."""
    room = LATEST - start
    if span <= timedelta(0) or times <= 0:
        return start
    if times > room // span:  # span * times alone may overflow timedelta
        return LATEST
    return min(start + span * times, LATEST)


def expire_at(rec: CodeRecord, now: datetime) -> datetime | None:
    """End of the term (L1, L5); None before first activation and for unlimited codes.

    While paused the clock stands still, so the expiry moves along with ``now``.
    """
    if rec.duration is None or rec.term_start is None:
        return None
    end = later(later(rec.term_start, rec.duration, rec.periods), rec.paused_total)
    if rec.pause_time is not None:
        end = later(end, now - max(rec.pause_time, rec.term_start))
    return end


def grace_end_at(rec: CodeRecord, now: datetime) -> datetime | None:
    """End of grace (L3). A subscription cancelled at period end gets no grace (L5)."""
    end = expire_at(rec, now)
    if end is None:
        return None
    return end if rec.cancel_at_period_end else later(end, rec.grace)


def status_at(rec: CodeRecord, now: datetime) -> str:
    """ACTIVE, PAUSED, BLOCKED or CANCELLED (cancel at period end takes effect at expiry)."""
    if rec.blocked:
        return "BLOCKED"
    if rec.cancel_time is not None:
        return "CANCELLED"
    if rec.cancel_at_period_end:
        end = expire_at(rec, now)
        if end is not None and now >= end:
            return "CANCELLED"
    if rec.pause_time is not None:
        return "PAUSED"
    return "ACTIVE"


def phase_at(rec: CodeRecord, now: datetime) -> str:
    """L2: NOT_ACTIVATED, ACTIVE, GRACE or EXPIRED at ``now``."""
    if rec.first_activate_time is None:
        return "NOT_ACTIVATED"
    end = expire_at(rec, now)
    if end is None:
        return "ACTIVE"  # unlimited codes never leave ACTIVE by time
    if now < end:
        return "ACTIVE"
    grace_end = grace_end_at(rec, now)
    assert grace_end is not None
    return "GRACE" if now < grace_end else "EXPIRED"


def entitlements_at(rec: CodeRecord, now: datetime) -> tuple[str, ...]:
    """L7 at ``now``."""
    return entitlements_for(status_at(rec, now), phase_at(rec, now), rec.coverage)


def apply_due_renewals(rec: CodeRecord, now: datetime) -> CodeRecord:
    """L4: every automatic renewal due by ``now``, each exactly once.

    An auto-renewing subscription with a prepaid period is extended by one period
    at each expiry that has passed; the count of periods is the record of renewals
    applied, so applying this again (sweeper, read, a later write) adds nothing.
    Counted, not looped: a one-second term may have passed millions of expiries.
    """
    if not (
        rec.is_subscription
        and rec.auto_renew
        and rec.prepaid_periods > 0
        and not rec.blocked
        and rec.cancel_time is None
        and not rec.cancel_at_period_end
        and rec.pause_time is None
    ):
        return rec
    end = expire_at(rec, now)
    if end is None or end > now or rec.duration is None:
        return rec
    # The renewal at ``end`` and one at each later expiry up to ``now`` (end + k * duration).
    due = min(rec.prepaid_periods, (now - end) // rec.duration + 1)
    return replace(
        rec,
        periods=rec.periods + due,
        prepaid_periods=rec.prepaid_periods - due,
        auto_renewals_applied=rec.auto_renewals_applied + due,
    )


# --- refusals shared by the lifecycle calls ------------------------------------------------


def _require_subscription(rec: CodeRecord) -> None:
    if not rec.is_subscription:
        raise LicenseError.refused(
            "NOT_A_SUBSCRIPTION", "only subscriptions can do this", code=rec.code
        )


def _refuse_blocked_or_cancelled(rec: CodeRecord, now: datetime) -> None:
    status = status_at(rec, now)
    if status == "BLOCKED":
        raise LicenseError.refused("CODE_BLOCKED", "the code is blocked", code=rec.code)
    if status == "CANCELLED":
        raise LicenseError.refused("CODE_CANCELLED", "the subscription is cancelled", code=rec.code)


def usable_refusal(rec: CodeRecord, now: datetime) -> LicenseError | None:
    """Why the code cannot be used now (blocked, paused, cancelled, expired), or None."""
    status = status_at(rec, now)
    if status == "BLOCKED":
        return LicenseError.refused("CODE_BLOCKED", "the code is blocked", code=rec.code)
    if status == "PAUSED":
        return LicenseError.refused("CODE_PAUSED", "the subscription is paused", code=rec.code)
    if status == "CANCELLED":
        return LicenseError.refused(
            "CODE_CANCELLED", "the subscription is cancelled", code=rec.code
        )
    if phase_at(rec, now) == "EXPIRED":
        return LicenseError.refused("CODE_EXPIRED", "the code is past its grace", code=rec.code)
    return None


# --- lifecycle (L4, L5) ----------------------------------------------------------------------


def pause(rec: CodeRecord, now: datetime) -> CodeRecord:
    """L5: stops the term clock."""
    _require_subscription(rec)
    _refuse_blocked_or_cancelled(rec, now)
    if rec.pause_time is not None:
        raise LicenseError.refused("ALREADY_PAUSED", "the subscription is paused", code=rec.code)
    if phase_at(rec, now) == "EXPIRED":
        raise LicenseError.refused("CODE_EXPIRED", "the code is past its grace", code=rec.code)
    return replace(rec, pause_time=now)


def resume(rec: CodeRecord, now: datetime) -> CodeRecord:
    """L5: restarts the clock; the expiry moves by the paused time."""
    _require_subscription(rec)
    _refuse_blocked_or_cancelled(rec, now)
    if rec.pause_time is None:
        raise LicenseError.refused("NOT_PAUSED", "the subscription is not paused", code=rec.code)
    paused = timedelta(0)
    if rec.term_start is not None:  # time paused before the term started does not count
        paused = max(now - max(rec.pause_time, rec.term_start), timedelta(0))
    return replace(rec, pause_time=None, paused_total=rec.paused_total + paused)


def renew(rec: CodeRecord, periods: int, now: datetime) -> CodeRecord:
    """L3/L4 manual renewal by whole periods: in term or grace the term goes on with
    no gap; after grace a new term starts now."""
    _require_subscription(rec)
    if rec.unlimited:
        raise LicenseError.refused("UNLIMITED_TERM", "an unlimited code has no term", code=rec.code)
    _refuse_blocked_or_cancelled(rec, now)
    if phase_at(rec, now) == "EXPIRED":
        return replace(rec, term_start=now, periods=periods, paused_total=timedelta(0))
    return replace(rec, periods=rec.periods + periods)


def record_prepayment(rec: CodeRecord, periods: int, now: datetime) -> CodeRecord:
    """L4: the next period(s) are paid; an auto-renewing subscription renews at expiry."""
    _require_subscription(rec)
    if rec.unlimited:
        raise LicenseError.refused("UNLIMITED_TERM", "an unlimited code has no term", code=rec.code)
    _refuse_blocked_or_cancelled(rec, now)
    return replace(rec, prepaid_periods=rec.prepaid_periods + periods)


def cancel(rec: CodeRecord, immediately: bool, now: datetime) -> CodeRecord:
    """L5: cancels at the end of the current period (no renewal, no grace), or now.

    A code with no running period (never activated, unlimited, or past its expiry)
    is cancelled now.
    """
    _require_subscription(rec)
    status = status_at(rec, now)
    if status == "BLOCKED":
        raise LicenseError.refused("CODE_BLOCKED", "the code is blocked", code=rec.code)
    if status == "CANCELLED" or (rec.cancel_at_period_end and not immediately):
        raise LicenseError.refused(
            "ALREADY_CANCELLED", "the subscription is already cancelled", code=rec.code
        )
    end = expire_at(rec, now)
    if immediately or end is None or now >= end:
        return replace(rec, cancel_time=now, cancel_at_period_end=False)
    return replace(rec, cancel_at_period_end=True)


def block(rec: CodeRecord, reason: str) -> CodeRecord:
    """Blocks the code (abuse, refund, fraud): nothing is entitled (L7)."""
    if rec.blocked:
        raise LicenseError.refused("ALREADY_BLOCKED", "the code is already blocked", code=rec.code)
    return replace(rec, blocked=True, block_reason=reason)


def unblock(rec: CodeRecord) -> CodeRecord:
    """Lifts a block; the code's other facts are as they were."""
    if not rec.blocked:
        raise LicenseError.refused("NOT_BLOCKED", "the code is not blocked", code=rec.code)
    return replace(rec, blocked=False, block_reason="")


def set_auto_renew(rec: CodeRecord, auto_renew: bool, now: datetime) -> CodeRecord:
    """Turns automatic renewal on or off (the caller decided keyslot owns it, L8)."""
    _require_subscription(rec)
    _refuse_blocked_or_cancelled(rec, now)
    return replace(rec, auto_renew=auto_renew)


def activate(rec: CodeRecord, now: datetime) -> CodeRecord:
    """L1: records one more device; the first activation ever starts the term."""
    if rec.first_activate_time is None:
        rec = replace(rec, first_activate_time=now, term_start=now)
    return replace(rec, activation_count=rec.activation_count + 1)
