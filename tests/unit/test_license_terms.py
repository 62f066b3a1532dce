"""Unit tests of the pure license rules: L1-L5, L7 (times are passed in; no clock reads)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from keyslot_server.clock import FixedClock
from keyslot_server.errors import Code
from license_service import terms
from license_service.entitlements import FULL, LAPSED_UPDATES_ONLY, NOTHING, entitlements_for
from license_service.errors import LicenseError
from license_service.terms import CodeRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
GRACE = timedelta(days=30)


def sub(**kw) -> CodeRecord:
    base = dict(
        code="ABCDE12345FGHIJ67890",
        provider="shop",
        product_id="p",
        kind=terms.SUBSCRIPTION,
        coverage="UPDATES_AND_PROTECTION",
        duration=YEAR,
        grace=GRACE,
        max_devices=3,
        slot_kind="PER_DEVICE",
        trial=False,
        free=False,
        auto_renew=False,
        purchase_channel="ACCOUNT_PORTAL",
        provider_name="Shop",
        order_number="",
        issue_time=T0,
    )
    base.update(kw)
    return CodeRecord(**base)


def active(**kw) -> CodeRecord:
    """A subscription first activated at T0 + 1 day."""
    return terms.activate(sub(**kw), T0 + timedelta(days=1))


def reason_of(fn, *args) -> str:
    with pytest.raises(LicenseError) as err:
        fn(*args)
    assert err.value.code == Code.FAILED_PRECONDITION
    return err.value.reason


def test_l1_term_starts_at_first_activation_not_issue() -> None:
    rec = sub()
    assert terms.expire_at(rec, T0 + YEAR * 5) is None
    assert terms.phase_at(rec, T0 + YEAR * 5) == "NOT_ACTIVATED"
    first = T0 + timedelta(days=100)
    rec = terms.activate(rec, first)
    assert rec.first_activate_time == first and rec.activation_count == 1
    assert terms.expire_at(rec, first) == first + YEAR


def test_l1_later_activation_does_not_restart_the_term() -> None:
    rec = active()
    again = terms.activate(rec, T0 + timedelta(days=200))
    assert again.first_activate_time == rec.first_activate_time
    assert again.activation_count == 2
    assert terms.expire_at(again, T0) == terms.expire_at(rec, T0)


def test_l2_phase_is_derived_from_time() -> None:
    clock = FixedClock(T0 + timedelta(days=1))
    rec = terms.activate(sub(), clock.now())
    end = clock.now() + YEAR
    assert terms.phase_at(rec, end - timedelta(seconds=1)) == "ACTIVE"
    assert terms.phase_at(rec, end) == "GRACE"
    assert terms.phase_at(rec, end + GRACE - timedelta(seconds=1)) == "GRACE"
    assert terms.phase_at(rec, end + GRACE) == "EXPIRED"
    assert terms.grace_end_at(rec, end) == end + GRACE


def test_l2_unlimited_never_leaves_active_by_time() -> None:
    rec = active(duration=None)
    assert terms.phase_at(rec, T0 + YEAR * 90) == "ACTIVE"
    assert terms.expire_at(rec, T0) is None and terms.grace_end_at(rec, T0) is None


def test_l3_grace_zero_goes_straight_to_expired() -> None:
    rec = active(grace=timedelta(0))
    end = terms.expire_at(rec, T0)
    assert end is not None
    assert terms.phase_at(rec, end) == "EXPIRED"


def test_l3_grace_keeps_full_entitlements() -> None:
    rec = active()
    end = terms.expire_at(rec, T0)
    assert end is not None
    assert terms.entitlements_at(rec, end + timedelta(days=1)) == FULL


def test_l3_renewal_during_grace_continues_without_gap() -> None:
    rec = active()
    end = terms.expire_at(rec, T0)
    assert end is not None
    renewed = terms.renew(rec, 1, end + timedelta(days=10))
    assert terms.expire_at(renewed, end) == end + YEAR


def test_l4_manual_renewal_after_grace_starts_now() -> None:
    rec = active()
    now = T0 + YEAR * 3
    renewed = terms.renew(rec, 2, now)
    assert terms.expire_at(renewed, now) == now + 2 * YEAR
    assert terms.phase_at(renewed, now) == "ACTIVE"


def test_l4_auto_renewal_at_expiry_when_prepaid_exactly_once() -> None:
    rec = terms.record_prepayment(active(auto_renew=True), 1, T0)
    end = terms.expire_at(rec, T0)
    assert end is not None
    assert terms.apply_due_renewals(rec, end - timedelta(seconds=1)) == rec
    renewed = terms.apply_due_renewals(rec, end)
    assert renewed.prepaid_periods == 0 and renewed.auto_renewals_applied == 1
    assert terms.expire_at(renewed, end) == end + YEAR
    # Applying again (sweeper after a read, or a restart) adds nothing.
    assert terms.apply_due_renewals(renewed, end + timedelta(days=5)) == renewed


def test_l4_auto_renewal_catches_up_after_downtime_within_prepaid() -> None:
    rec = terms.record_prepayment(active(auto_renew=True), 2, T0)
    much_later = T0 + YEAR * 10
    renewed = terms.apply_due_renewals(rec, much_later)
    assert renewed.prepaid_periods == 0 and renewed.periods == 3
    assert terms.phase_at(renewed, much_later) == "EXPIRED"


def test_l4_not_prepaid_enters_grace() -> None:
    rec = active(auto_renew=True)
    end = terms.expire_at(rec, T0)
    assert end is not None
    assert terms.apply_due_renewals(rec, end) == rec
    assert terms.phase_at(rec, end) == "GRACE"


def test_l4_prepaid_without_auto_renew_does_not_renew() -> None:
    rec = terms.record_prepayment(active(auto_renew=False), 1, T0)
    end = terms.expire_at(rec, T0)
    assert terms.apply_due_renewals(rec, end + timedelta(days=1)) == rec


def test_l5_pause_stops_clock_and_resume_moves_expiry() -> None:
    rec = active()
    end = terms.expire_at(rec, T0)
    assert end is not None
    paused_at = T0 + timedelta(days=50)
    paused = terms.pause(rec, paused_at)
    assert terms.status_at(paused, paused_at) == "PAUSED"
    # While paused the expiry moves along with now.
    assert terms.expire_at(paused, paused_at + timedelta(days=3)) == end + timedelta(days=3)
    resumed = terms.resume(paused, paused_at + timedelta(days=20))
    assert terms.expire_at(resumed, T0) == end + timedelta(days=20)
    assert terms.status_at(resumed, T0) == "ACTIVE"


def test_l5_pause_refusals() -> None:
    rec = active()
    paused = terms.pause(rec, T0 + timedelta(days=2))
    assert reason_of(terms.pause, paused, T0 + timedelta(days=3)) == "ALREADY_PAUSED"
    assert reason_of(terms.resume, rec, T0) == "NOT_PAUSED"
    lic = active(kind=terms.LICENSE)
    assert reason_of(terms.pause, lic, T0) == "NOT_A_SUBSCRIPTION"
    assert reason_of(terms.pause, rec, T0 + YEAR * 3) == "CODE_EXPIRED"
    assert reason_of(terms.pause, terms.block(rec, "x"), T0) == "CODE_BLOCKED"


def test_l5_cancel_at_period_end_no_renewal_no_grace() -> None:
    rec = terms.record_prepayment(active(auto_renew=True), 3, T0)
    now = T0 + timedelta(days=10)
    cancelled = terms.cancel(rec, False, now)
    end = terms.expire_at(cancelled, now)
    assert end is not None
    assert terms.status_at(cancelled, end - timedelta(seconds=1)) == "ACTIVE"
    assert terms.apply_due_renewals(cancelled, end + timedelta(days=1)) == cancelled
    assert terms.status_at(cancelled, end) == "CANCELLED"
    assert terms.phase_at(cancelled, end) == "EXPIRED"  # no grace afterwards
    assert terms.entitlements_at(cancelled, end) == NOTHING
    assert reason_of(terms.cancel, cancelled, False, now) == "ALREADY_CANCELLED"


def test_l5_cancel_immediately() -> None:
    rec = active()
    now = T0 + timedelta(days=10)
    cancelled = terms.cancel(rec, True, now)
    assert terms.status_at(cancelled, now) == "CANCELLED"
    assert terms.entitlements_at(cancelled, now) == NOTHING
    assert reason_of(terms.cancel, cancelled, True, now) == "ALREADY_CANCELLED"
    assert reason_of(terms.renew, cancelled, 1, now) == "CODE_CANCELLED"


def test_renew_refusals() -> None:
    assert reason_of(terms.renew, active(duration=None), 1, T0) == "UNLIMITED_TERM"
    assert reason_of(terms.renew, active(kind=terms.LICENSE), 1, T0) == "NOT_A_SUBSCRIPTION"
    assert reason_of(terms.unblock, active()) == "NOT_BLOCKED"
    assert reason_of(terms.block, terms.block(active(), "x"), "y") == "ALREADY_BLOCKED"


# --- L7: every cell of the table -------------------------------------------------------------


@pytest.mark.parametrize("coverage", ["UPDATES", "UPDATES_AND_PROTECTION"])
@pytest.mark.parametrize("phase", ["ACTIVE", "GRACE"])
def test_l7_active_and_grace_full_for_both_coverages(phase: str, coverage: str) -> None:
    assert entitlements_for("ACTIVE", phase, coverage) == FULL


def test_l7_expired_updates_coverage_keeps_protection_and_scans() -> None:
    assert entitlements_for("ACTIVE", "EXPIRED", "UPDATES") == LAPSED_UPDATES_ONLY


def test_l7_expired_updates_and_protection_coverage_nothing() -> None:
    assert entitlements_for("ACTIVE", "EXPIRED", "UPDATES_AND_PROTECTION") == NOTHING


def test_l7_paused_updates_coverage_keeps_protection_and_scans() -> None:
    assert entitlements_for("PAUSED", "ACTIVE", "UPDATES") == LAPSED_UPDATES_ONLY


def test_l7_paused_updates_and_protection_coverage_nothing() -> None:
    assert entitlements_for("PAUSED", "ACTIVE", "UPDATES_AND_PROTECTION") == NOTHING


@pytest.mark.parametrize("coverage", ["UPDATES", "UPDATES_AND_PROTECTION"])
@pytest.mark.parametrize("status", ["BLOCKED", "CANCELLED"])
@pytest.mark.parametrize("phase", ["ACTIVE", "GRACE", "EXPIRED"])
def test_l7_blocked_and_cancelled_nothing(status: str, phase: str, coverage: str) -> None:
    assert entitlements_for(status, phase, coverage) == NOTHING


def test_l7_entitlements_follow_the_record_over_time() -> None:
    rec = active(coverage="UPDATES")
    end = terms.expire_at(rec, T0)
    assert end is not None
    assert terms.entitlements_at(rec, end + GRACE) == LAPSED_UPDATES_ONLY
    assert terms.entitlements_at(replace(rec, coverage="UPDATES_AND_PROTECTION"), end + GRACE) == ()


# --- short and very long terms: exact to the second, never an overflow (§2 terms) -------------

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


def test_l2_one_hour_term_with_ten_minutes_grace_changes_phase_at_the_second() -> None:
    start = T0 + timedelta(seconds=7)
    rec = terms.activate(sub(duration=HOUR, grace=timedelta(minutes=10)), start)
    end = start + HOUR
    assert terms.expire_at(rec, start) == end
    assert terms.grace_end_at(rec, start) == end + timedelta(minutes=10)
    walk = [
        (end - SECOND, "ACTIVE"),
        (end, "GRACE"),
        (end + timedelta(minutes=10) - SECOND, "GRACE"),
        (end + timedelta(minutes=10), "EXPIRED"),
    ]
    assert [terms.phase_at(rec, at) for at, _ in walk] == [phase for _, phase in walk]


def test_l4_one_second_term_renews_every_passed_expiry_once_within_prepaid() -> None:
    rec = terms.record_prepayment(
        terms.activate(sub(duration=SECOND, grace=timedelta(0), auto_renew=True), T0), 100, T0
    )
    rec = replace(rec, prepaid_periods=5_000_000)  # counted, not looped
    end = T0 + SECOND
    assert terms.apply_due_renewals(rec, end - timedelta(microseconds=1)) == rec
    at_end = terms.apply_due_renewals(rec, end)
    assert at_end.auto_renewals_applied == 1 and terms.expire_at(at_end, end) == end + SECOND
    # 3 s and a half after the first expiry: the renewals at end, +1, +2 and +3 s.
    later = terms.apply_due_renewals(rec, end + timedelta(seconds=3, milliseconds=500))
    assert later.auto_renewals_applied == 4
    assert terms.expire_at(later, end) == end + 4 * SECOND
    assert terms.apply_due_renewals(later, end + timedelta(seconds=3, milliseconds=999)) == later
    # A long outage renews through every prepaid period and then lapses.
    gone = terms.apply_due_renewals(rec, T0 + YEAR)
    assert gone.prepaid_periods == 0 and gone.periods == 5_000_001


def test_l5_one_hour_pause_and_resume_move_expiry_by_the_paused_seconds() -> None:
    rec = terms.activate(sub(duration=HOUR, grace=timedelta(minutes=10)), T0)
    paused = terms.pause(rec, T0 + timedelta(minutes=20))
    resumed = terms.resume(paused, T0 + timedelta(minutes=27, seconds=13))
    assert terms.expire_at(resumed, T0) == T0 + HOUR + timedelta(minutes=7, seconds=13)


def test_terms_of_centuries_end_at_the_last_timestamp_instead_of_overflowing() -> None:
    century = timedelta(days=36525)
    rec = terms.activate(sub(duration=century, grace=century), T0)
    for _ in range(100):
        rec = terms.renew(rec, 100, T0 + timedelta(days=1))
    assert terms.expire_at(rec, T0) == terms.LATEST
    assert terms.grace_end_at(rec, T0) == terms.LATEST
    assert terms.phase_at(rec, T0 + YEAR) == "ACTIVE"
    paused = terms.pause(rec, T0 + YEAR)
    assert terms.expire_at(paused, T0 + 2 * YEAR) == terms.LATEST
