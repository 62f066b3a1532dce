"""License service e2e: the grant RPCs of the handshake (H1, H2, H3, L1, D5 license side)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import grpc
from keyslot.license.v1 import license_service_pb2 as lpb

from keyslot_server.timeconv import from_timestamp, to_timestamp
from tests.e2e.test_license_codes import error_of, get, issue, new_product
from tests.harness import Services, rich_error, wait_for


def prepare_request(services: Services, code: str, **kw) -> lpb.PrepareGrantRequest:
    device = lpb.DeviceContext(
        device_id=kw.pop("device_id", "dev-" + secrets.token_hex(4)),
        app_version=kw.pop("app_version", "10.2"),
        region=kw.pop("region", "FI"),
        current_code=kw.pop("current_code", ""),
    )
    caller = lpb.CallerContext(
        channel=kw.pop("channel", lpb.CALLER_CHANNEL_PORTAL), role=kw.pop("role", 0)
    )
    hold = kw.pop("hold", timedelta(hours=1))
    return lpb.PrepareGrantRequest(
        code=code,
        purpose=kw.pop("purpose", lpb.GRANT_PURPOSE_SEND),
        device=device,
        caller=caller,
        request_id=kw.pop("request_id", "prep-" + secrets.token_hex(6)),
        expire_time=to_timestamp(services.clock.now() + hold),
    )


def prepare(services: Services, code: str, **kw) -> lpb.Grant:
    peer = services.license_as("peer")
    return peer.PrepareGrant(prepare_request(services, code, **kw)).grant


def commit(services: Services, grant_id: str, request_id: str | None = None) -> lpb.Grant:
    request = lpb.CommitGrantRequest(
        grant_id=grant_id, request_id=request_id or "commit-" + secrets.token_hex(6)
    )
    return services.license_as("peer").CommitGrant(request).grant


def refusal(services: Services, code: str, **kw) -> str:
    err = error_of(services.license_as("peer").PrepareGrant, prepare_request(services, code, **kw))
    view = rich_error(err)
    assert view.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND), view
    return view.reason


def activated(services: Services, **overrides) -> str:
    """A code activated on one device now (its term runs from now, L1)."""
    code = issue(services, **overrides)[0]
    grant = prepare(services, code, purpose=lpb.GRANT_PURPOSE_ACTIVATE)
    commit(services, grant.grant_id)
    return code


def test_h1_prepare_commit_sets_first_activation_code_wide(services: Services) -> None:
    code = issue(services)[0]
    grant = prepare(services, code, device_id="dev-a")
    assert grant.state == lpb.GRANT_STATE_PREPARED and grant.grant_id
    assert grant.code_details.terms.max_devices == 3
    assert grant.code_details.phase == lpb.PHASE_NOT_ACTIVATED
    committed = commit(services, grant.grant_id)
    now = services.clock.now()
    assert committed.state == lpb.GRANT_STATE_COMMITTED
    details = committed.code_details
    assert details.phase == lpb.PHASE_ACTIVE and details.activation_count == 1
    first = from_timestamp(details.first_activate_time)
    assert first == now
    assert from_timestamp(details.expire_time) == now + timedelta(days=365)
    # L1: a second device does not restart the term.
    services.clock.advance(timedelta(days=10))
    second = commit(services, prepare(services, code, device_id="dev-b").grant_id)
    assert from_timestamp(second.code_details.first_activate_time) == first
    assert from_timestamp(second.code_details.expire_time) == first + timedelta(days=365)
    assert second.code_details.activation_count == 2


def test_h1_prepare_retry_returns_first_answer_and_reuse_is_refused(services: Services) -> None:
    code = issue(services)[0]
    peer = services.license_as("peer")
    request = prepare_request(services, code)
    first = peer.PrepareGrant(request).grant
    # A retry may carry a recomputed deadline: still the same request.
    request.expire_time.CopyFrom(to_timestamp(services.clock.now() + timedelta(hours=2)))
    assert peer.PrepareGrant(request).grant == first
    # A recovery retry after the deadline passed still gets the first answer (H1, H4).
    request.expire_time.CopyFrom(to_timestamp(services.clock.now() - timedelta(seconds=1)))
    assert peer.PrepareGrant(request).grant == first
    request.device.region = "DK"
    err = rich_error(error_of(peer.PrepareGrant, request))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS and err.reason == "REQUEST_ID_REUSED"


def test_h1_first_refusal_is_replayed(services: Services) -> None:
    code = issue(services)[0]
    provider = services.license_as("provider")
    provider.BlockCode(lpb.BlockCodeRequest(code=code))
    request = prepare_request(services, code)
    peer = services.license_as("peer")
    assert rich_error(error_of(peer.PrepareGrant, request)).reason == "CODE_BLOCKED"
    provider.UnblockCode(lpb.UnblockCodeRequest(code=code))
    assert rich_error(error_of(peer.PrepareGrant, request)).reason == "CODE_BLOCKED"
    request.request_id = "fresh-" + secrets.token_hex(4)
    assert peer.PrepareGrant(request).grant.state == lpb.GRANT_STATE_PREPARED


def test_h1_commit_and_abort_are_idempotent(services: Services) -> None:
    code = issue(services)[0]
    grant = prepare(services, code)
    first = commit(services, grant.grant_id, request_id="c-" + grant.grant_id)
    again = commit(services, grant.grant_id, request_id="c-" + grant.grant_id)
    assert again == first and get(services, code).activation_count == 1
    peer = services.license_as("peer")
    err = error_of(peer.AbortGrant, lpb.AbortGrantRequest(grant_id=grant.grant_id, request_id="a1"))
    assert rich_error(err).reason == "GRANT_COMMITTED"

    other = prepare(services, code)
    abort = lpb.AbortGrantRequest(grant_id=other.grant_id, request_id="a-" + other.grant_id)
    aborted = peer.AbortGrant(abort).grant
    assert aborted.state == lpb.GRANT_STATE_ABORTED and aborted.abort_reason == "REQUESTED"
    assert peer.AbortGrant(abort).grant == aborted
    abort.request_id = "a-other"
    assert peer.AbortGrant(abort).grant.state == lpb.GRANT_STATE_ABORTED
    err = error_of(
        peer.CommitGrant, lpb.CommitGrantRequest(grant_id=other.grant_id, request_id="c-x")
    )
    assert rich_error(err).reason == "GRANT_ABORTED"


def test_h2_commit_after_deadline_is_grant_expired(services: Services) -> None:
    code = issue(services)[0]
    grant = prepare(services, code, hold=timedelta(minutes=5))
    services.clock.advance(timedelta(minutes=6))
    peer = services.license_as("peer")
    err = error_of(
        peer.CommitGrant, lpb.CommitGrantRequest(grant_id=grant.grant_id, request_id="late")
    )
    assert rich_error(err).reason == "GRANT_EXPIRED"
    got = peer.GetGrant(lpb.GetGrantRequest(grant_id=grant.grant_id)).grant
    assert got.state == lpb.GRANT_STATE_ABORTED and got.abort_reason == "GRANT_EXPIRED"
    assert get(services, code).activation_count == 0


def test_h2_sweeper_aborts_overdue_grant(services: Services) -> None:
    code = issue(services)[0]
    grant = prepare(services, code, hold=timedelta(minutes=5))
    services.clock.advance(timedelta(minutes=6))
    peer = services.license_as("peer")
    state = wait_for(
        lambda: (
            (g := peer.GetGrant(lpb.GetGrantRequest(grant_id=grant.grant_id)).grant).state
            == lpb.GRANT_STATE_ABORTED
            and g
        ),
        "the sweeper to abort the overdue grant",
    )
    assert state.state == lpb.GRANT_STATE_ABORTED
    assert state.abort_reason == "GRANT_EXPIRED"
    err = error_of(
        peer.CommitGrant, lpb.CommitGrantRequest(grant_id=grant.grant_id, request_id="late2")
    )
    assert rich_error(err).reason == "GRANT_EXPIRED"


def test_h3_commit_rechecks_blocked_code_and_leaves_grant_prepared(services: Services) -> None:
    code = issue(services)[0]
    grant = prepare(services, code)
    provider = services.license_as("provider")
    provider.BlockCode(lpb.BlockCodeRequest(code=code))
    peer = services.license_as("peer")
    err = error_of(
        peer.CommitGrant, lpb.CommitGrantRequest(grant_id=grant.grant_id, request_id="h3")
    )
    assert rich_error(err).reason == "CODE_BLOCKED"
    assert (
        peer.GetGrant(lpb.GetGrantRequest(grant_id=grant.grant_id)).grant.state
        == lpb.GRANT_STATE_PREPARED
    )
    assert get(services, code).activation_count == 0
    provider.UnblockCode(lpb.UnblockCodeRequest(code=code))
    assert commit(services, grant.grant_id).state == lpb.GRANT_STATE_COMMITTED


def test_grant_rpcs_are_peer_only(services: Services) -> None:
    code = issue(services)[0]
    for who in ("provider", "portal", "console"):
        caller = services.license_as(who)
        err = error_of(caller.PrepareGrant, prepare_request(services, code))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = error_of(caller.GetGrant, lpb.GetGrantRequest(grant_id="gr_x"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_grant_and_code_are_not_found(services: Services) -> None:
    peer = services.license_as("peer")
    err = rich_error(error_of(peer.GetGrant, lpb.GetGrantRequest(grant_id="gr_nope")))
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "GRANT_NOT_FOUND")
    assert refusal(services, "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZ1") == "CODE_NOT_FOUND"


def test_s4_prepare_validation(services: Services) -> None:
    code = issue(services)[0]
    peer = services.license_as("peer")
    request = prepare_request(services, code, hold=timedelta(seconds=-1))
    request.purpose = 0
    request.caller.channel = 9
    request.device.region = "FIN"
    request.request_id = ""
    err = rich_error(error_of(peer.PrepareGrant, request))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in err.field_violations} == {
        "purpose",
        "caller.channel",
        "device.region",
        "request_id",
    }
    request = prepare_request(services, code, current_code="not-a-code")
    assert rich_error(error_of(peer.PrepareGrant, request)).metadata["field"] == (
        "device.current_code"
    )
    # Nothing was prepared by the refused calls: the code has no grant to commit.
    assert get(services, code).activation_count == 0


def test_d5_license_side_reasons_end_to_end(services: Services) -> None:
    assert refusal(services, issue(services, trial=True)[0]) == "TRIAL_OR_FREE"
    assert (
        refusal(services, issue(services, slot_kind=lpb.SLOT_KIND_PER_USER)[0])
        == "PER_USER_SERVICE"
    )
    console_product = new_product(services, console_managed=True)
    console_code = issue(services, product_id=console_product)[0]
    assert refusal(services, console_code) == "CONSOLE_ONLY"
    assert (
        refusal(
            services,
            console_code,
            channel=lpb.CALLER_CHANNEL_CONSOLE,
            role=lpb.CONSOLE_ROLE_MEMBER,
        )
        == "CONSOLE_ONLY"
    )
    ok = prepare(
        services,
        console_code,
        channel=lpb.CALLER_CHANNEL_CONSOLE,
        role=lpb.CONSOLE_ROLE_ADMINISTRATOR,
    )
    assert ok.state == lpb.GRANT_STATE_PREPARED
    regional = issue(services, product_id=new_product(services, released_regions=["DK"]))[0]
    assert refusal(services, regional, region="FI") == "REGION_UNAVAILABLE"
    versioned = issue(services, product_id=new_product(services, min_app_version="10.10"))[0]
    assert refusal(services, versioned, app_version="10.2") == "VERSION_INCOMPATIBLE"
    assert prepare(services, versioned, app_version="10.10").state == lpb.GRANT_STATE_PREPARED

    current = activated(services, auto_renew=True)
    limited = issue(services, kind=lpb.CODE_KIND_LICENSE, duration=None, unlimited=True)[0]
    assert refusal(services, limited, current_code=current) == "LIMITED_WHILE_AUTO_RENEW"
    assert refusal(services, current, current_code=current) == "SAME_AS_CURRENT"
    assert (
        refusal(services, limited, current_code=current, purpose=lpb.GRANT_PURPOSE_ACTIVATE)
        == "SUBSCRIPTION_ACTIVE"
    )
    limited_current = activated(services, kind=lpb.CODE_KIND_LICENSE)
    auto = issue(services, auto_renew=True)[0]
    assert refusal(services, auto, current_code=limited_current) == "AUTO_RENEW_WHILE_LIMITED"
    shorter = issue(services, kind=lpb.CODE_KIND_LICENSE)[0]
    services.clock.advance(timedelta(days=1))
    # The current code started a day ago; a fresh 365-day code sent now ends a day later.
    assert prepare(services, shorter, current_code=limited_current).state == 1
    already = activated(services, kind=lpb.CODE_KIND_LICENSE)
    services.clock.advance(timedelta(days=1))
    fresh_current = activated(services, kind=lpb.CODE_KIND_LICENSE)
    assert refusal(services, already, current_code=fresh_current) == "EXPIRES_EARLIER"


def test_h1_concurrent_prepares_all_answer_without_busy_errors(services: Services) -> None:
    """200 prepares at once (a SendSubscription storm) each get a grant; none sees SQLITE_BUSY."""
    from concurrent.futures import ThreadPoolExecutor

    code = issue(services, max_devices=5)[0]
    requests = [prepare_request(services, code) for _ in range(200)]
    peer = services.license_as("peer")
    with ThreadPoolExecutor(max_workers=32) as pool:
        grants = list(pool.map(lambda r: peer.PrepareGrant(r).grant, requests))
    assert len({grant.grant_id for grant in grants}) == 200
    assert all(grant.state == lpb.GRANT_STATE_PREPARED for grant in grants)
