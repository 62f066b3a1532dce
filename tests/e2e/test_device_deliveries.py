"""Sending subscriptions, completing and undoing them, and every D5 reason by name.

Both services run as real processes; the license service checks its D5 rules
at PrepareGrant, the device service checks DEVICE_NOT_CONNECTED,
DELIVERY_PENDING and NO_FREE_SLOTS (D3).
"""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import (
    Account,
    activate,
    connect,
    issue,
    new_account,
    product,
    refused,
    send,
    subscribe,
)
from tests.harness import Services, wait_for


def _setup(services: Services, n_devices: int = 1, **terms):  # type: ignore[no-untyped-def]
    """An account with the code as a subscription and connected devices."""
    account = new_account(services)
    code = issue(services, **terms)[0]
    subscribe(services, account, code)
    devices = [connect(services, account, name=f"d{i}") for i in range(n_devices)]
    return account, code, devices


def _reason(result: dpb.SendResult) -> str:
    assert result.WhichOneof("outcome") == "refusal", result
    return result.refusal.reason


def _send_refusal(services: Services, account: Account, code: str, device_id: str) -> str:
    return _reason(send(services, account.credential, account, code, device_id)[0])


# --- D4, D6, D7 ------------------------------------------------------------------


def test_d4_send_creates_pending_delivery_and_pending_slot(services: Services) -> None:
    account, code, [(device, credential)] = _setup(services)
    [result] = send(services, account.credential, account, code, device.device_id)
    delivery = result.delivery
    assert delivery.state == dpb.DELIVERY_STATE_PENDING and delivery.grant_id
    window = delivery.expire_time.ToDatetime() - delivery.create_time.ToDatetime()
    assert window == timedelta(hours=24)
    view = services.device_as(account.credential).ListSubscriptionDevices(
        dpb.ListSubscriptionDevicesRequest(account_id=account.account_id, code=code)
    )
    [row] = view.devices
    assert row.slot.state == dpb.SLOT_STATE_PENDING
    assert row.delivery.state == dpb.DELIVERY_STATE_PENDING
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
    assert [d.delivery_id for d in checked.pending_deliveries] == [delivery.delivery_id]


def test_d7_complete_delivery_activates_code_and_releases_old_slot(services: Services) -> None:
    account, old_code, [(device, credential)] = _setup(services, days=30)
    activate(services, credential, old_code)
    new_code = issue(services, days=400)[0]
    subscribe(services, account, new_code)
    [result] = send(services, account.credential, account, new_code, device.device_id)
    done = services.device_as(credential).CompleteDelivery(
        dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id, request_id="c1")
    )
    assert done.delivery.state == dpb.DELIVERY_STATE_DELIVERED
    assert done.code.code == new_code and done.code.HasField("first_activate_time")  # L1
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
    assert checked.device.current_code == new_code and checked.code.code == new_code
    grant = services.license_as("peer").GetGrant(
        lpb.GetGrantRequest(grant_id=done.delivery.grant_id)
    )
    assert grant.grant.state == lpb.GRANT_STATE_COMMITTED
    subs = services.device_as(account.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=account.account_id)
    )
    used = {s.code: s.used_slots for s in subs.subscriptions}
    assert used == {old_code: 0, new_code: 1}
    # H1: completing again answers the same.
    again = services.device_as(credential).CompleteDelivery(
        dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id, request_id="c1")
    )
    assert again.delivery.state == dpb.DELIVERY_STATE_DELIVERED


def test_d6_cancel_delivery_frees_slot_and_aborts_grant(services: Services) -> None:
    account, code, [(device, _)] = _setup(services, max_devices=1)
    [result] = send(services, account.credential, account, code, device.device_id)
    cancelled = services.device_as(account.credential).CancelDelivery(
        dpb.CancelDeliveryRequest(delivery_id=result.delivery.delivery_id)
    )
    assert cancelled.delivery.state == dpb.DELIVERY_STATE_CANCELLED
    grant = services.license_as("peer").GetGrant(
        lpb.GetGrantRequest(grant_id=result.delivery.grant_id)
    )
    assert grant.grant.state == lpb.GRANT_STATE_ABORTED
    # The one slot is free again: a new send to the same device succeeds.
    [again] = send(services, account.credential, account, code, device.device_id)
    assert again.delivery.state == dpb.DELIVERY_STATE_PENDING


def test_d4_delivery_expires_after_window_and_frees_slot(services: Services) -> None:
    account, code, [(device, credential)] = _setup(services, max_devices=1)
    [result] = send(services, account.credential, account, code, device.device_id)
    services.clock.advance(timedelta(hours=24, seconds=1))
    caller = services.device_as(account.credential)
    request = dpb.GetDeliveryRequest(delivery_id=result.delivery.delivery_id)
    state = wait_for(
        lambda: (
            (s := caller.GetDelivery(request).delivery.state) != dpb.DELIVERY_STATE_PENDING and s
        ),
        "the sweeper to end the overdue delivery",
    )
    assert state == dpb.DELIVERY_STATE_EXPIRED
    assert refused(
        services.device_as(credential).CompleteDelivery,
        dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id),
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "DELIVERY_EXPIRED")
    [again] = send(services, account.credential, account, code, device.device_id)
    assert again.WhichOneof("outcome") == "delivery"


def test_h3_code_blocked_before_completion_fails_delivery(services: Services) -> None:
    account, code, [(device, credential)] = _setup(services)
    [result] = send(services, account.credential, account, code, device.device_id)
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=code, reason="fraud"))
    assert refused(
        services.device_as(credential).CompleteDelivery,
        dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id),
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "CODE_BLOCKED")
    got = services.device_as(account.credential).GetDelivery(
        dpb.GetDeliveryRequest(delivery_id=result.delivery.delivery_id)
    )
    assert got.delivery.state == dpb.DELIVERY_STATE_FAILED
    assert got.delivery.failure_reason == "CODE_BLOCKED"


def test_h1_send_is_idempotent_by_request_id(services: Services) -> None:
    account, code, [(device, _)] = _setup(services)
    request = dpb.SendSubscriptionRequest(
        account_id=account.account_id, code=code, device_ids=[device.device_id], request_id="r-1"
    )
    first = services.device_as(account.credential).SendSubscription(request)
    second = services.device_as(account.credential).SendSubscription(request)
    assert first.results[0].delivery.delivery_id == second.results[0].delivery.delivery_id
    request.device_ids[:] = [device.device_id, connect(services, account)[0].device_id]
    assert refused(services.device_as(account.credential).SendSubscription, request) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )


def test_s2_device_completes_only_its_own_delivery(services: Services) -> None:
    account, code, [(device, _), (_, other_credential)] = _setup(services, 2)
    [result] = send(services, account.credential, account, code, device.device_id)
    assert refused(
        services.device_as(other_credential).CompleteDelivery,
        dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id),
    ) == (grpc.StatusCode.NOT_FOUND, "DELIVERY_NOT_FOUND")


def test_list_deliveries_by_account_and_device(services: Services) -> None:
    account, code, [(first, credential), (second, _)] = _setup(services, 2)
    send(services, account.credential, account, code, first.device_id, second.device_id)
    by_account = services.device_as(account.credential).ListDeliveries(
        dpb.ListDeliveriesRequest(account_id=account.account_id)
    )
    assert len(by_account.deliveries) == 2
    by_device = services.device_as(credential).ListDeliveries(
        dpb.ListDeliveriesRequest(device_id=first.device_id)
    )
    assert [d.device_id for d in by_device.deliveries] == [first.device_id]


# --- D5: every reason by name --------------------------------------------------------


def test_d5_code_expired(services: Services) -> None:
    account, code, [(first, credential), (second, _)] = _setup(
        services, 2, days=1, grace_period=None
    )
    activate(services, credential, code)
    services.clock.advance(timedelta(days=1, seconds=1))
    assert _send_refusal(services, account, code, second.device_id) == "CODE_EXPIRED"


def test_d5_code_blocked(services: Services) -> None:
    account, code, [(device, _)] = _setup(services)
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=code, reason="refund"))
    assert _send_refusal(services, account, code, device.device_id) == "CODE_BLOCKED"


def test_d5_code_paused(services: Services) -> None:
    account, code, [(device, _)] = _setup(services, kind=lpb.CODE_KIND_SUBSCRIPTION)
    services.license_as("provider").PauseSubscription(lpb.PauseSubscriptionRequest(code=code))
    assert _send_refusal(services, account, code, device.device_id) == "CODE_PAUSED"


def test_d5_device_not_connected(services: Services) -> None:
    account, code, _ = _setup(services, 0)
    other = new_account(services)
    stranger, _ = connect(services, other)
    assert _send_refusal(services, account, code, stranger.device_id) == "DEVICE_NOT_CONNECTED"
    mine, _ = connect(services, account)
    services.device_as(account.credential).DisconnectDevice(
        dpb.DisconnectDeviceRequest(device_id=mine.device_id)
    )
    assert _send_refusal(services, account, code, mine.device_id) == "DEVICE_NOT_CONNECTED"


def test_d5_expires_earlier(services: Services) -> None:
    account, code, [(device, credential)] = _setup(services, days=30)
    forever = issue(services, unlimited=True)[0]
    activate(services, credential, forever)
    assert _send_refusal(services, account, code, device.device_id) == "EXPIRES_EARLIER"


def test_d5_delivery_pending(services: Services) -> None:
    account, code, [(device, _)] = _setup(services)
    other = issue(services)[0]
    subscribe(services, account, other)
    send(services, account.credential, account, code, device.device_id)
    assert _send_refusal(services, account, other, device.device_id) == "DELIVERY_PENDING"


def test_d5_no_free_slots(services: Services) -> None:
    account, code, [(a, _), (b, _)] = _setup(services, 2, max_devices=1)
    results = send(services, account.credential, account, code, a.device_id, b.device_id)
    assert results[0].delivery.state == dpb.DELIVERY_STATE_PENDING  # one refusal undoes nothing
    assert _reason(results[1]) == "NO_FREE_SLOTS"


def test_d5_region_unavailable(services: Services) -> None:
    account, code, [(device, _)] = _setup(
        services, product_id=product(services, released_regions=["DE"])
    )
    assert _send_refusal(services, account, code, device.device_id) == "REGION_UNAVAILABLE"


def test_d5_trial_or_free(services: Services) -> None:
    account, code, [(device, _)] = _setup(services, trial=True)
    assert _send_refusal(services, account, code, device.device_id) == "TRIAL_OR_FREE"


def test_d5_per_user_service(services: Services) -> None:
    account, code, [(device, _)] = _setup(services, slot_kind=lpb.SLOT_KIND_PER_USER)
    assert _send_refusal(services, account, code, device.device_id) == "PER_USER_SERVICE"


def test_d5_version_incompatible(services: Services) -> None:
    account, code, [(device, _)] = _setup(
        services, product_id=product(services, min_app_version="11.0")
    )
    assert _send_refusal(services, account, code, device.device_id) == "VERSION_INCOMPATIBLE"


def test_d5_console_only_from_portal_and_from_console_member(services: Services) -> None:
    account = new_account(services, dpb.ACCOUNT_KIND_CONSOLE)
    code = issue(services, product_id=product(services, console_managed=True))[0]
    subscribe(services, account, code)
    (a, _), (b, _) = connect(services, account), connect(services, account)
    members = {}
    for role in (lpb.CONSOLE_ROLE_MEMBER, lpb.CONSOLE_ROLE_ADMINISTRATOR):
        members[role] = (
            services.device_as(account.credential)
            .AddConsoleMember(
                dpb.AddConsoleMemberRequest(
                    account_id=account.account_id, display_name="m", role=role
                )
            )
            .member_credential
        )
    # The account credential is the portal channel.
    assert _send_refusal(services, account, code, a.device_id) == "CONSOLE_ONLY"
    [by_member] = send(services, members[lpb.CONSOLE_ROLE_MEMBER], account, code, a.device_id)
    assert _reason(by_member) == "CONSOLE_ONLY"
    [by_admin] = send(services, members[lpb.CONSOLE_ROLE_ADMINISTRATOR], account, code, b.device_id)
    assert by_admin.delivery.state == dpb.DELIVERY_STATE_PENDING


def test_d5_limited_while_auto_renew(services: Services) -> None:
    account, code, [(device, credential)] = _setup(services, days=400)
    renewing = issue(services, kind=lpb.CODE_KIND_SUBSCRIPTION, auto_renew=True)[0]
    activate(services, credential, renewing)
    assert _send_refusal(services, account, code, device.device_id) == "LIMITED_WHILE_AUTO_RENEW"


def test_d5_auto_renew_while_limited(services: Services) -> None:
    account, code, [(device, credential)] = _setup(
        services, kind=lpb.CODE_KIND_SUBSCRIPTION, auto_renew=True
    )
    limited = issue(services, days=30)[0]
    activate(services, credential, limited)
    assert _send_refusal(services, account, code, device.device_id) == "AUTO_RENEW_WHILE_LIMITED"


def test_d5_code_cancelled_is_refused_on_adding(services: Services) -> None:
    account = new_account(services)
    code = issue(services, kind=lpb.CODE_KIND_SUBSCRIPTION)[0]
    services.license_as("provider").CancelSubscription(
        lpb.CancelSubscriptionRequest(code=code, immediately=True)
    )
    assert refused(
        services.device_as(account.credential).AddSubscription,
        dpb.AddSubscriptionRequest(account_id=account.account_id, code=code),
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "CODE_CANCELLED")


# --- D3 under concurrency ---------------------------------------------------------------


def test_d3_200_concurrent_sends_for_5_slots(services: Services) -> None:
    account, code, _ = _setup(services, 0, max_devices=5)
    devices = [connect(services, account, name=f"c{i}")[0].device_id for i in range(200)]
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker(chunk: list[str]) -> None:
        caller = services.device_as(account.credential)
        barrier.wait()
        for device_id in chunk:
            try:
                reply = caller.SendSubscription(
                    dpb.SendSubscriptionRequest(
                        account_id=account.account_id,
                        code=code,
                        device_ids=[device_id],
                        request_id=secrets.token_hex(8),
                    )
                )
                result = reply.results[0]
                got = (
                    "PENDING"
                    if result.WhichOneof("outcome") == "delivery"
                    else result.refusal.reason
                )
                with lock:
                    outcomes.append(got)
            except Exception as err:  # noqa: BLE001
                with lock:
                    errors.append(err)

    threads = [threading.Thread(target=worker, args=(devices[i::20],)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert outcomes.count("PENDING") == 5
    assert outcomes.count("NO_FREE_SLOTS") == 195
    subs = services.device_as(account.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=account.account_id)
    )
    assert subs.subscriptions[0].used_slots == 5
