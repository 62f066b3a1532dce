"""Sending a subscription to devices and completing or undoing it (D4-D7, H1-H4).

A delivery is the owner of a SEND handshake: SendSubscription prepares it
(the delivery PENDING, a PENDING slot), CompleteDelivery commits it from the
device, CancelDelivery aborts it for the account. Expiry past the delivery
window is ``Handshakes.expire_due`` (the sweeper) or CompleteDelivery itself.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import handshake as hs
from device_service.errors import DeviceError
from device_service.faults import pause_point
from device_service.peer import LicensePeer
from device_service.per_user import PerUserCodes
from device_service.rules import Caller
from device_service.settings import Settings
from device_service.store import DeviceStore, new_id
from keyslot_server.clock import Clock, now_us
from keyslot_server.requests import Key, Record, fingerprint, stored
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]


def send_hooks(store: DeviceStore) -> hs.Hooks:
    """The SEND purpose: a PENDING slot and delivery at prepare, DELIVERED at commit."""

    def on_prepared(row: Row, grant: lpb.Grant, now: int) -> None:
        # Authoritative D5 DELIVERY_PENDING, under the same write lock as the claim.
        if store.pending_delivery_of(row["device_id"]) is not None:
            raise DeviceError.refused(
                "DELIVERY_PENDING",
                "another delivery to the device is pending",
                deviceId=row["device_id"],
            )
        store.claim_slot(
            row["code"],
            row["device_id"],
            grant.code_details.terms.max_devices,
            now,
            handshake_id=row["handshake_id"],
        )
        store.insert_delivery(
            {
                "delivery_id": row["owner_id"],
                "account_id": row["account_id"],
                "device_id": row["device_id"],
                "code": row["code"],
                "state": "PENDING",
                "failure_reason": "",
                "grant_id": grant.grant_id,
                "handshake_id": row["handshake_id"],
                "create_us": now,
                "expire_us": row["deadline_us"],
                "end_us": None,
            }
        )

    def on_committed(row: Row, grant: lpb.Grant, now: int) -> None:
        store.end_delivery(row["owner_id"], "DELIVERED", now)

    def on_aborted(row: Row, now: int) -> None:
        if store.delivery(row["owner_id"]) is None:
            return  # refused before the delivery existed
        outcome = row["outcome"] or "FAILED"
        reason = row["failure_reason"] if outcome == "FAILED" else ""
        store.end_delivery(row["owner_id"], outcome, now, failure_reason=reason)

    return hs.Hooks(on_prepared, on_committed, on_aborted, prepared_is_stable=True)


@dataclass(frozen=True)
class Refusal:
    """Why one target of a send got no delivery (its reason, message and metadata)."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """One target's answer: its delivery, or the refusal."""

    device_id: str
    delivery: Row | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Send:
    """One SendSubscription: who sends which code to which devices, as which request."""

    account_id: str
    code: str
    device_ids: list[str]
    request_id: str
    caller: Caller


class Deliveries:
    """SendSubscription, CompleteDelivery and CancelDelivery."""

    def __init__(
        self,
        store: DeviceStore,
        license: LicensePeer,
        clock: Clock,
        settings: Settings,
        handshakes: hs.Handshakes,
        per_user: PerUserCodes,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.settings = settings
        self.handshakes = handshakes
        self.per_user = per_user

    # --- send (step 1 for each target) ------------------------------------------------

    def send(self, send: Send) -> list[SendResult]:
        """Prepares a delivery per target device; a refusal answers that target only.

        The request id makes the call idempotent per target (H1): a retry gets
        each target's first answer, and an interrupted target is settled first.
        """
        key = Key(send.caller.key, "SendSubscription", send.request_id)
        print_ = fingerprint(send.account_id, send.code, send.device_ids)
        requests = self.handshakes.requests
        results = []
        with requests.exclusive(key):
            recorded = requests.records(key, print_)
            for pos, device_id in enumerate(send.device_ids):
                rec = recorded.get(pos)
                replay = self._replay(device_id, rec)
                if replay is None:
                    after = rec.ref if rec else ""
                    replay = self._send_one(send, key, pos, print_, device_id, after)
                results.append(replay)
        return results

    def _replay(self, device_id: str, rec: Record | None) -> SendResult | None:
        """The first answer for a target, or None when it must be (re)tried."""
        if rec is None:
            return None
        if rec.status is not None:
            err = self.handshakes.requests.replayed(rec)
            return SendResult(device_id, refusal=Refusal(err.reason, err.message, err.metadata))
        hid = rec.ref
        if not hid:
            return None
        # An earlier attempt was interrupted: settle it, then answer from where it ended.
        with self.handshakes.owned(hid):
            self.handshakes.settle(hid)
            row = self.handshakes.row(hid)
        delivery = self.store.delivery(row["owner_id"])
        if delivery is not None:
            return SendResult(device_id, delivery=delivery)
        return None

    def _send_one(  # noqa: PLR0913
        self, send: Send, key: Key, pos: int, print_: str, device_id: str, after: str
    ) -> SendResult:
        requests = self.handshakes.requests
        try:
            device = self.store.device(device_id)
            if (
                device is None
                or device["account_id"] != send.account_id
                or device["disconnect_us"] is not None
            ):
                raise DeviceError.refused(
                    "DEVICE_NOT_CONNECTED",
                    "the target is not a device connected to this account",
                    deviceId=device_id,
                )
            if self.store.pending_delivery_of(device_id) is not None:
                raise DeviceError.refused(
                    "DELIVERY_PENDING",
                    "another delivery to the device is pending",
                    deviceId=device_id,
                )
            if not device["current_code"]:
                # D5 compares against the code the device uses, its own or its account's (D11).
                used = self.per_user.code_for(device)
                if used is not None:
                    device = {**device, "current_code": used.code}
            now = self.clock.now()
            deadline = to_epoch_us(now + timedelta(hours=self.settings.delivery_window_hours))
            delivery_id = new_id("dlv")
            hid = new_id("hs")
            with self.handshakes.owned(hid):
                row = self.handshakes.begin(
                    purpose="SEND",
                    code=send.code,
                    device=device,
                    caller_channel=send.caller.channel,
                    caller_role=send.caller.role,
                    grant_expire_us=int(deadline or 0),
                    deadline_us=deadline,
                    owner_id=delivery_id,
                    handshake_id=hid,
                    also=lambda hid: requests.claim(key, pos, print_, hid, after=after),
                )
                self.handshakes.prepare(hid, row)
            # The claim already names the handshake, whose owner is the delivery:
            # a replay finds it from there (_replay), so no transaction of its
            # own records the delivery id.
            return SendResult(device_id, delivery=self.store.delivery(delivery_id))
        except DeviceError as err:
            if stored(err):
                requests.finish(key, pos, print_, refusal=err)
            return SendResult(device_id, refusal=Refusal(err.reason, err.message, err.metadata))

    # --- complete (step 2) and cancel (undo) ------------------------------------------------

    def complete(self, device: Row, delivery: Row) -> tuple[Row, lpb.Code]:
        """The device completes a delivery to it: the code becomes its current code (D7).

        Returns the delivery after it and the code's details; a delivery past its
        window is refused DELIVERY_EXPIRED (decided here, not by sweeper timing).
        """
        hid = delivery["handshake_id"]
        with self.handshakes.owned(hid):
            delivery = self._delivery(delivery["delivery_id"])
            if delivery["state"] == "DELIVERED":
                return delivery, self.license.get_code(delivery["code"])
            _refuse_unless_pending(delivery)
            row = self.handshakes.row(hid)
            if row["step"] == hs.PREPARED:
                if delivery["expire_us"] <= now_us(self.clock):
                    # Decided here, not by sweeper timing: past the window it expires.
                    self.handshakes.request_abort(hid, "EXPIRED", "DELIVERY_EXPIRED", "too late")
                    self.handshakes.settle_quietly(hid)
                    raise DeviceError.refused(
                        "DELIVERY_EXPIRED",
                        "the delivery passed its deadline",
                        deliveryId=delivery["delivery_id"],
                    )
                pause_point("before_decide_commit")
                if not self.handshakes.request_commit(hid, device["app_version"]):
                    # An abort was decided first (a disconnect): it stands.
                    self.handshakes.settle_quietly(hid)
                    raise self.handshakes.lost(
                        hid,
                        DeviceError.refused(
                            "DELIVERY_NOT_PENDING",
                            "the delivery is being undone",
                            deliveryId=delivery["delivery_id"],
                        ),
                    )
            elif row["step"] != hs.COMMITTING:
                raise DeviceError.refused(
                    "DELIVERY_NOT_PENDING",
                    "the delivery is being undone",
                    deliveryId=delivery["delivery_id"],
                )
            grant = self.handshakes.commit(hid)
        return self._delivery(delivery["delivery_id"]), grant.code_details

    def cancel(self, delivery: Row) -> Row:
        """The account undoes a PENDING delivery (D6); returns the delivery after it."""
        hid = delivery["handshake_id"]
        with self.handshakes.owned(hid):
            delivery = self._delivery(delivery["delivery_id"])
            if delivery["state"] != "CANCELLED":
                _refuse_unless_pending(delivery)
                row = self.handshakes.row(hid)
                if row["step"] == hs.PREPARED:
                    decided = self.handshakes.request_abort(hid, "CANCELLED", "", "")
                else:  # an earlier cancel decided it and its abort call did not get through
                    decided = row["step"] == hs.ABORTING and row["outcome"] == "CANCELLED"
                if not decided:
                    # Completed, or undone otherwise first (a disconnect, the expiry): that
                    # stands; it ends now if the license service answers, else by recovery.
                    with suppress(DeviceError):
                        self.handshakes.settle(hid)
                    raise self.handshakes.lost(
                        hid,
                        DeviceError.refused(
                            "DELIVERY_NOT_PENDING",
                            "the delivery is being completed or undone",
                            deliveryId=delivery["delivery_id"],
                        ),
                    )
                self.handshakes.abort(hid)  # UNAVAILABLE: decided; recovery finishes it
        return self._delivery(delivery["delivery_id"])

    def list(
        self, *, account_id: str, device_id: str, state: str, page_size: int, page_token: str
    ) -> tuple[list[Row], str]:
        """An account's or a device's deliveries, newest first, one page."""
        return self.store.list_deliveries(
            account_id=account_id,
            device_id=device_id,
            state=state,
            page_size=page_size,
            page_token=page_token,
        )

    def _delivery(self, delivery_id: str) -> Row:
        row = self.store.delivery(delivery_id)
        assert row is not None
        return row


def _refuse_unless_pending(delivery: Row) -> None:
    if delivery["state"] == "EXPIRED":
        raise DeviceError.refused(
            "DELIVERY_EXPIRED",
            "the delivery passed its deadline",
            deliveryId=delivery["delivery_id"],
        )
    if delivery["state"] != "PENDING":
        raise DeviceError.refused(
            "DELIVERY_NOT_PENDING",
            f"the delivery is {delivery['state'].lower()}",
            deliveryId=delivery["delivery_id"],
        )
