"""Reserve codes: adding, every D8 refusal by name, take-over (D9), failure and retry (D10).

Both services run as real processes on the shared fake clock; the license
service checks the RESERVE grant (PrepareGrant) and re-checks it at the
take-over (CommitGrant), the device service keeps the reserve and the slots.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import activate, connect, issue, new_account, product, refused
from tests.harness import Services, wait_for

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NO_GRACE = duration_pb2.Duration(seconds=0)


def _device(services: Services, days: int = 30, region: str = "FI", **terms):  # type: ignore[no-untyped-def]
    """An account and a connected device whose current code (``days`` long) is active."""
    account = new_account(services)
    device, credential = connect(services, account, region=region)
    if not terms.get("unlimited"):
        terms["days"] = days
    current = issue(services, **terms)[0]
    activate(services, credential, current)
    return account, device, credential, current


def _add(services: Services, credential: str, device_id: str, code: str) -> dpb.Reserve:
    return (
        services.device_as(credential)
        .AddReserveCode(dpb.AddReserveCodeRequest(device_id=device_id, code=code))
        .reserve
    )


def _add_refused(services: Services, credential: str, device_id: str, code: str):  # type: ignore[no-untyped-def]
    return refused(
        services.device_as(credential).AddReserveCode,
        dpb.AddReserveCodeRequest(device_id=device_id, code=code),
    )


def _details(services: Services, who: str, device_id: str) -> dpb.GetLicenseDetailsResponse:
    return services.device_as(who).GetLicenseDetails(
        dpb.GetLicenseDetailsRequest(device_id=device_id)
    )


def _check_in(services: Services, credential: str) -> dpb.CheckInResponse:
    return services.device_as(credential).CheckIn(dpb.CheckInRequest())


def _wait_reserve(services: Services, credential: str, device_id: str, state: int) -> None:
    """Waits (for the sweeper's work, not for time) until the reserve reaches ``state``."""
    wait_for(
        lambda: _details(services, credential, device_id).reserve.state == state,
        f"the reserve to reach state {state}",
    )


def _grant_state(services: Services, grant_id: str) -> int:
    return services.license_as("peer").GetGrant(lpb.GetGrantRequest(grant_id=grant_id)).grant.state


def _seat_free(services: Services, code: str) -> bool:
    """Whether a new device of a fresh account can activate ``code`` (a slot is free, D3)."""
    _, other = connect(services, new_account(services))
    try:
        activate(services, other, code)
    except grpc.RpcError:
        return False
    return True


# --- D8: adding ------------------------------------------------------------------------


def test_d8_add_stores_waiting_reserve_without_a_slot(services: Services) -> None:
    _, device, credential, current = _device(services)
    code = issue(services, days=365, max_devices=1)[0]
    reserve = _add(services, credential, device.device_id, code.lower().replace("-", " "))
    assert reserve.code == code and reserve.state == dpb.RESERVE_STATE_WAITING
    assert _grant_state(services, reserve.grant_id) == lpb.GRANT_STATE_PREPARED
    assert reserve.code_details.terms.max_devices == 1
    details = _details(services, credential, device.device_id)
    assert details.code.code == current and details.reserve.code == code
    assert details.reserve.state == dpb.RESERVE_STATE_WAITING
    checked = _check_in(services, credential)
    assert checked.reserve.code == code and checked.code.code == current
    # Waiting holds no slot: the single seat is still free.
    assert _seat_free(services, code)


def test_d8_account_may_add_for_its_device_others_may_not(services: Services) -> None:
    account, device, _, _ = _device(services)
    code = issue(services, days=365)[0]
    stranger = new_account(services)
    assert refused(
        services.device_as(stranger.credential).AddReserveCode,
        dpb.AddReserveCodeRequest(device_id=device.device_id, code=code),
    ) == (grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND")
    reserve = _add(services, account.credential, device.device_id, code)
    assert reserve.state == dpb.RESERVE_STATE_WAITING


def test_d8_no_current_license(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    code = issue(services)[0]
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "NO_CURRENT_LICENSE",
    )


def test_d8_reserve_already_set(services: Services) -> None:
    _, device, credential, _ = _device(services)
    first, second = issue(services, days=365, count=2)
    _add(services, credential, device.device_id, first)
    assert _add_refused(services, credential, device.device_id, second) == (
        PRECONDITION,
        "RESERVE_ALREADY_SET",
    )


def test_d8_malformed_and_unknown(services: Services) -> None:
    _, device, credential, _ = _device(services)
    assert _add_refused(services, credential, device.device_id, "nope") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert _add_refused(services, credential, device.device_id, "AAAAA-11111-BBBBB-22222") == (
        grpc.StatusCode.NOT_FOUND,
        "CODE_NOT_FOUND",
    )


def test_d8_code_blocked(services: Services) -> None:
    _, device, credential, _ = _device(services)
    code = issue(services, days=365)[0]
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=code, reason="fraud"))
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "CODE_BLOCKED",
    )


def test_d8_code_paused(services: Services) -> None:
    _, device, credential, _ = _device(services)
    code = issue(services, days=365, kind=lpb.CODE_KIND_SUBSCRIPTION)[0]
    services.license_as("provider").PauseSubscription(lpb.PauseSubscriptionRequest(code=code))
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "CODE_PAUSED",
    )


def test_d8_code_expired(services: Services) -> None:
    _, device, credential, _ = _device(services, days=365)
    code = issue(services, days=1, grace_period=NO_GRACE)[0]
    activate(services, connect(services, new_account(services))[1], code)
    services.clock.advance(timedelta(days=1, minutes=1))
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "CODE_EXPIRED",
    )


def test_d8_same_as_current(services: Services) -> None:
    _, device, credential, current = _device(services)
    assert _add_refused(services, credential, device.device_id, current) == (
        PRECONDITION,
        "SAME_AS_CURRENT",
    )


def test_d8_trial_or_free(services: Services) -> None:
    _, device, credential, _ = _device(services)
    trial = issue(services, days=365, trial=True)[0]
    assert _add_refused(services, credential, device.device_id, trial) == (
        PRECONDITION,
        "TRIAL_OR_FREE",
    )


def test_d8_subscription_active_l6(services: Services) -> None:
    _, device, credential, _ = _device(services, kind=lpb.CODE_KIND_SUBSCRIPTION, auto_renew=True)
    code = issue(services, days=365)[0]
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "SUBSCRIPTION_ACTIVE",
    )


def test_d8_region_and_version(services: Services) -> None:
    _, device, credential, _ = _device(services, region="FI")
    german = issue(services, product_id=product(services, released_regions=["DE"]))[0]
    assert _add_refused(services, credential, device.device_id, german) == (
        PRECONDITION,
        "REGION_UNAVAILABLE",
    )
    newer = issue(services, product_id=product(services, min_app_version="11.0"))[0]
    assert _add_refused(services, credential, device.device_id, newer) == (
        PRECONDITION,
        "VERSION_INCOMPATIBLE",
    )


def test_d8_expires_earlier_when_current_is_unlimited(services: Services) -> None:
    _, device, credential, _ = _device(services, unlimited=True)
    code = issue(services, days=3650)[0]
    assert _add_refused(services, credential, device.device_id, code) == (
        PRECONDITION,
        "EXPIRES_EARLIER",
    )


def test_d8_l1_activated_elsewhere_counts_from_first_activation(services: Services) -> None:
    _, device, credential, _ = _device(services, days=30)
    short, long = issue(services, days=20)[0], issue(services, days=60)[0]
    elsewhere = connect(services, new_account(services))[1]
    activate(services, elsewhere, short)
    # Activated now for 20 days: it would end before the current 30-day license.
    assert _add_refused(services, credential, device.device_id, short) == (
        PRECONDITION,
        "EXPIRES_EARLIER",
    )
    activate(services, connect(services, new_account(services))[1], long)
    assert _add(services, credential, device.device_id, long).state == dpb.RESERVE_STATE_WAITING


def test_d8_never_activated_counts_from_take_over(services: Services) -> None:
    # 20 days from the take-over moment ends after the current code: accepted.
    _, device, credential, _ = _device(services, days=30)
    code = issue(services, days=20)[0]
    assert _add(services, credential, device.device_id, code).state == dpb.RESERVE_STATE_WAITING


# --- D9: take-over ---------------------------------------------------------------------


def test_d9_take_over_at_expiry_without_a_gap(services: Services) -> None:
    _, device, credential, current = _device(services, days=30, max_devices=1)
    code = issue(services, days=365)[0]
    _add(services, credential, device.device_id, code)
    services.clock.advance(timedelta(days=30) - timedelta(minutes=1))
    before = _check_in(services, credential)
    assert before.code.code == current
    assert lpb.ENTITLEMENT_PROTECTION in before.code.entitlements
    assert before.reserve.state == dpb.RESERVE_STATE_WAITING
    services.clock.advance(timedelta(minutes=2))
    after = _check_in(services, credential)
    assert after.code.code == code and after.device.current_code == code
    assert lpb.ENTITLEMENT_PROTECTION in after.code.entitlements
    assert after.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert _grant_state(services, after.reserve.grant_id) == lpb.GRANT_STATE_COMMITTED
    # The reserve's term starts at the take-over (L1).
    assert after.code.expire_time.ToDatetime() - services.clock.now().replace(
        tzinfo=None
    ) == timedelta(days=365)
    # The old code's seat was given back.
    assert _seat_free(services, current)


def test_d9_sweeper_takes_over_without_a_check_in(services: Services) -> None:
    account, device, credential, _ = _device(services, days=30)
    code = issue(services, days=365)[0]
    _add(services, credential, device.device_id, code)
    services.clock.advance(timedelta(days=30, seconds=1))
    _wait_reserve(services, account.credential, device.device_id, dpb.RESERVE_STATE_ACTIVATED)
    assert _details(services, account.credential, device.device_id).code.code == code


def test_d9_take_over_on_key_removal(services: Services) -> None:
    _, device, credential, current = _device(services, days=30, max_devices=1)
    code = issue(services, days=365)[0]
    _add(services, credential, device.device_id, code)
    removed = services.device_as(credential).RemoveLicenseKey(
        dpb.RemoveLicenseKeyRequest(device_id=device.device_id)
    )
    assert removed.device.current_code == code
    assert removed.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert _seat_free(services, current)


def test_d9_key_removal_without_reserve(services: Services) -> None:
    _, device, credential, current = _device(services, max_devices=1)
    call = services.device_as(credential).RemoveLicenseKey
    removed = call(dpb.RemoveLicenseKeyRequest(device_id=device.device_id))
    assert removed.device.current_code == "" and not removed.HasField("reserve")
    assert _seat_free(services, current)
    assert refused(call, dpb.RemoveLicenseKeyRequest(device_id=device.device_id)) == (
        PRECONDITION,
        "NO_CURRENT_LICENSE",
    )


def test_d8_multi_device_reserve_uses_one_slot_per_take_over(services: Services) -> None:
    code = issue(services, days=365, max_devices=2)[0]
    devices = [_device(services, days=30) for _ in range(2)]
    for _, device, credential, _ in devices:
        _add(services, credential, device.device_id, code)
    assert _seat_free(services, code)  # waiting reserves hold nothing: 1 of 2 taken now
    services.clock.advance(timedelta(days=30, seconds=1))
    # Only one seat is left for the two take-overs: one succeeds, one fails for slots.
    states = sorted(
        _check_in(services, credential).reserve.state for _, _, credential, _ in devices
    )
    assert states == [dpb.RESERVE_STATE_ACTIVATED, dpb.RESERVE_STATE_FAILED]


def test_d8_multi_device_reserve_takes_over_on_each_device(services: Services) -> None:
    code = issue(services, days=365, max_devices=2)[0]
    devices = [_device(services, days=30) for _ in range(2)]
    for _, device, credential, _ in devices:
        _add(services, credential, device.device_id, code)
    services.clock.advance(timedelta(days=30, seconds=1))
    for _, _, credential, _ in devices:
        checked = _check_in(services, credential)
        assert checked.device.current_code == code
        assert checked.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert not _seat_free(services, code)  # each take-over used one of the two slots


# --- D10: failure, retry, activate-now, removal ------------------------------------------


def _occupy(services: Services, code: str) -> tuple[str, str]:
    """Activates ``code`` on a new device elsewhere; its (device id, credential)."""
    device, credential = connect(services, new_account(services))
    activate(services, credential, code)
    return device.device_id, credential


def _free(services: Services, occupant: tuple[str, str]) -> None:
    device_id, credential = occupant
    services.device_as(credential).RemoveLicenseKey(
        dpb.RemoveLicenseKeyRequest(device_id=device_id)
    )


def test_d10_no_free_slots_then_retry_after_a_slot_frees(services: Services) -> None:
    _, device, credential, current = _device(services, days=30)
    code = issue(services, days=365, max_devices=1)[0]
    _add(services, credential, device.device_id, code)
    occupant = _occupy(services, code)  # the reserve's only slot is used meanwhile
    services.clock.advance(timedelta(days=30, seconds=1))
    failed = _check_in(services, credential)
    assert failed.reserve.state == dpb.RESERVE_STATE_FAILED
    assert failed.reserve.failure_reason == "NO_FREE_SLOTS"
    # The device keeps what its current license still gives (its grace).
    assert failed.device.current_code == current and failed.code.code == current
    # Not retried automatically: the app's "try again" does it.
    assert _check_in(services, credential).reserve.state == dpb.RESERVE_STATE_FAILED
    _free(services, occupant)
    retried = services.device_as(credential).RetryReserveActivation(
        dpb.RetryReserveActivationRequest(device_id=device.device_id)
    )
    assert retried.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert _details(services, credential, device.device_id).device.current_code == code
    assert not _seat_free(services, code)


def test_d10_retry_after_grant_deadline_prepares_again(services: Services) -> None:
    _, device, credential, _ = _device(services, days=30)
    code = issue(services, days=365, max_devices=1)[0]
    first = _add(services, credential, device.device_id, code)
    occupant = _occupy(services, code)
    services.clock.advance(timedelta(days=30, seconds=1))
    assert _check_in(services, credential).reserve.failure_reason == "NO_FREE_SLOTS"
    services.clock.advance(timedelta(days=8))  # past the RESERVE grant's deadline
    _free(services, occupant)
    retried = services.device_as(credential).RetryReserveActivation(
        dpb.RetryReserveActivationRequest(device_id=device.device_id)
    )
    assert retried.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert retried.reserve.grant_id != first.grant_id  # a fresh grant
    assert _grant_state(services, first.grant_id) == lpb.GRANT_STATE_ABORTED


def test_d10_retry_refused_unless_failed(services: Services) -> None:
    _, device, credential, _ = _device(services)
    call = services.device_as(credential).RetryReserveActivation
    request = dpb.RetryReserveActivationRequest(device_id=device.device_id)
    assert refused(call, request) == (PRECONDITION, "NO_RESERVE")
    _add(services, credential, device.device_id, issue(services, days=365)[0])
    assert refused(call, request) == (PRECONDITION, "RESERVE_NOT_FAILED")


def test_d10_activate_now_on_blocked_current_license(services: Services) -> None:
    _, device, credential, current = _device(services, days=30)
    code = issue(services, days=365)[0]
    _add(services, credential, device.device_id, code)
    call = services.device_as(credential).ActivateReserveNow
    request = dpb.ActivateReserveNowRequest(device_id=device.device_id)
    assert refused(call, request) == (PRECONDITION, "CURRENT_NOT_BLOCKED")
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=current, reason="fraud"))
    assert call(request).reserve.state == dpb.RESERVE_STATE_ACTIVATED
    assert _details(services, credential, device.device_id).code.code == code


def test_d10_activate_now_without_reserve(services: Services) -> None:
    _, device, credential, _ = _device(services)
    assert refused(
        services.device_as(credential).ActivateReserveNow,
        dpb.ActivateReserveNowRequest(device_id=device.device_id),
    ) == (PRECONDITION, "NO_RESERVE")


def test_d10_h3_version_recheck_at_take_over_fails_with_reason(services: Services) -> None:
    _, device, credential, current = _device(services, days=30)
    code = issue(services, days=365, product_id=product(services, max_app_version="11.0"))[0]
    _add(services, credential, device.device_id, code)
    services.device_as(credential).CheckIn(dpb.CheckInRequest(app_version="11.5"))
    services.clock.advance(timedelta(days=30, seconds=1))
    failed = _check_in(services, credential)
    assert failed.reserve.state == dpb.RESERVE_STATE_FAILED
    assert failed.reserve.failure_reason == "VERSION_INCOMPATIBLE"
    assert failed.device.current_code == current


def test_remove_reserve_code_aborts_its_grant(services: Services) -> None:
    _, device, credential, _ = _device(services)
    reserve = _add(services, credential, device.device_id, issue(services, days=365)[0])
    call = services.device_as(credential).RemoveReserveCode
    call(dpb.RemoveReserveCodeRequest(device_id=device.device_id))
    assert not _details(services, credential, device.device_id).HasField("reserve")
    assert _grant_state(services, reserve.grant_id) == lpb.GRANT_STATE_ABORTED
    assert refused(call, dpb.RemoveReserveCodeRequest(device_id=device.device_id)) == (
        PRECONDITION,
        "NO_RESERVE",
    )
    # A new reserve may be stored after removal.
    again = _add(services, credential, device.device_id, issue(services, days=365)[0])
    assert again.state == dpb.RESERVE_STATE_WAITING


def test_h1_add_reserve_code_replays_its_first_answer(services: Services) -> None:
    _, device, credential, _ = _device(services)
    code, other = issue(services, days=365, count=2)
    call = services.device_as(credential).AddReserveCode

    def request(c: str, rid: str) -> dpb.AddReserveCodeRequest:
        return dpb.AddReserveCodeRequest(device_id=device.device_id, code=c, request_id=rid)

    first = call(request(code, "r1")).reserve
    again = call(request(code, "r1")).reserve  # a retry after a lost answer
    assert again.grant_id == first.grant_id and again.state == dpb.RESERVE_STATE_WAITING
    assert refused(call, request(other, "r1")) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )
    # A refusal is replayed identically too (on a device without a reserve).
    _, device, credential, _ = _device(services)
    call = services.device_as(credential).AddReserveCode
    unknown = "AAAAA-11111-BBBBB-33333"
    assert refused(call, request(unknown, "r2")) == (grpc.StatusCode.NOT_FOUND, "CODE_NOT_FOUND")
    assert refused(call, request(unknown, "r2")) == (grpc.StatusCode.NOT_FOUND, "CODE_NOT_FOUND")


def test_d9_take_over_runs_exactly_once_under_concurrent_check_ins(services: Services) -> None:
    _, device, credential, current = _device(services, days=30, max_devices=1)
    code = issue(services, days=365, max_devices=1)[0]
    reserve = _add(services, credential, device.device_id, code)
    services.clock.advance(timedelta(days=30, seconds=1))
    answers: list[dpb.CheckInResponse] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_check_in(services, credential)))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 6
    assert {a.device.current_code for a in answers} == {code}
    assert {a.reserve.state for a in answers} == {dpb.RESERVE_STATE_ACTIVATED}
    assert _grant_state(services, reserve.grant_id) == lpb.GRANT_STATE_COMMITTED
    assert _seat_free(services, current) and not _seat_free(services, code)


def test_disconnect_aborts_a_waiting_reserve(services: Services) -> None:
    account, device, credential, _ = _device(services)
    reserve = _add(services, credential, device.device_id, issue(services, days=365)[0])
    services.device_as(account.credential).DisconnectDevice(
        dpb.DisconnectDeviceRequest(device_id=device.device_id)
    )
    assert _grant_state(services, reserve.grant_id) == lpb.GRANT_STATE_ABORTED
    shown = _details(services, account.credential, device.device_id).reserve
    assert shown.state == dpb.RESERVE_STATE_FAILED
    assert shown.failure_reason == "DEVICE_NOT_CONNECTED"


def test_d8_a_reserve_behind_a_twenty_year_license_waits(services: Services) -> None:
    """The grant is held at most ~10 years; one further out is re-prepared at take-over."""
    _, device, credential, _ = _device(services, days=20 * 365)
    reserve = _add(services, credential, device.device_id, issue(services, days=30 * 365)[0])
    assert reserve.state == dpb.RESERVE_STATE_WAITING
    assert _grant_state(services, reserve.grant_id) == lpb.GRANT_STATE_PREPARED
