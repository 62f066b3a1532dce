"""Short terms (§2): any whole number of seconds up to 100 years, exact to the second.

A one-hour trial with ten minutes of grace walks ACTIVE -> GRACE -> EXPIRED at the
right seconds (L1, L2, L3, L7) on the license service and in the device's check-in;
renewal, pause and resume (L3, L4, L5), automatic renewal (L4) and a reserve's
take-over (D9) of short terms move at the second. Refusals name the field (S4).
Both services run as real processes; time moves only with the TestClock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from keyslot_server.timeconv import from_timestamp
from tests.e2e.device_support import activate, connect, issue, new_account, product
from tests.harness import Services, rich_error, wait_for

HOUR = timedelta(hours=1)
TEN_MINUTES = timedelta(minutes=10)
SECOND = timedelta(seconds=1)
CENTURY_S = 36525 * 86400  # 100 years, the longest term and grace
FULL = [
    lpb.ENTITLEMENT_PROTECTION,
    lpb.ENTITLEMENT_SCANS,
    lpb.ENTITLEMENT_DATABASE_UPDATES,
    lpb.ENTITLEMENT_CLOUD_REPUTATION,
]
LAPSED_UPDATES = [lpb.ENTITLEMENT_PROTECTION, lpb.ENTITLEMENT_SCANS]  # L7, coverage UPDATES


def seconds(n: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=n, nanos=nanos)


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A private pair for this module: its clock moves by seconds and minutes, never back."""
    svc = Services(Path(tmp_path_factory.mktemp("short-terms")))
    try:
        yield svc.start()
    finally:
        svc.stop()


def move_to(services: Services, at: datetime) -> None:
    assert at >= services.clock.now(), "the test clock only moves forward"
    services.clock.set(at)


def get(services: Services, code: str) -> lpb.Code:
    return services.license_as("provider").GetCode(lpb.GetCodeRequest(code=code)).code


def check_in(services: Services, credential: str) -> dpb.CheckInResponse:
    return services.device_as(credential).CheckIn(dpb.CheckInRequest())


def expiry(code: lpb.Code) -> datetime:
    assert code.HasField("expire_time"), code
    return from_timestamp(code.expire_time)


def one_hour(services: Services, **terms) -> str:  # type: ignore[no-untyped-def]
    """A code of one hour with ten minutes of grace (LICENSE unless ``kind`` says)."""
    values = dict(duration=seconds(3600), grace_period=seconds(600), max_devices=1)
    values.update(terms)
    return issue(services, **values)[0]


# --- L1, L2, L3, L7: the walk --------------------------------------------------------------


def test_l1_one_hour_trial_walks_active_grace_expired_to_the_second(short: Services) -> None:
    code = one_hour(short, trial=True, coverage=lpb.COVERAGE_UPDATES)
    issued = get(short, code)
    assert issued.terms.duration == seconds(3600) and issued.terms.grace_period == seconds(600)
    # L1: the hour runs from the first activation, not from issue.
    short.clock.advance(timedelta(minutes=7, seconds=13))
    _, credential = connect(short, new_account(short))
    start = short.clock.now()
    activated = activate(short, credential, code).code
    assert from_timestamp(activated.first_activate_time) == start
    end = start + HOUR
    assert expiry(activated) == end
    assert from_timestamp(activated.grace_end_time) == end + TEN_MINUTES
    walk = [
        (end - SECOND, lpb.PHASE_ACTIVE, FULL),
        (end, lpb.PHASE_GRACE, FULL),  # L3: grace keeps full functionality
        (end + TEN_MINUTES - SECOND, lpb.PHASE_GRACE, FULL),
        (end + TEN_MINUTES, lpb.PHASE_EXPIRED, LAPSED_UPDATES),
    ]
    for at, phase, entitled in walk:
        move_to(short, at)
        for seen in (get(short, code), check_in(short, credential).code):
            assert (seen.code, seen.phase, list(seen.entitlements)) == (code, phase, entitled), at
            assert expiry(seen) == end


def test_l3_zero_grace_one_hour_code_expires_at_its_expiry_second(short: Services) -> None:
    code = one_hour(short, grace_period=seconds(0))
    _, credential = connect(short, new_account(short))
    end = expiry(activate(short, credential, code).code)
    move_to(short, end - SECOND)
    assert check_in(short, credential).code.phase == lpb.PHASE_ACTIVE
    move_to(short, end)
    seen = check_in(short, credential).code
    assert seen.phase == lpb.PHASE_EXPIRED and list(seen.entitlements) == []


# --- S4: the range of a term ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", seconds(0)),
        ("duration", seconds(-3600)),
        ("duration", seconds(0, 500_000_000)),  # half a second
        ("duration", seconds(3600, 1)),  # fractional: nanos must be 0
        ("duration", seconds(-1, -1)),
        ("duration", seconds(CENTURY_S + 1)),  # a second past 100 years
        ("grace_period", seconds(-1)),
        ("grace_period", seconds(600, 250_000_000)),
        ("grace_period", seconds(CENTURY_S + 1)),
    ],
    ids=[
        "duration-0s",
        "duration-negative",
        "duration-half-second",
        "duration-fractional",
        "duration-negative-fractional",
        "duration-over-100-years",
        "grace-negative",
        "grace-fractional",
        "grace-over-100-years",
    ],
)
def test_s4_term_lengths_outside_whole_seconds_up_to_100_years_name_the_field(
    short: Services, field: str, value: duration_pb2.Duration
) -> None:
    product_id = product(short)
    provider = short.license_as("provider")
    with pytest.raises(grpc.RpcError) as caught:
        issue(short, product_id, **{field: value})
    err = rich_error(caught.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.field_violations] == [f"terms.{field}"]
    listed = provider.ListCodes(lpb.ListCodesRequest(product_id=product_id)).codes
    assert list(listed) == []  # nothing issued


@pytest.mark.parametrize(
    ("duration", "grace"),
    [(1, 0), (3600, 600), (12 * 3600, 3600), (CENTURY_S, CENTURY_S)],
    ids=["1s-no-grace", "1h-10min", "12h-1h", "100y-100y"],
)
def test_l1_any_whole_number_of_seconds_up_to_100_years_is_a_term(
    short: Services, duration: int, grace: int
) -> None:
    code = issue(short, duration=seconds(duration), grace_period=seconds(grace))[0]
    terms = get(short, code).terms
    assert terms.duration == seconds(duration) and terms.grace_period == seconds(grace)


# --- L3, L4, L5: renewal and pause of a short subscription ---------------------------------


def test_l4_l5_short_subscription_renewal_and_pause_are_exact_to_the_second(
    short: Services,
) -> None:
    provider = short.license_as("provider")
    code = one_hour(short, kind=lpb.CODE_KIND_SUBSCRIPTION)
    _, credential = connect(short, new_account(short))
    start = short.clock.now()
    assert expiry(activate(short, credential, code).code) == start + HOUR
    renewed = provider.RenewSubscription(lpb.RenewSubscriptionRequest(code=code, periods=2)).code
    end = start + 3 * HOUR
    assert expiry(renewed) == end
    # L5: paused for 17 min 3 s, the expiry moves by exactly that.
    move_to(short, start + timedelta(minutes=10, seconds=7))
    paused = provider.PauseSubscription(lpb.PauseSubscriptionRequest(code=code)).code
    assert paused.status == lpb.CODE_STATUS_PAUSED
    move_to(short, start + timedelta(minutes=27, seconds=10))
    resumed = provider.ResumeSubscription(lpb.ResumeSubscriptionRequest(code=code)).code
    end += timedelta(minutes=17, seconds=3)
    assert expiry(resumed) == end and resumed.phase == lpb.PHASE_ACTIVE
    move_to(short, end - SECOND)
    assert check_in(short, credential).code.phase == lpb.PHASE_ACTIVE
    # L3: renewed 4 min 59 s into grace, the term goes on from its expiry, no gap.
    move_to(short, end + timedelta(minutes=4, seconds=59))
    assert get(short, code).phase == lpb.PHASE_GRACE
    again = provider.RenewSubscription(lpb.RenewSubscriptionRequest(code=code, periods=1)).code
    assert expiry(again) == end + HOUR and again.phase == lpb.PHASE_ACTIVE
    assert check_in(short, credential).code.phase == lpb.PHASE_ACTIVE
    # After grace a renewal starts a new hour now.
    now = end + HOUR + TEN_MINUTES
    move_to(short, now)
    assert get(short, code).phase == lpb.PHASE_EXPIRED
    restarted = provider.RenewSubscription(lpb.RenewSubscriptionRequest(code=code, periods=1))
    assert expiry(restarted.code) == now + HOUR


def test_l4_one_hour_prepaid_auto_renewal_applied_exactly_once(
    fresh_services: Services,
) -> None:
    services = fresh_services
    provider = services.license_as("provider")
    code = one_hour(services, kind=lpb.CODE_KIND_SUBSCRIPTION, auto_renew=True)
    _, credential = connect(services, new_account(services))
    end = expiry(activate(services, credential, code).code)
    paid = provider.RecordPrepayment(lpb.RecordPrepaymentRequest(code=code, periods=1)).code
    assert paid.prepaid_periods == 1 and expiry(paid) == end
    move_to(services, end - SECOND)
    before = get(services, code)
    assert (expiry(before), before.prepaid_periods, before.phase) == (end, 1, lpb.PHASE_ACTIVE)
    move_to(services, end)
    renewed = get(services, code)  # evaluated on read at the expiry second (L4)
    assert (expiry(renewed), renewed.prepaid_periods) == (end + HOUR, 0)
    assert renewed.phase == lpb.PHASE_ACTIVE
    assert check_in(services, credential).code.phase == lpb.PHASE_ACTIVE
    # The sweeper stores the same renewal; reads, writes and passes add no second one.
    wait_for(
        lambda: _renewals_stored(services) >= 1,
        "the sweeper to store the renewal",
    )
    move_to(services, end + HOUR - SECOND)
    for _ in range(3):
        seen = get(services, code)
        assert (expiry(seen), seen.prepaid_periods, seen.phase) == (
            end + HOUR,
            0,
            lpb.PHASE_ACTIVE,
        )
    # Nothing prepaid for the period after: grace at the second it ends (L4).
    move_to(services, end + HOUR)
    lapsed = get(services, code)
    assert lapsed.phase == lpb.PHASE_GRACE and expiry(lapsed) == end + HOUR
    assert from_timestamp(lapsed.grace_end_time) == end + HOUR + TEN_MINUTES
    assert _renewals_stored(services) == 1


def _renewals_stored(services: Services) -> int:
    """Codes the license sweeper has renewed so far, from its log."""
    found = re.findall(r"sweep: [0-9]+ grants expired, ([0-9]+) codes renewed", _log(services))
    return sum(map(int, found))


def _log(services: Services) -> str:
    return services.license.log.read_text()


# --- D9: a reserve takes over at the expiry second -----------------------------------------


def test_d9_reserve_takes_over_at_the_expiry_second_of_a_one_hour_code(
    short: Services,
) -> None:
    account = new_account(short)
    device, credential = connect(short, account)
    current = one_hour(short)
    end = expiry(activate(short, credential, current).code)
    reserve_code = issue(short, days=365, max_devices=1)[0]
    added = short.device_as(credential).AddReserveCode(
        dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve_code)
    )
    assert added.reserve.state == dpb.RESERVE_STATE_WAITING
    move_to(short, end - SECOND)
    before = check_in(short, credential)
    assert before.code.code == current and list(before.code.entitlements) == FULL
    assert before.reserve.state == dpb.RESERVE_STATE_WAITING
    move_to(short, end)
    after = check_in(short, credential)  # the sweeper may have run it already: same answer
    assert after.device.current_code == reserve_code and after.code.code == reserve_code
    assert after.code.phase == lpb.PHASE_ACTIVE and list(after.code.entitlements) == FULL
    assert after.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    # L1: the reserve's term starts at the take-over second, right where the old one ended.
    assert from_timestamp(after.code.first_activate_time) == end
    assert expiry(after.code) == end + timedelta(days=365)
