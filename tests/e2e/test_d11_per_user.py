"""D11: per-user codes activate themselves for an account, and its devices use them.

Adding a per-user code to an account is an activation at the license
service (L1) through a grant, taking one slot for the account (max devices
counts accounts). Devices of the account without a code of their own use it
at connection and at each check-in, without a slot; removing it frees the
account's slot and its devices lose it at their next check-in.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
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
from tests.harness import Services, rich_error, wait_for
from tests.invariants import h4_violations, slot_violations, wait_settled


def _per_user(services: Services, max_devices: int = 2, **terms: Any) -> str:
    return issue(services, max_devices=max_devices, slot_kind=lpb.SLOT_KIND_PER_USER, **terms)[0]


def _add(services: Services, account: Account, code: str, request_id: str = "") -> Any:
    return services.device_as(account.credential).AddSubscription(
        dpb.AddSubscriptionRequest(account_id=account.account_id, code=code, request_id=request_id)
    )


def _remove(services: Services, account: Account, code: str) -> None:
    services.device_as(account.credential).RemoveSubscription(
        dpb.RemoveSubscriptionRequest(account_id=account.account_id, code=code)
    )


def _check_in(services: Services, credential: str) -> dpb.CheckInResponse:
    return services.device_as(credential).CheckIn(dpb.CheckInRequest())


def _code(services: Services, code: str) -> lpb.Code:
    return services.license_as("provider").GetCode(lpb.GetCodeRequest(code=code)).code


def test_d11_adding_activates_the_code_for_the_account_and_its_devices_use_it(
    services: Services,
) -> None:
    account = new_account(services)
    before, before_credential = connect(services, account, name="before")
    code = _per_user(services)
    assert not _code(services, code).HasField("first_activate_time")
    added = _add(services, account, code).subscription
    # L1: adding it is the code's first activation; one slot, the account's.
    details = _code(services, code)
    assert details.HasField("first_activate_time") and details.phase == lpb.PHASE_ACTIVE
    assert added.used_slots == 1
    # A device connected before uses it at its next check-in...
    answer = _check_in(services, before_credential)
    assert answer.device.current_code == code and answer.device.current_code_from_account
    assert answer.code.code == code and answer.code.phase == lpb.PHASE_ACTIVE
    assert list(answer.code.entitlements)
    # ...and one connecting now gets it at once, neither with a slot of its own.
    after, _ = connect(services, account, name="after")
    assert after.current_code == code and after.current_code_from_account
    listed = services.device_as(account.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=account.account_id)
    )
    assert [s.used_slots for s in listed.subscriptions if s.code == code] == [1]
    view = services.device_as(account.credential).ListSubscriptionDevices(
        dpb.ListSubscriptionDevicesRequest(account_id=account.account_id, code=code)
    )
    assert {d.device.device_id for d in view.devices if d.through_account} == {
        before.device_id,
        after.device_id,
    }
    # The stored device keeps no code of its own.
    got = services.device_as(account.credential).GetDevice(
        dpb.GetDeviceRequest(device_id=before.device_id)
    )
    assert got.device.current_code == ""


def test_d11_max_devices_counts_accounts(services: Services) -> None:
    code = _per_user(services, max_devices=2)
    first, second, third = (new_account(services) for _ in range(3))
    _add(services, first, code)
    for _ in range(3):  # devices of an account take no slot
        connect(services, first)
    _add(services, second, code)
    call = services.device_as(third.credential).AddSubscription
    status, reason = refused(
        call, dpb.AddSubscriptionRequest(account_id=third.account_id, code=code)
    )
    assert (status, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_FREE_SLOTS")
    # The refused account has no subscription and no slot.
    listed = services.device_as(third.credential).ListSubscriptions(
        dpb.ListSubscriptionsRequest(account_id=third.account_id)
    )
    assert list(listed.subscriptions) == []
    again = services.device_as(first.credential).AddSubscription
    status, reason = refused(
        again, dpb.AddSubscriptionRequest(account_id=first.account_id, code=code)
    )
    assert (status, reason) == (grpc.StatusCode.ALREADY_EXISTS, "SUBSCRIPTION_EXISTS")


def test_d11_removing_frees_the_slot_and_devices_lose_the_code(services: Services) -> None:
    code = _per_user(services, max_devices=1)
    owner, waiting = new_account(services), new_account(services)
    _, credential = connect(services, owner)
    _add(services, owner, code)
    assert _check_in(services, credential).device.current_code == code
    _remove(services, owner, code)
    answer = _check_in(services, credential)
    assert answer.device.current_code == "" and not answer.device.current_code_from_account
    assert not answer.HasField("code")
    # The freed slot goes to another account.
    assert _add(services, waiting, code).subscription.used_slots == 1
    call = services.device_as(owner.credential).RemoveSubscription
    status, reason = refused(
        call, dpb.RemoveSubscriptionRequest(account_id=owner.account_id, code=code)
    )
    assert (status, reason) == (grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")


def test_d11_l6_a_code_of_the_devices_own_wins(services: Services) -> None:
    account = new_account(services)
    _, credential = connect(services, account)
    # A per-user subscription whose term runs does not block the device's own code (L6).
    _add(services, account, _per_user(services, kind=lpb.CODE_KIND_SUBSCRIPTION))
    own = issue(services)[0]
    activate(services, credential, own)
    answer = _check_in(services, credential)
    assert answer.device.current_code == own and not answer.device.current_code_from_account
    assert answer.code.code == own


def test_d11_region_and_version_are_checked_per_device(services: Services) -> None:
    finnish = product(services, released_regions=["FI"], min_app_version="10.0")
    code = _per_user(services, product_id=finnish)
    account = new_account(services)
    _add(services, account, code)
    fits, _ = connect(services, account, region="FI", app_version="10.2")
    abroad, _ = connect(services, account, region="SE", app_version="10.2")
    old, _ = connect(services, account, region="FI", app_version="9.9")
    assert fits.current_code == code
    assert abroad.current_code == "" and old.current_code == ""


def test_d11_per_user_codes_are_never_sent(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    activate(services, credential, issue(services, days=30)[0])
    code = _per_user(services)
    _add(services, account, code)
    [result] = send(services, account.credential, account, code, device.device_id)
    assert result.refusal.reason == "PER_USER_SERVICE"


def test_d11_d5_a_send_compares_against_the_per_user_code_in_use(services: Services) -> None:
    account = new_account(services)
    device, _ = connect(services, account)
    _add(services, account, _per_user(services, unlimited=True))
    shorter = issue(services, days=30)[0]
    subscribe(services, account, shorter)
    [result] = send(services, account.credential, account, shorter, device.device_id)
    assert result.refusal.reason == "EXPIRES_EARLIER"


def test_h1_d11_adding_is_replayed_by_request_id(services: Services) -> None:
    account = new_account(services)
    code, other = _per_user(services), _per_user(services)
    request_id = secrets.token_hex(8)
    first = _add(services, account, code, request_id).subscription
    again = _add(services, account, code, request_id).subscription
    assert again == first
    assert _code(services, code).activation_count == 1
    with pytest.raises(grpc.RpcError) as err:
        _add(services, account, other, request_id)
    assert rich_error(err.value).reason == "REQUEST_ID_REUSED"


def _both_sides_agree(services: Services, account: Account, code: str) -> None:
    snap = wait_settled(services)
    assert h4_violations(services, snap) == []
    assert slot_violations(services, snap, {}) == []
    ours = [h for h in snap.handshakes if h["purpose"] == "ACCOUNT" and h["code"] == code]
    # A retry may follow an aborted first try: at most one commits.
    committed = [h for h in ours if h["step"] == "COMMITTED"]
    assert len(committed) <= 1
    hs = committed[0] if committed else ours[0]
    subscribed = any(s["code"] == code for s in snap.subscriptions)
    held = [s for s in snap.slots if s["code"] == code and s["state"] != "RELEASED"]
    if hs["step"] == "COMMITTED":
        assert subscribed and [s["state"] for s in held] == ["ACTIVE"]
        assert _code(services, code).HasField("first_activate_time")
    else:
        assert hs["step"] == "ABORTED" and not subscribed and held == []


@pytest.mark.parametrize(
    "point", ["before_prepare", "after_prepare", "before_commit", "after_commit"]
)
def test_h4_d11_device_service_killed_during_a_per_user_activation(
    fresh_services: Services, point: str
) -> None:
    services = fresh_services
    account = new_account(services)
    code = _per_user(services, max_devices=1)
    services.restart_device(point)
    with pytest.raises(grpc.RpcError):
        _add(services, account, code, "add-1")
    services.device.popen.wait(10)  # type: ignore[union-attr]
    assert services.device.popen.returncode == 137  # type: ignore[union-attr]
    services.restart_device()
    _both_sides_agree(services, account, code)
    # A retry with the same request id ends it either way: the code is on the account.
    assert _add(services, account, code, "add-1").subscription.code == code
    _both_sides_agree(services, account, code)


def test_h4_d11_license_service_killed_during_a_per_user_activation(
    fresh_services: Services, tmp_path: Path
) -> None:
    """Killed between the grant's prepare and its commit: recovery re-commits (H4)."""
    services = fresh_services
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    services.restart_device(KEYSLOT_PAUSE_DIR=str(pauses))
    account = new_account(services)
    code = _per_user(services, max_devices=1)
    (pauses / "before_commit.arm").touch()
    answer: dict[str, Any] = {}

    def add() -> None:
        try:
            answer["ok"] = _add(services, account, code, "add-2")
        except grpc.RpcError as err:
            answer["error"] = err

    thread = threading.Thread(target=add)
    thread.start()
    wait_for(lambda: (pauses / "before_commit.reached").exists(), "the add held before its commit")
    services.license.kill()
    (pauses / "before_commit.go").touch()
    thread.join(30)
    assert rich_error(answer["error"]).reason == "LICENSE_SERVICE_UNAVAILABLE"
    services.start_license()
    _both_sides_agree(services, account, code)
    assert _add(services, account, code, "add-2").subscription.code == code
