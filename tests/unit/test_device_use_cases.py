"""The device service's use cases against a fake license service and a fake clock.

A real DeviceStore on a temp SQLite file (local, fast), ``FakeLicense`` for
the peer and a ``FixedClock``: the handshake rules (D3-D11, H1-H4) in
milliseconds, no processes. Use cases that live in a servicer method are
called on the servicer with the caller bound the way the auth interceptor
binds it. The e2e tests run the same rules over gRPC between processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from keyslot.device.v1 import device_service_pb2 as pb

from device_service import handshake as hs
from device_service.api import DeviceApi
from device_service.errors import DeviceError
from device_service.rules import Caller
from device_service.server import Domain, Settings, build_domain
from device_service.store import DeviceStore, new_id
from keyslot_server import auth, trace
from keyslot_server.auth import Principal
from keyslot_server.clock import FixedClock
from keyslot_server.timeconv import to_epoch_us
from tests.unit.fakes import FakeLicense

START = datetime(2026, 1, 1, tzinfo=UTC)
CODE_A = "AAAAA-11111-AAAAA-11111"
CODE_B = "BBBBB-22222-BBBBB-22222"
PER_USER = "PPPPP-33333-PPPPP-33333"

Row = dict[str, Any]


@dataclass
class World:
    """One device service (its domain objects over one store) and its fake peer."""

    clock: FixedClock
    license: FakeLicense
    store: DeviceStore
    domain: Domain

    @property
    def api(self) -> DeviceApi:
        return self.domain.api

    def later(self, **delta: float) -> None:
        self.clock.set(self.clock.now() + timedelta(**delta))

    def account(self) -> str:
        account_id = new_id("acc")
        with self.store.write() as db:
            db["accounts"].insert(
                {"account_id": account_id, "display_name": "a", "kind": 1, "create_us": 1}
            )
        return account_id

    def device(self, account_id: str) -> str:
        """A device connected to the account, with no code yet."""
        device_id = new_id("dev")
        now = to_epoch_us(self.clock.now())
        with self.store.write() as db:
            db["devices"].insert(
                {
                    "device_id": device_id,
                    "account_id": account_id,
                    "platform": 1,
                    "app_version": "10.0",
                    "region": "FI",
                    "display_name": "laptop",
                    "current_code": "",
                    "connect_us": now,
                    "update_us": now,
                    "disconnect_us": None,
                    "last_check_in_us": None,
                }
            )
        return device_id

    def row(self, device_id: str) -> Row:
        row = self.store.device(device_id)
        assert row is not None
        return row

    def slot_states(self, code: str) -> dict[str, str]:
        """The held slots of a code, by holder (RELEASED ones are history)."""
        rows = self.store.query(
            "SELECT device_id, state FROM slots WHERE code = ? AND state != 'RELEASED'", (code,)
        )
        return {r["device_id"]: r["state"] for r in rows}

    # --- the use cases, called as their callers call them --------------------------------

    def activate(
        self, device_id: str, code: str, request_id: str = ""
    ) -> pb.ActivateDeviceResponse:
        with self.as_device(device_id):
            request = pb.ActivateDeviceRequest(code=code, request_id=request_id)
            return self.api.ActivateDevice(request, None)

    def subscribe(self, account_id: str, code: str) -> None:
        with as_portal(account_id):
            self.api.AddSubscription(
                pb.AddSubscriptionRequest(account_id=account_id, code=code), None
            )

    def send(self, account_id: str, code: str, device_id: str) -> Row:
        """Sends ``code`` to one device; returns its delivery row (DeviceError if refused)."""
        with as_portal(account_id):
            request = pb.SendSubscriptionRequest(
                account_id=account_id, code=code, device_ids=[device_id], request_id=new_id("rq")
            )
            (result,) = self.api.SendSubscription(request, None).results
        if result.HasField("refusal"):
            raise DeviceError.refused(result.refusal.reason, result.refusal.message)
        delivery = self.store.delivery(result.delivery.delivery_id)
        assert delivery is not None
        return delivery

    def complete(self, delivery: Row) -> None:
        with self.as_device(delivery["device_id"]):
            request = pb.CompleteDeliveryRequest(delivery_id=delivery["delivery_id"])
            self.api.CompleteDelivery(request, None)

    def add_reserve(self, device_id: str, code: str) -> Row:
        caller = Caller(f"device:device:{device_id}", "DEVICE")
        return self.domain.reserves.add(self.row(device_id), code, caller)

    @contextmanager
    def as_device(self, device_id: str) -> Iterator[None]:
        principal = Principal(
            kind="device",
            name=f"device:{device_id}",
            account_id=self.row(device_id)["account_id"],
            device_id=device_id,
        )
        with calling_as(principal):
            yield


@contextmanager
def calling_as(principal: Principal) -> Iterator[None]:
    """Binds the caller for the calls inside, as the auth interceptor does per RPC."""
    token = auth.set_principal(principal)
    try:
        yield
    finally:
        auth.reset_principal(token)


def as_portal(account_id: str) -> Any:
    """The account's own credential (the portal acting for it)."""
    return calling_as(Principal(kind="portal", name=f"account:{account_id}", account_id=account_id))


def portal(account_id: str) -> Caller:
    """The account's portal credential as a handshake caller."""
    return Caller(f"portal:account:{account_id}", "PORTAL")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FixedClock(START)
    fake = FakeLicense(clock)
    fake.add_code(CODE_A, max_devices=2, duration=timedelta(days=30))
    fake.add_code(CODE_B, max_devices=2, duration=timedelta(days=365))
    fake.add_code(PER_USER, max_devices=1, slot_kind="PER_USER")
    # Local and throw-away: no fsync per transaction.
    store = DeviceStore(str(tmp_path / "device.db"), synchronous="OFF")
    domain = build_domain(store, clock, fake, Settings())
    try:
        yield World(clock, fake, store, domain)
    finally:
        store.close()


def refusal_of(call: Any) -> str:
    with pytest.raises(DeviceError) as err:
        call()
    return err.value.reason


# --- ActivateDevice ------------------------------------------------------------------------


def test_d3_activation_commits_and_claims_one_slot(world: World) -> None:
    device = world.device(world.account())
    answer = world.activate(device, CODE_A)
    assert answer.device.current_code == CODE_A == world.row(device)["current_code"]
    assert world.slot_states(CODE_A) == {device: "ACTIVE"}
    assert world.license.grant_of(CODE_A, device).state == "COMMITTED"
    # L1: the term starts at the first activation.
    assert world.license.codes[CODE_A].first_activate_time == START


def test_h1_activation_replays_by_request_id(world: World) -> None:
    device = world.device(world.account())
    first = world.activate(device, CODE_A, request_id="req-1")
    world.later(minutes=1)
    again = world.activate(device, CODE_A, request_id="req-1")
    assert again.device == first.device
    assert world.license.calls.count("prepare_grant") == 1
    assert world.license.calls.count("commit_grant") == 1
    assert world.license.codes[CODE_A].activation_count == 1
    assert world.slot_states(CODE_A) == {device: "ACTIVE"}
    assert refusal_of(lambda: world.activate(device, CODE_B, "req-1")) == "REQUEST_ID_REUSED"


def test_h1_a_request_id_is_scoped_by_caller_and_method(world: World) -> None:
    acc_a, acc_b = world.account(), world.account()
    dev_a, dev_b = world.device(acc_a), world.device(acc_b)
    world.subscribe(acc_a, CODE_A)
    world.subscribe(acc_b, CODE_A)
    backend = Principal(kind="portal", name="portal")  # the portal service: any account

    def send(account_id: str, device_id: str) -> Any:
        request = pb.SendSubscriptionRequest(
            account_id=account_id, code=CODE_A, device_ids=[device_id], request_id="rq-1"
        )
        (result,) = world.api.SendSubscription(request, None).results
        return result

    with calling_as(backend):
        first = send(acc_a, dev_a)
        assert first.HasField("delivery")
        # The same caller, method and id with another account: other parameters.
        assert refusal_of(lambda: send(acc_b, dev_b)) == "REQUEST_ID_REUSED"
        assert send(acc_a, dev_a).delivery.delivery_id == first.delivery.delivery_id
    # Another caller's "rq-1" is its own request.
    with as_portal(acc_b):
        assert send(acc_b, dev_b).HasField("delivery")
    # And the same id in another method is another request too.
    assert world.activate(dev_a, CODE_B, request_id="rq-1").device.current_code == CODE_B


def test_d3_no_free_slots_leaves_no_slot_and_aborts_the_grant(world: World) -> None:
    account = world.account()
    holders = [world.device(account) for _ in range(2)]
    for device in holders:
        world.activate(device, CODE_A)
    third = world.device(account)
    assert refusal_of(lambda: world.activate(third, CODE_A)) == "NO_FREE_SLOTS"
    assert world.slot_states(CODE_A) == dict.fromkeys(holders, "ACTIVE")
    assert world.license.grant_of(CODE_A, third).state == "ABORTED"
    assert world.row(third)["current_code"] == ""
    assert world.license.codes[CODE_A].activation_count == 2


# --- SendSubscription, CompleteDelivery, CancelDelivery, expiry -----------------------------


def test_d4_send_makes_a_pending_delivery_and_a_pending_slot(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    assert delivery["state"] == "PENDING"
    assert world.slot_states(CODE_A) == {device: "PENDING"}
    assert world.license.grant_of(CODE_A, device).state == "PREPARED"
    assert world.row(device)["current_code"] == ""  # not until it is completed (D7)


def test_d7_complete_makes_the_code_current_and_releases_the_old_slot(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.activate(device, CODE_A)
    world.subscribe(account, CODE_B)
    delivery = world.send(account, CODE_B, device)
    world.complete(delivery)
    assert world.store.delivery(delivery["delivery_id"])["state"] == "DELIVERED"  # type: ignore[index]
    assert world.row(device)["current_code"] == CODE_B
    assert world.slot_states(CODE_B) == {device: "ACTIVE"}
    assert world.slot_states(CODE_A) == {}  # the replaced code's seat is free again
    assert world.license.grant_of(CODE_B, device).state == "COMMITTED"


def test_d6_cancel_frees_the_slot_and_aborts_the_grant(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    with as_portal(account):
        request = pb.CancelDeliveryRequest(delivery_id=delivery["delivery_id"])
        answer = world.api.CancelDelivery(request, None)
    assert answer.delivery.state == pb.DELIVERY_STATE_CANCELLED
    assert world.slot_states(CODE_A) == {}
    assert world.license.grant_of(CODE_A, device).state == "ABORTED"
    assert refusal_of(lambda: world.complete(delivery)) == "DELIVERY_NOT_PENDING"


def test_d4_h2_a_delivery_not_completed_in_its_window_expires(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    world.later(hours=23)
    assert world.domain.handshakes.expire_due() == 0
    world.later(hours=1)  # the default window is 24 h
    assert world.domain.handshakes.expire_due() == 1
    assert world.store.delivery(delivery["delivery_id"])["state"] == "EXPIRED"  # type: ignore[index]
    assert world.slot_states(CODE_A) == {}
    assert world.license.grant_of(CODE_A, device).state == "ABORTED"
    assert refusal_of(lambda: world.complete(delivery)) == "DELIVERY_EXPIRED"


def test_h2_a_commit_after_the_grant_deadline_ends_the_delivery_expired(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    world.license.fail_next("commit_grant")
    assert refusal_of(lambda: world.complete(delivery)) == "LICENSE_SERVICE_UNAVAILABLE"
    world.later(hours=25)  # the license side lets the grant lapse meanwhile
    world.domain.handshakes.recover()
    assert world.store.delivery(delivery["delivery_id"])["state"] == "EXPIRED"  # type: ignore[index]
    assert world.slot_states(CODE_A) == {}
    assert world.row(device)["current_code"] == ""
    assert world.license.grant_of(CODE_A, device).abort_reason == "GRANT_EXPIRED"


def test_h3_a_code_blocked_before_completion_is_not_activated(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    world.license.block(CODE_A)
    assert refusal_of(lambda: world.complete(delivery)) == "CODE_BLOCKED"
    assert world.store.delivery(delivery["delivery_id"])["state"] == "FAILED"  # type: ignore[index]
    assert world.slot_states(CODE_A) == {}
    assert world.license.grant_of(CODE_A, device).state == "ABORTED"
    assert world.license.codes[CODE_A].first_activate_time is None


# --- DisconnectDevice ------------------------------------------------------------------------


def test_d3_disconnect_during_a_prepared_send_fails_it_and_aborts_the_grant(world: World) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    with as_portal(account):
        world.api.DisconnectDevice(pb.DisconnectDeviceRequest(device_id=device), None)
    after = world.store.delivery(delivery["delivery_id"])
    assert after is not None
    assert (after["state"], after["failure_reason"]) == ("FAILED", "DEVICE_NOT_CONNECTED")
    assert world.slot_states(CODE_A) == {}
    assert world.license.grant_of(CODE_A, device).state == "ABORTED"
    assert world.store.handshake(delivery["handshake_id"])["step"] == hs.ABORTED  # type: ignore[index]


# --- recovery (H4) ---------------------------------------------------------------------------


@pytest.mark.parametrize("answer_lost", [False, True], ids=["request-lost", "answer-lost"])
def test_h4_commit_unanswered_stays_committing_and_recovery_finishes_it(
    world: World, answer_lost: bool
) -> None:
    account = world.account()
    device = world.device(account)
    world.subscribe(account, CODE_A)
    delivery = world.send(account, CODE_A, device)
    world.license.fail_next("commit_grant", after=answer_lost)
    assert refusal_of(lambda: world.complete(delivery)) == "LICENSE_SERVICE_UNAVAILABLE"
    assert world.store.handshake(delivery["handshake_id"])["step"] == hs.COMMITTING  # type: ignore[index]
    assert world.slot_states(CODE_A) == {device: "PENDING"}
    assert world.domain.handshakes.recover() == 1
    assert world.store.handshake(delivery["handshake_id"])["step"] == hs.COMMITTED  # type: ignore[index]
    assert world.store.delivery(delivery["delivery_id"])["state"] == "DELIVERED"  # type: ignore[index]
    assert world.row(device)["current_code"] == CODE_A
    assert world.slot_states(CODE_A) == {device: "ACTIVE"}
    # H1: the re-sent commit is the same request; the license side counts it once.
    assert world.license.codes[CODE_A].activation_count == 1


def test_h4_prepare_unanswered_is_undone_by_recovery(world: World) -> None:
    device = world.device(world.account())
    world.license.fail_next("prepare_grant", after=True)  # a grant exists; its answer is lost
    assert refusal_of(lambda: world.activate(device, CODE_A)) == "LICENSE_SERVICE_UNAVAILABLE"
    assert world.domain.handshakes.recover() == 1
    assert world.license.grant_of(CODE_A, device).state == "ABORTED"
    assert world.slot_states(CODE_A) == {}
    assert world.row(device)["current_code"] == ""


def test_later_steps_of_a_handshake_run_in_the_trace_of_the_call_that_began_it(
    world: World,
) -> None:
    seen: dict[str, trace.Span | None] = {}
    for step in ("prepare_grant", "commit_grant", "abort_grant"):
        sent = getattr(world.license, step)

        def spy(*args: Any, step: str = step, sent: Any = sent) -> Any:
            seen[step] = trace.current()
            return sent(*args)

        setattr(world.license, step, spy)
    account = world.account()
    device, other = world.device(account), world.device(account)
    world.subscribe(account, CODE_A)
    send_span = trace.start(None)
    with bound(send_span):
        delivery = world.send(account, CODE_A, device)
        late = world.send(account, CODE_A, other)
    assert seen["prepare_grant"] is send_span
    assert world.store.handshake(delivery["handshake_id"])["traceparent"] == send_span.traceparent  # type: ignore[index]
    # CompleteDelivery, a later call with a trace of its own: the commit runs in the send's.
    complete_span = trace.start(None)
    with bound(complete_span):
        world.complete(delivery)
    commit = seen["commit_grant"]
    assert commit is not None and commit.trace_id == send_span.trace_id
    assert commit.parent_id == send_span.span_id and commit.span_id != send_span.span_id
    assert commit.links == [(complete_span.trace_id, complete_span.span_id)]
    assert complete_span.links == [(commit.trace_id, commit.span_id)]
    # The sweeper's expiry (nothing bound) aborts in the send's trace too.
    world.later(hours=24)
    assert world.domain.handshakes.expire_due() == 1
    abort = seen["abort_grant"]
    assert abort is not None and abort.trace_id == send_span.trace_id and abort.links == []
    assert world.store.delivery(late["delivery_id"])["state"] == "EXPIRED"  # type: ignore[index]


@contextmanager
def bound(span: trace.Span) -> Iterator[None]:
    """Binds ``span`` for the calls inside, as the server interceptor does per RPC."""
    token = trace.bind(span)
    try:
        yield
    finally:
        trace.unbind(token)


# --- reserve codes (D8-D10) ------------------------------------------------------------------


def test_d9_the_reserve_takes_over_when_the_current_code_expires(world: World) -> None:
    device = world.device(world.account())
    world.activate(device, CODE_A)  # 30 days
    reserve = world.add_reserve(device, CODE_B)
    assert reserve["state"] == "WAITING"
    assert world.slot_states(CODE_B) == {}  # a waiting reserve holds no slot
    world.later(days=29)
    assert world.domain.reserves.take_over_due() == 0
    world.later(days=1)
    assert world.domain.reserves.take_over_due() == 1
    assert world.store.reserve(reserve["reserve_id"])["state"] == "ACTIVATED"  # type: ignore[index]
    assert world.row(device)["current_code"] == CODE_B
    assert world.slot_states(CODE_B) == {device: "ACTIVE"}
    assert world.slot_states(CODE_A) == {}
    # L1: the reserve's term starts when it takes over.
    assert world.license.codes[CODE_B].first_activate_time == START + timedelta(days=30)


def test_d10_a_failed_take_over_can_be_tried_again(world: World) -> None:
    account = world.account()
    device, other = world.device(account), world.device(account)
    world.license.codes[CODE_B].max_devices = 1
    world.activate(device, CODE_A)
    reserve = world.add_reserve(device, CODE_B)
    world.activate(other, CODE_B)  # takes the reserve code's only slot
    world.later(days=30)
    world.domain.reserves.take_over_due()
    failed = world.store.reserve(reserve["reserve_id"])
    assert failed is not None
    assert (failed["state"], failed["failure_reason"]) == ("FAILED", "NO_FREE_SLOTS")
    assert world.row(device)["current_code"] == CODE_A
    assert world.domain.reserves.take_over_due() == 0  # only the app's try-again runs it now
    with as_portal(account):
        world.api.DisconnectDevice(pb.DisconnectDeviceRequest(device_id=other), None)
    with world.as_device(device):
        request = pb.RetryReserveActivationRequest(device_id=device)
        answer = world.api.RetryReserveActivation(request, None)
    assert answer.reserve.state == pb.RESERVE_STATE_ACTIVATED
    assert world.row(device)["current_code"] == CODE_B
    assert world.slot_states(CODE_B) == {device: "ACTIVE"}


def test_d10_activate_now_only_while_the_current_code_is_blocked(world: World) -> None:
    device = world.device(world.account())
    world.activate(device, CODE_A)
    reserve = world.add_reserve(device, CODE_B)
    request = pb.ActivateReserveNowRequest(device_id=device)
    with world.as_device(device):
        assert refusal_of(lambda: world.api.ActivateReserveNow(request, None)) == (
            "CURRENT_NOT_BLOCKED"
        )
        world.license.block(CODE_A)
        answer = world.api.ActivateReserveNow(request, None)
    assert answer.reserve.state == pb.RESERVE_STATE_ACTIVATED
    assert world.store.reserve(reserve["reserve_id"])["state"] == "ACTIVATED"  # type: ignore[index]
    assert world.row(device)["current_code"] == CODE_B
    assert world.slot_states(CODE_A) == {}


def test_h3_a_reserve_blocked_before_its_take_over_fails_with_the_reason(world: World) -> None:
    device = world.device(world.account())
    world.activate(device, CODE_A)
    reserve = world.add_reserve(device, CODE_B)
    world.license.block(CODE_B)
    world.later(days=30)
    world.domain.reserves.take_over_due()
    failed = world.store.reserve(reserve["reserve_id"])
    assert failed is not None
    assert (failed["state"], failed["failure_reason"]) == ("FAILED", "CODE_BLOCKED")
    assert world.slot_states(CODE_B) == {}
    assert world.license.grant_of(CODE_B, device).state == "ABORTED"
    assert world.row(device)["current_code"] == CODE_A


# --- per-user codes (D11) --------------------------------------------------------------------


def test_d11_a_per_user_code_takes_one_account_slot_and_a_subscription(world: World) -> None:
    account, other = world.account(), world.account()
    device = world.device(account)
    added = world.domain.per_user.add(world.store.account(account), PER_USER, portal(account), "r1")  # type: ignore[arg-type]
    assert (added["account_id"], added["per_user"]) == (account, 1)
    assert world.slot_states(PER_USER) == {account: "ACTIVE"}  # held by the account
    assert world.license.codes[PER_USER].first_activate_time == START  # L1
    # The account's device without a code of its own uses it, without a slot of its own.
    used = world.domain.per_user.code_for(world.row(device))
    assert used is not None and used.code == PER_USER
    # max devices counts accounts: a second account finds no free slot.
    second = world.store.account(other)
    assert second is not None
    add = world.domain.per_user.add
    assert refusal_of(lambda: add(second, PER_USER, portal(other), "r2")) == "NO_FREE_SLOTS"
    assert world.license.grant_of(PER_USER, other).state == "ABORTED"
    # H1: the first account's retry gets its first answer, not a second slot.
    again = add(world.store.account(account), PER_USER, portal(account), "r1")  # type: ignore[arg-type]
    assert again == added
    assert world.slot_states(PER_USER) == {account: "ACTIVE"}
