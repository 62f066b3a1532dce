"""License service e2e: lifecycle (L2-L5), auto-renewal (L4), routing (L8), S3 and S4."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from keyslot.license.v1 import license_service_pb2 as lpb

from keyslot_server.timeconv import from_timestamp
from tests.e2e.test_license_codes import error_of, get, issue
from tests.e2e.test_license_grants import activated
from tests.harness import Services, rich_error, wait_for

YEAR = timedelta(days=365)
FULL = [
    lpb.ENTITLEMENT_PROTECTION,
    lpb.ENTITLEMENT_SCANS,
    lpb.ENTITLEMENT_DATABASE_UPDATES,
    lpb.ENTITLEMENT_CLOUD_REPUTATION,
]


def move_to(services: Services, at: datetime) -> datetime:
    """Moves the shared test clock forward to ``at`` (never backward)."""
    now = services.clock.now()
    assert at >= now
    return services.clock.advance(at - now)


def expiry(code: lpb.Code) -> datetime:
    return from_timestamp(code.expire_time)


def test_l2_l3_l7_phases_over_time(services: Services) -> None:
    code = activated(services, coverage=lpb.COVERAGE_UPDATES)
    start = services.clock.now()
    assert get(services, code).phase == lpb.PHASE_ACTIVE
    move_to(services, start + YEAR + timedelta(days=1))
    grace = get(services, code)
    assert grace.phase == lpb.PHASE_GRACE and list(grace.entitlements) == FULL
    assert from_timestamp(grace.grace_end_time) == start + YEAR + timedelta(days=30)
    move_to(services, start + YEAR + timedelta(days=31))
    gone = get(services, code)
    assert gone.phase == lpb.PHASE_EXPIRED
    assert list(gone.entitlements) == [lpb.ENTITLEMENT_PROTECTION, lpb.ENTITLEMENT_SCANS]


def test_l5_pause_resume_moves_expiry(services: Services) -> None:
    code = activated(services)
    caller = services.license_as("provider")
    end = expiry(get(services, code))
    paused = caller.PauseSubscription(lpb.PauseSubscriptionRequest(code=code)).code
    assert paused.status == lpb.CODE_STATUS_PAUSED and paused.HasField("pause_time")
    assert list(paused.entitlements) == []  # UPDATES_AND_PROTECTION paused: nothing (L7)
    err = rich_error(error_of(caller.PauseSubscription, lpb.PauseSubscriptionRequest(code=code)))
    assert err.reason == "ALREADY_PAUSED"
    services.clock.advance(timedelta(days=12))
    resumed = caller.ResumeSubscription(lpb.ResumeSubscriptionRequest(code=code)).code
    assert resumed.status == lpb.CODE_STATUS_ACTIVE
    assert expiry(resumed) == end + timedelta(days=12)
    err = rich_error(error_of(caller.ResumeSubscription, lpb.ResumeSubscriptionRequest(code=code)))
    assert err.reason == "NOT_PAUSED"


def test_l4_manual_renewal_is_idempotent_by_request_id(services: Services) -> None:
    code = activated(services)
    caller = services.license_as("provider")
    end = expiry(get(services, code))
    request = lpb.RenewSubscriptionRequest(code=code, periods=2, request_id="renew-" + code)
    first = caller.RenewSubscription(request).code
    again = caller.RenewSubscription(request).code
    assert expiry(first) == expiry(again) == end + 2 * YEAR
    assert expiry(get(services, code)) == end + 2 * YEAR


def test_l3_renewal_in_grace_continues_without_gap_after_grace_from_now(
    services: Services,
) -> None:
    caller = services.license_as("provider")
    in_grace = activated(services)
    late = activated(services)
    end = expiry(get(services, in_grace))
    move_to(services, end + timedelta(days=5))
    renewed = caller.RenewSubscription(lpb.RenewSubscriptionRequest(code=in_grace, periods=1)).code
    assert expiry(renewed) == end + YEAR and renewed.phase == lpb.PHASE_ACTIVE
    now = move_to(services, end + timedelta(days=60))
    restarted = caller.RenewSubscription(lpb.RenewSubscriptionRequest(code=late, periods=1)).code
    assert expiry(restarted) == now + YEAR


def test_l4_auto_renewal_at_expiry_when_prepaid(services: Services) -> None:
    code = activated(services, auto_renew=True)
    caller = services.license_as("provider")
    paid = caller.RecordPrepayment(lpb.RecordPrepaymentRequest(code=code, periods=1)).code
    assert paid.prepaid_periods == 1
    end = expiry(paid)
    move_to(services, end + timedelta(hours=1))
    renewed = get(services, code)  # evaluated on read, whether or not the sweeper ran
    assert renewed.phase == lpb.PHASE_ACTIVE and renewed.prepaid_periods == 0
    assert expiry(renewed) == end + YEAR
    move_to(services, end + YEAR + timedelta(hours=1))
    lapsed = get(services, code)  # nothing prepaid for the next period: grace (L4)
    assert lapsed.phase == lpb.PHASE_GRACE and expiry(lapsed) == end + YEAR


def test_l4_auto_renewal_applied_once_when_down_at_expiry(fresh_services: Services) -> None:
    services = fresh_services
    code = activated(services, auto_renew=True)
    caller = services.license_as("provider")
    end = expiry(caller.RecordPrepayment(lpb.RecordPrepaymentRequest(code=code, periods=1)).code)
    services.license.kill()
    move_to(services, end + timedelta(days=3))
    services.start_license()
    # The sweeper stores the renewal after the restart; wait for its work, then read.
    wait_for(
        lambda: re.search(
            r"sweep: \d+ grants expired, 1 codes renewed", services.license.log.read_text()
        ),
        "the sweeper to renew the code",
    )
    for _ in range(3):
        code_now = get(services, code)
        assert expiry(code_now) == end + YEAR and code_now.prepaid_periods == 0
    services.clock.advance(timedelta(days=1))
    assert expiry(get(services, code)) == end + YEAR


def test_l5_cancel_at_period_end_then_no_renewal_no_grace(services: Services) -> None:
    code = activated(services, auto_renew=True)
    caller = services.license_as("provider")
    caller.RecordPrepayment(lpb.RecordPrepaymentRequest(code=code, periods=2))
    cancelled = caller.CancelSubscription(lpb.CancelSubscriptionRequest(code=code)).code
    assert cancelled.cancel_at_period_end and cancelled.status == lpb.CODE_STATUS_ACTIVE
    err = rich_error(error_of(caller.CancelSubscription, lpb.CancelSubscriptionRequest(code=code)))
    assert err.reason == "ALREADY_CANCELLED"
    end = expiry(cancelled)
    move_to(services, end + timedelta(minutes=1))
    after = get(services, code)
    assert after.status == lpb.CODE_STATUS_CANCELLED and after.phase == lpb.PHASE_EXPIRED
    assert expiry(after) == end and list(after.entitlements) == []


def test_l5_cancel_immediately(services: Services) -> None:
    code = activated(services)
    caller = services.license_as("provider")
    now = caller.CancelSubscription(lpb.CancelSubscriptionRequest(code=code, immediately=True))
    assert now.code.status == lpb.CODE_STATUS_CANCELLED and list(now.code.entitlements) == []
    err = rich_error(
        error_of(caller.RenewSubscription, lpb.RenewSubscriptionRequest(code=code, periods=1))
    )
    assert err.reason == "CODE_CANCELLED"


def test_s4_refusals_change_nothing(services: Services) -> None:
    license_code = activated(services, kind=lpb.CODE_KIND_LICENSE)
    caller = services.license_as("provider")
    before = get(services, license_code)
    for call, request, reason in (
        (caller.PauseSubscription, lpb.PauseSubscriptionRequest(code=license_code), None),
        (
            caller.RenewSubscription,
            lpb.RenewSubscriptionRequest(code=license_code, periods=1),
            None,
        ),
        (
            caller.RecordPrepayment,
            lpb.RecordPrepaymentRequest(code=license_code, periods=1),
            None,
        ),
        (caller.CancelSubscription, lpb.CancelSubscriptionRequest(code=license_code), None),
    ):
        err = rich_error(error_of(call, request))
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION
        assert err.reason == (reason or "NOT_A_SUBSCRIPTION")
    sub = activated(services)
    sub_before = get(services, sub)
    for request, field in (
        (lpb.RenewSubscriptionRequest(code=sub, periods=0), "periods"),
        (lpb.RenewSubscriptionRequest(code=sub, periods=101), "periods"),
        (lpb.RenewSubscriptionRequest(code=sub, periods=1, request_id="r" * 65), "request_id"),
    ):
        err = rich_error(error_of(caller.RenewSubscription, request))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.metadata["field"] == field
    err = rich_error(error_of(caller.BlockCode, lpb.BlockCodeRequest(code=sub, reason="x" * 501)))
    assert err.metadata["field"] == "reason"
    assert get(services, license_code) == before
    assert get(services, sub) == sub_before


# --- L8 ---


def test_l8_route_by_purchase_and_by_code(services: Services) -> None:
    caller = services.license_as("provider")
    for channel, order, route in (
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "ALLSOFT-22123406", "RESELLER_ALLSOFT"),
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "A221234065", "RESELLER_ALLSOFT"),
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "2A123BEC45D", "RESELLER_NEXWAY"),
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "3B123FAC76F", "RESELLER_NEXWAY"),
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "ALLSOFT22", "OWN_SUPPORT"),
        (lpb.PURCHASE_CHANNEL_ONLINE_STORE, "4A1", "OWN_SUPPORT"),
        (lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL, "", "OWN_SUPPORT"),
        (lpb.PURCHASE_CHANNEL_ISP, "", "PROVIDER_SUPPORT"),
        (lpb.PURCHASE_CHANNEL_PARTNER, "", "PROVIDER_SUPPORT"),
    ):
        reply = caller.GetAutoRenewalRoute(
            lpb.GetAutoRenewalRouteRequest(purchase_channel=channel, order_number=order)
        )
        assert lpb.AutoRenewalRoute.Name(reply.route) == "AUTO_RENEWAL_ROUTE_" + route
        assert reply.instructions
    code = issue(
        services,
        auto_renew=True,
        purchase_channel=lpb.PURCHASE_CHANNEL_ONLINE_STORE,
        order_number="2A123BEC45D",
    )[0]
    reply = caller.GetAutoRenewalRoute(lpb.GetAutoRenewalRouteRequest(code=code))
    assert reply.route == lpb.AUTO_RENEWAL_ROUTE_RESELLER_NEXWAY
    err = rich_error(error_of(caller.GetAutoRenewalRoute, lpb.GetAutoRenewalRouteRequest()))
    assert err.metadata["field"] == "purchase_channel"


def test_l8_set_auto_renewal_self_service_only_where_keyslot_owns_it(services: Services) -> None:
    caller = services.license_as("provider")
    ours = issue(services, auto_renew=True)[0]  # bought in the account portal
    reply = caller.SetAutoRenewal(lpb.SetAutoRenewalRequest(code=ours, auto_renew=False))
    assert reply.route == lpb.AUTO_RENEWAL_ROUTE_SELF_SERVICE
    assert not reply.code.auto_renew and not get(services, ours).auto_renew
    resold = issue(
        services,
        auto_renew=True,
        purchase_channel=lpb.PURCHASE_CHANNEL_ONLINE_STORE,
        order_number="ALLSOFT-22123406",
    )[0]
    reply = caller.SetAutoRenewal(lpb.SetAutoRenewalRequest(code=resold, auto_renew=False))
    assert reply.route == lpb.AUTO_RENEWAL_ROUTE_RESELLER_ALLSOFT
    assert reply.code.auto_renew and get(services, resold).auto_renew
    isp = issue(services, auto_renew=True, purchase_channel=lpb.PURCHASE_CHANNEL_ISP)[0]
    reply = caller.SetAutoRenewal(lpb.SetAutoRenewalRequest(code=isp, auto_renew=False))
    assert reply.route == lpb.AUTO_RENEWAL_ROUTE_PROVIDER_SUPPORT


def test_l8_support_request_stored_and_fields_named(services: Services) -> None:
    caller = services.license_as("portal")
    good = lpb.SupportRequest(
        reason="Please stop renewing",
        purchase_date="2025-06-01",
        full_name="Test Person",
        email="test.person@example.com",
        order_number="B123",
    )
    stored = caller.CreateSupportRequest(lpb.CreateSupportRequestRequest(support_request=good))
    assert stored.support_request.support_request_id.startswith("sr_")
    assert stored.support_request.HasField("create_time")
    err = rich_error(
        error_of(
            caller.CreateSupportRequest,
            lpb.CreateSupportRequestRequest(
                support_request=lpb.SupportRequest(
                    purchase_date="2999-01-01", email="not-an-email", order_number="x" * 65
                )
            ),
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in err.field_violations} == {
        "support_request.reason",
        "support_request.purchase_date",
        "support_request.full_name",
        "support_request.email",
        "support_request.order_number",
    }
    err = rich_error(
        error_of(
            caller.CreateSupportRequest,
            lpb.CreateSupportRequestRequest(
                support_request=lpb.SupportRequest(
                    reason="r", purchase_date="1.6.2025", full_name="n", email="a@b.fi"
                )
            ),
        )
    )
    assert err.metadata["field"] == "support_request.purchase_date"


# --- S3 ---


def test_s3_failed_lookups_are_rate_limited_per_caller(services: Services) -> None:
    mine = issue(services, who="provider2")[0]
    guesser = services.license_as("provider2")
    for i in range(20):  # the default budget: 20 failed look-ups a minute
        err = rich_error(
            error_of(guesser.GetCode, lpb.GetCodeRequest(code=f"ZZZZZ-ZZZZZ-ZZZZZ-{i:05d}"))
        )
        assert err.reason == "CODE_NOT_FOUND"
    raw = error_of(guesser.GetCode, lpb.GetCodeRequest(code=mine))  # even a good code now
    assert raw.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_error(raw).reason == "TOO_MANY_FAILED_LOOKUPS"
    status = rpc_status.from_call(raw)
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0 < info.retry_delay.seconds <= 60
    # Another caller is not affected; the peer is never limited here.
    assert get(services, issue(services)[0]).code
    services.clock.advance(timedelta(seconds=61))
    assert guesser.GetCode(lpb.GetCodeRequest(code=mine)).code.code == mine
