"""D3 and H4 against DisconnectDevice racing each handshake step, forced deterministically.

The device service runs with KEYSLOT_PAUSE_DIR (device_service/faults.py):
a test arms a pause point, starts a call in a thread, waits until the call
is held at that point, runs the racing call (a disconnect, a sweep), then
lets the first call go on. Whoever commits first wins: a step decided
before the disconnect finishes but leaves the device holding nothing; a
step after it is refused DEVICE_NOT_CONNECTED. Either way the disconnected
device holds no slot, no pending delivery and no waiting reserve, the
license side agrees (H4), and the freed slot is usable by another device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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
    send,
    subscribe,
)
from tests.harness import Services, rich_error, wait_for
from tests.invariants import device_rows as _rows


@pytest.fixture(scope="module")
def racing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services whose device process has pause points (inert until armed)."""
    root = Path(tmp_path_factory.mktemp("races"))
    pauses = root / "pauses"
    pauses.mkdir()
    svc = Services(root / "svc", extra_env={"KEYSLOT_PAUSE_DIR": str(pauses)})
    svc.pauses = pauses  # type: ignore[attr-defined]
    try:
        yield svc.start()
    finally:
        svc.stop()


class Held:
    """A call running in a thread, held at a pause point until ``release``."""

    def __init__(self, services: Services, point: str, call: Callable[[], Any]) -> None:
        self.dir: Path = services.pauses  # type: ignore[attr-defined]
        self.point = point
        (self.dir / f"{point}.reached").unlink(missing_ok=True)
        (self.dir / f"{point}.arm").touch()
        self.result: Any = None
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._run, args=(call,))
        self._thread.start()
        wait_for(lambda: (self.dir / f"{point}.reached").exists(), f"a call held at {point}")

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except grpc.RpcError as err:
            self.error = err

    def release(self) -> Held:
        (self.dir / f"{self.point}.go").touch()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"the call held at {self.point} did not end"
        (self.dir / f"{self.point}.reached").unlink(missing_ok=True)
        return self

    def reason(self) -> str:
        assert self.error is not None, f"expected a refusal, got {self.result}"
        return rich_error(self.error).reason


def _disconnect(services: Services, account: Account, device_id: str) -> dpb.Device:
    return (
        services.device_as(account.credential)
        .DisconnectDevice(dpb.DisconnectDeviceRequest(device_id=device_id))
        .device
    )


def _settled(services: Services, device_id: str) -> list[dict]:  # type: ignore[type-arg]
    """The device's handshakes once none is mid-way (the owner or recovery finishes aborts)."""

    def done() -> list[dict] | None:  # type: ignore[type-arg]
        rows = _rows(services, "SELECT * FROM handshakes WHERE device_id = ?", (device_id,))
        busy = [r for r in rows if r["step"] in ("PREPARING", "COMMITTING", "ABORTING")]
        return None if busy else rows

    return wait_for(done, "the device's handshakes to settle", 15.0)


def _assert_holds_nothing(services: Services, device_id: str) -> None:
    """D3 after a disconnect: no slot, no pending delivery, no waiting reserve, no code;
    every handshake ended on both sides alike (H4)."""
    peer = services.license_as("peer")
    for hs in _settled(services, device_id):
        if hs["step"] == "PREPARED":  # a send's or reserve's grant held: never after disconnect
            pytest.fail(f"handshake {hs['handshake_id']} still PREPARED after disconnect")
        if hs["grant_id"]:
            state = peer.GetGrant(lpb.GetGrantRequest(grant_id=hs["grant_id"])).grant.state
            want = (
                lpb.GRANT_STATE_COMMITTED if hs["step"] == "COMMITTED" else lpb.GRANT_STATE_ABORTED
            )
            assert state == want, hs
    held = "SELECT * FROM slots WHERE device_id = ? AND state != 'RELEASED'"
    assert _rows(services, held, (device_id,)) == []
    pending = "SELECT * FROM deliveries WHERE device_id = ? AND state = 'PENDING'"
    assert _rows(services, pending, (device_id,)) == []
    waiting = "SELECT * FROM reserves WHERE device_id = ? AND state = 'WAITING'"
    assert _rows(services, waiting, (device_id,)) == []
    [device] = _rows(services, "SELECT * FROM devices WHERE device_id = ?", (device_id,))
    assert device["disconnect_us"] is not None and device["current_code"] == ""


def _slot_is_free(services: Services, account: Account, code: str) -> None:
    """The one slot of ``code`` goes to another device (nothing leaked, D3)."""
    _, other = connect(services, account, name="next")
    assert activate(services, other, code).device.current_code == code


@pytest.mark.parametrize("point", ["before_prepare", "after_prepare"])
def test_d3_activation_loses_to_a_disconnect_before_its_commit(
    racing: Services, point: str
) -> None:
    account = new_account(racing)
    device, credential = connect(racing, account)
    code = issue(racing, max_devices=1)[0]
    held = Held(racing, point, lambda: activate(racing, credential, code))
    _disconnect(racing, account, device.device_id)
    assert held.release().reason() == "DEVICE_NOT_CONNECTED"
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, code)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_d3_activation_decided_before_a_disconnect_finishes_without_a_slot(
    racing: Services, point: str
) -> None:
    account = new_account(racing)
    device, credential = connect(racing, account)
    code = issue(racing, max_devices=1)[0]
    held = Held(racing, point, lambda: activate(racing, credential, code))
    _disconnect(racing, account, device.device_id)
    answer = held.release()
    # The commit was decided first, so the activation is the first answer...
    assert answer.error is None and answer.result.code.code == code
    # ...and the disconnect after it leaves the device holding nothing.
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, code)


@pytest.mark.parametrize("point", ["before_prepare", "after_prepare"])
def test_d3_send_loses_to_a_disconnect_of_its_target(racing: Services, point: str) -> None:
    account = new_account(racing)
    device, _ = connect(racing, account)
    code = issue(racing, max_devices=1)[0]
    subscribe(racing, account, code)
    held = Held(
        racing, point, lambda: send(racing, account.credential, account, code, device.device_id)
    )
    _disconnect(racing, account, device.device_id)
    [result] = held.release().result
    assert result.refusal.reason == "DEVICE_NOT_CONNECTED"
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, code)


def _complete(services: Services, credential: str, delivery_id: str) -> Any:
    return services.device_as(credential).CompleteDelivery(
        dpb.CompleteDeliveryRequest(delivery_id=delivery_id)
    )


def test_d3_completion_loses_to_a_disconnect_before_its_commit_decision(
    racing: Services,
) -> None:
    account = new_account(racing)
    device, credential = connect(racing, account)
    code = issue(racing, max_devices=1)[0]
    subscribe(racing, account, code)
    [sent] = send(racing, account.credential, account, code, device.device_id)
    delivery_id = sent.delivery.delivery_id
    held = Held(racing, "before_decide_commit", lambda: _complete(racing, credential, delivery_id))
    _disconnect(racing, account, device.device_id)
    assert held.release().reason() == "DEVICE_NOT_CONNECTED"
    _assert_holds_nothing(racing, device.device_id)
    [delivery] = _rows(racing, "SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,))
    assert (delivery["state"], delivery["failure_reason"]) == ("FAILED", "DEVICE_NOT_CONNECTED")
    _slot_is_free(racing, account, code)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_d3_completion_decided_before_a_disconnect_finishes_without_a_slot(
    racing: Services, point: str
) -> None:
    account = new_account(racing)
    device, credential = connect(racing, account)
    code = issue(racing, max_devices=1)[0]
    subscribe(racing, account, code)
    [sent] = send(racing, account.credential, account, code, device.device_id)
    delivery_id = sent.delivery.delivery_id
    held = Held(racing, point, lambda: _complete(racing, credential, delivery_id))
    _disconnect(racing, account, device.device_id)
    answer = held.release()
    assert answer.error is None
    assert answer.result.delivery.state == dpb.DELIVERY_STATE_DELIVERED
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, code)


def _add_reserve(services: Services, credential: str, device_id: str, code: str) -> Any:
    return services.device_as(credential).AddReserveCode(
        dpb.AddReserveCodeRequest(device_id=device_id, code=code)
    )


@pytest.mark.parametrize("point", ["before_prepare", "after_prepare"])
def test_d8_reserve_add_loses_to_a_disconnect(racing: Services, point: str) -> None:
    account = new_account(racing)
    device, credential = connect(racing, account)
    activate(racing, credential, issue(racing, days=30)[0])
    reserve_code = issue(racing, days=365, max_devices=1)[0]
    held = Held(
        racing,
        point,
        lambda: _add_reserve(racing, credential, device.device_id, reserve_code),
    )
    _disconnect(racing, account, device.device_id)
    assert held.release().reason() == "DEVICE_NOT_CONNECTED"
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, reserve_code)


def test_h4_a_sweep_while_a_reserve_is_being_added_leaves_it_alone(racing: Services) -> None:
    """Ownership is taken with the intent row: recovery never aborts a live add."""
    account = new_account(racing)
    device, credential = connect(racing, account)
    activate(racing, credential, issue(racing, days=30)[0])
    reserve_code = issue(racing, days=365)[0]
    held = Held(
        racing,
        "before_prepare",
        lambda: _add_reserve(racing, credential, device.device_id, reserve_code),
    )
    Held(racing, "after_sweep", lambda: None)  # a whole sweeper pass ran meanwhile
    (racing.pauses / "after_sweep.go").touch()  # type: ignore[attr-defined]
    answer = held.release()
    assert answer.error is None, rich_error(answer.error)
    reserve = answer.result.reserve
    assert reserve.state == dpb.RESERVE_STATE_WAITING
    grant = racing.license_as("peer").GetGrant(lpb.GetGrantRequest(grant_id=reserve.grant_id))
    assert grant.grant.state == lpb.GRANT_STATE_PREPARED
    [hs] = _rows(racing, "SELECT step FROM handshakes WHERE grant_id = ?", (reserve.grant_id,))
    assert hs["step"] == "PREPARED"


def _reserve_ready(services: Services) -> tuple[Account, dpb.Device, str, str, str]:
    """A device whose current code is blocked and whose reserve (1 slot) waits."""
    account = new_account(services)
    device, credential = connect(services, account)
    current = issue(services, days=30)[0]
    activate(services, credential, current)
    reserve_code = issue(services, days=365, max_devices=1)[0]
    _add_reserve(services, credential, device.device_id, reserve_code)
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=current))
    return account, device, credential, current, reserve_code


def _activate_now(services: Services, credential: str, device_id: str) -> Any:
    return services.device_as(credential).ActivateReserveNow(
        dpb.ActivateReserveNowRequest(device_id=device_id)
    )


def test_d10_take_over_loses_to_a_disconnect_before_its_commit_decision(
    racing: Services,
) -> None:
    account, device, credential, _, reserve_code = _reserve_ready(racing)
    held = Held(
        racing,
        "before_decide_commit",
        lambda: _activate_now(racing, credential, device.device_id),
    )
    _disconnect(racing, account, device.device_id)
    answer = held.release()
    if answer.error is None:  # the answer shows the reserve as the disconnect left it
        assert answer.result.reserve.state == dpb.RESERVE_STATE_FAILED
    _assert_holds_nothing(racing, device.device_id)
    [reserve] = _rows(racing, "SELECT * FROM reserves WHERE device_id = ?", (device.device_id,))
    assert (reserve["state"], reserve["failure_reason"]) == ("FAILED", "DEVICE_NOT_CONNECTED")
    _slot_is_free(racing, account, reserve_code)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_d10_take_over_decided_before_a_disconnect_finishes_without_a_slot(
    racing: Services, point: str
) -> None:
    account, device, credential, _, reserve_code = _reserve_ready(racing)
    held = Held(racing, point, lambda: _activate_now(racing, credential, device.device_id))
    _disconnect(racing, account, device.device_id)
    answer = held.release()
    assert answer.error is None
    assert answer.result.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    _assert_holds_nothing(racing, device.device_id)
    _slot_is_free(racing, account, reserve_code)
