"""Subscriptions on an account, download links, activation on the device, and an
unreachable license service (D2, D3, L6, H4 "no half-written rows")."""

from __future__ import annotations

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import activate, connect, issue, new_account, refused, subscribe
from tests.harness import Services

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def test_add_and_list_subscriptions_with_code_details(services: Services) -> None:
    account = new_account(services)
    codes = issue(services, count=3)
    for code in codes:
        subscribe(services, account, code.lower().replace("-", " "))  # input normalised
    listed = services.device_as(account.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=account.account_id, page_size=2)
    )
    # Added at the same (test-clock) instant: ordered by code.
    assert [s.code for s in listed.subscriptions] == sorted(codes)[:2] and listed.next_page_token
    assert listed.subscriptions[0].code_details.terms.max_devices == 3
    assert listed.subscriptions[0].code_details.phase == lpb.PHASE_NOT_ACTIVATED
    assert refused(
        services.device_as(account.credential).AddSubscription,
        dpb.AddSubscriptionRequest(account_id=account.account_id, code=codes[0]),
    ) == (grpc.StatusCode.ALREADY_EXISTS, "SUBSCRIPTION_EXISTS")


def test_add_subscription_refuses_unknown_and_blocked_codes(services: Services) -> None:
    account = new_account(services)
    caller = services.device_as(account.credential)
    assert refused(
        caller.AddSubscription,
        dpb.AddSubscriptionRequest(account_id=account.account_id, code="AAAAA-BBBBB-CCCCC-DDDDD"),
    ) == (grpc.StatusCode.NOT_FOUND, "CODE_NOT_FOUND")
    code = issue(services)[0]
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=code, reason="x"))
    assert refused(
        caller.AddSubscription, dpb.AddSubscriptionRequest(account_id=account.account_id, code=code)
    ) == (PRECONDITION, "CODE_BLOCKED")


def test_d2_download_link_goes_to_outbox(services: Services) -> None:
    account = new_account(services)
    code = issue(services)[0]
    subscribe(services, account, code)
    caller = services.device_as(account.credential)
    sent = caller.SendDownloadLink(
        dpb.SendDownloadLinkRequest(account_id=account.account_id, code=code, email="a@b.example")
    )
    assert sent.message.link_token in sent.message.body
    outbox = services.device_as("portal").ListOutbox(dpb.ListOutboxRequest(page_size=1000))
    assert sent.message.message_id in [m.message_id for m in outbox.messages]
    bad = dpb.SendDownloadLinkRequest(account_id=account.account_id, code=code, email="not-mail")
    with_field = refused(caller.SendDownloadLink, bad)
    assert with_field == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    # Operators only: an account credential does not read everyone's outbox.
    assert refused(caller.ListOutbox, dpb.ListOutboxRequest())[1] == "PERMISSION_DENIED"


def test_activate_device_replaces_code_and_releases_old_slot(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    first, second = issue(services, days=30)[0], issue(services, days=60)[0]
    reply = activate(services, credential, first)
    assert reply.device.current_code == first and reply.code.phase == lpb.PHASE_ACTIVE
    activate(services, credential, second)
    for code in (first, second):
        subscribe(services, account, code)
    used = {
        s.code: s.used_slots
        for s in services.device_as(account.credential)
        .ListSubscriptions(dpb.ListSubscriptionsRequest(account_id=account.account_id))
        .subscriptions
    }
    assert used == {first: 0, second: 1}
    view = services.device_as(account.credential).ListSubscriptionDevices(
        dpb.ListSubscriptionDevicesRequest(account_id=account.account_id, code=second)
    )
    assert [(d.device.device_id, d.slot.state) for d in view.devices] == [
        (device.device_id, dpb.SLOT_STATE_ACTIVE)
    ]


def test_l6_activate_refused_while_subscription_active(services: Services) -> None:
    account = new_account(services)
    _, credential = connect(services, account)
    activate(services, credential, issue(services, kind=lpb.CODE_KIND_SUBSCRIPTION)[0])
    other = issue(services)[0]
    assert refused(
        services.device_as(credential).ActivateDevice,
        dpb.ActivateDeviceRequest(code=other, request_id="a1"),
    ) == (PRECONDITION, "SUBSCRIPTION_ACTIVE")


def test_d3_activate_refused_when_no_free_slots(services: Services) -> None:
    account = new_account(services)
    code = issue(services, max_devices=1)[0]
    activate(services, connect(services, account)[1], code)
    assert refused(
        services.device_as(connect(services, account)[1]).ActivateDevice,
        dpb.ActivateDeviceRequest(code=code),
    ) == (PRECONDITION, "NO_FREE_SLOTS")


def test_checkin_returns_code_with_entitlements(services: Services) -> None:
    account = new_account(services)
    _, credential = connect(services, account)
    code = issue(services)[0]
    activate(services, credential, code)
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest(app_version="10.3"))
    assert checked.code.code == code and checked.code.entitlements
    assert checked.device.app_version == "10.3" and checked.HasField("server_time")


def test_license_down_is_unavailable_and_writes_nothing(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    code = issue(services)[0]
    services.license.kill()
    assert refused(
        services.device_as(account.credential).AddSubscription,
        dpb.AddSubscriptionRequest(account_id=account.account_id, code=code),
    ) == (grpc.StatusCode.UNAVAILABLE, "LICENSE_SERVICE_UNAVAILABLE")
    services.start_license()
    listed = services.device_as(account.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=account.account_id)
    )
    assert list(listed.subscriptions) == []
