"""H4: kill -9 either service mid-handshake, restart, and both sides agree.

The device service is armed with KEYSLOT_CRASH_AT=<point> (os._exit(137) at
that point of the handshake, like kill -9), restarted clean, and its
start-up/periodic recovery must drive every handshake to an end that the
license service's grants confirm; no code ever holds more slots than its
max devices (D3).
"""

from __future__ import annotations

import threading

import grpc
import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import connect, issue, new_account, send, subscribe
from tests.harness import Services
from tests.invariants import device_rows as _rows
from tests.invariants import h4_violations, slot_violations, wait_settled


def _assert_both_sides_agree(services: Services) -> None:
    """H4 on both sides and D3 once recovery settled (tests/invariants.py)."""
    snap = wait_settled(services)
    assert h4_violations(services, snap) + slot_violations(services, snap, {}) == []


def _setup(services: Services, n: int = 1, **terms):  # type: ignore[no-untyped-def]
    account = new_account(services)
    code = issue(services, **terms)[0]
    subscribe(services, account, code)
    return account, code, [connect(services, account, name=f"d{i}") for i in range(n)]


@pytest.mark.parametrize("point", ["before_prepare", "after_prepare"])
def test_h4_device_killed_around_prepare_aborts_on_both_sides(
    fresh_services: Services, point: str
) -> None:
    services = fresh_services
    account, code, [(device, _)] = _setup(services, max_devices=1)
    services.restart_device(point)
    with pytest.raises(grpc.RpcError):
        send(services, account.credential, account, code, device.device_id)
    services.device.popen.wait(10)  # type: ignore[union-attr]
    assert services.device.popen.returncode == 137  # type: ignore[union-attr]
    services.restart_device()
    _assert_both_sides_agree(services)
    [hs] = _rows(services, "SELECT * FROM handshakes")
    assert hs["step"] == "ABORTED"
    # The slot was never leaked: the one seat is free for a new send.
    [result] = send(services, account.credential, account, code, device.device_id)
    assert result.delivery.state == dpb.DELIVERY_STATE_PENDING


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_h4_device_killed_around_commit_finishes_on_both_sides(
    fresh_services: Services, point: str
) -> None:
    services = fresh_services
    account, code, [(device, credential)] = _setup(services)
    [result] = send(services, account.credential, account, code, device.device_id)
    services.restart_device(point)
    with pytest.raises(grpc.RpcError):
        services.device_as(credential).CompleteDelivery(
            dpb.CompleteDeliveryRequest(delivery_id=result.delivery.delivery_id)
        )
    services.restart_device()
    _assert_both_sides_agree(services)
    # COMMITTING is re-sent with the same request id: delivered on both sides.
    got = services.device_as(account.credential).GetDelivery(
        dpb.GetDeliveryRequest(delivery_id=result.delivery.delivery_id)
    )
    assert got.delivery.state == dpb.DELIVERY_STATE_DELIVERED
    grant = services.license_as("peer").GetGrant(
        lpb.GetGrantRequest(grant_id=result.delivery.grant_id)
    )
    assert grant.grant.state == lpb.GRANT_STATE_COMMITTED
    assert [r["state"] for r in _rows(services, "SELECT state FROM slots")] == ["ACTIVE"]


def test_h4_device_killed_after_abort_frees_slot(fresh_services: Services) -> None:
    services = fresh_services
    account, code, [(device, _)] = _setup(services, max_devices=1)
    [result] = send(services, account.credential, account, code, device.device_id)
    services.restart_device("after_abort")
    with pytest.raises(grpc.RpcError):
        services.device_as(account.credential).CancelDelivery(
            dpb.CancelDeliveryRequest(delivery_id=result.delivery.delivery_id)
        )
    services.restart_device()
    _assert_both_sides_agree(services)
    got = services.device_as(account.credential).GetDelivery(
        dpb.GetDeliveryRequest(delivery_id=result.delivery.delivery_id)
    )
    assert got.delivery.state == dpb.DELIVERY_STATE_CANCELLED


def test_h4_license_killed_mid_calls_then_both_sides_agree(fresh_services: Services) -> None:
    services = fresh_services
    account, code, devices = _setup(services, 12, max_devices=4)
    answers: list[str] = []
    lock = threading.Lock()

    def sender(device_id: str) -> None:
        [result] = send(services, account.credential, account, code, device_id)
        got = "PENDING" if result.WhichOneof("outcome") == "delivery" else result.refusal.reason
        with lock:
            answers.append(got)

    threads = [threading.Thread(target=sender, args=(d.device_id,)) for d, _ in devices]
    for t in threads:
        t.start()
    services.license.kill()
    for t in threads:
        t.join()
    # Every answer is an honest one: a delivery, a slot refusal, or "license unavailable".
    assert set(answers) <= {"PENDING", "NO_FREE_SLOTS", "LICENSE_SERVICE_UNAVAILABLE"}
    services.start_license()
    _assert_both_sides_agree(services)
    held = _rows(services, "SELECT * FROM slots WHERE state != 'RELEASED'")
    assert len(held) <= 4
    assert len(held) == len(_rows(services, "SELECT * FROM deliveries WHERE state = 'PENDING'"))
