"""Sending a subscription to devices and completing or undoing it (D4-D7, H1-H4)."""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from datetime import timedelta
from typing import Any

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import convert, rules
from device_service import handshake as hs
from device_service.api_base import ApiBase
from device_service.errors import DeviceError
from device_service.faults import pause_point
from device_service.per_user import PerUserCodes
from device_service.store import new_id
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]
MAX_TARGETS = 100


def send_hooks(store) -> hs.Hooks:  # type: ignore[no-untyped-def]
    """The SEND purpose: a PENDING slot and delivery at prepare, DELIVERED at commit."""

    def on_prepared(db, row: Row, grant: lpb.Grant, now: int) -> None:  # type: ignore[no-untyped-def]
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
        db["deliveries"].insert(
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

    def on_committed(db, row: Row, grant: lpb.Grant, now: int) -> None:  # type: ignore[no-untyped-def]
        db["deliveries"].update(row["owner_id"], {"state": "DELIVERED", "end_us": now})

    def on_aborted(db, row: Row, now: int) -> None:  # type: ignore[no-untyped-def]
        if store.delivery(row["owner_id"]) is None:
            return  # refused before the delivery existed
        outcome = row["outcome"] or "FAILED"
        reason = row["failure_reason"] if outcome == "FAILED" else ""
        db["deliveries"].update(
            row["owner_id"], {"state": outcome, "failure_reason": reason, "end_us": now}
        )

    return hs.Hooks(on_prepared, on_committed, on_aborted, prepared_is_stable=True)


def refusal_of(err: DeviceError) -> pb.Refusal:
    return pb.Refusal(reason=err.reason, message=err.message, metadata=err.metadata)


class DeliveriesApi(ApiBase):
    """SendSubscription .. ListDeliveries."""

    per_user: PerUserCodes

    def SendSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.SendSubscriptionRequest, context
    ) -> pb.SendSubscriptionResponse:
        p = self.principal()
        rules.require_account_caller(p)
        channel, role = rules.caller_context(p)
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id)
        ids = list(request.device_ids)
        if not 1 <= len(ids) <= MAX_TARGETS:
            raise DeviceError.invalid("device_ids", f"1-{MAX_TARGETS} device ids required")
        for i, device_id in enumerate(ids):
            rules.resource_id(device_id, f"device_ids[{i}]")
        if len(set(ids)) != len(ids):
            raise DeviceError.invalid("device_ids", "each device once")
        self.subscription_for(account["account_id"], code)
        scope = f"send:{account['account_id']}"
        fingerprint = hashlib.sha256(json.dumps([code, ids]).encode()).hexdigest()
        results = []
        with self.handshakes.owned(f"req:{scope}:{request_id}"):
            recorded = self.store.outcomes(scope, request_id)
            if recorded and any(r["fingerprint"] != fingerprint for r in recorded.values()):
                raise DeviceError(
                    "REQUEST_ID_REUSED",
                    "the request id was used with other parameters",
                    _already_exists(),
                    metadata={"requestId": request_id},
                )
            for pos, device_id in enumerate(ids):
                replay = self._replay_send(recorded.get(pos))
                if replay is not None:
                    results.append(pb.SendResult(device_id=device_id, **replay))
                    continue
                outcome = self._send_one(
                    scope, request_id, pos, fingerprint, account, code, device_id, channel, role
                )
                results.append(pb.SendResult(device_id=device_id, **outcome))
        return pb.SendSubscriptionResponse(results=results)

    def _replay_send(self, rec: Row | None) -> dict[str, Any] | None:
        """The first answer for a target, or None when it must be (re)tried."""
        if rec is None:
            return None
        if rec["delivery_id"]:
            return {"delivery": convert.delivery(self.store.delivery(rec["delivery_id"]))}
        if rec["reason"]:
            meta = json.loads(rec["metadata_json"] or "{}")
            return {
                "refusal": pb.Refusal(reason=rec["reason"], message=rec["message"], metadata=meta)
            }
        hid = rec["handshake_id"]
        if not hid:
            return None
        # An earlier attempt was interrupted: settle it, then answer from where it ended.
        with self.handshakes.owned(hid):
            self.handshakes.settle(hid)
            row = self.store.handshake(hid)
        assert row is not None
        delivery = self.store.delivery(row["owner_id"])
        if delivery is not None:
            return {"delivery": convert.delivery(delivery)}
        return None

    def _send_one(  # type: ignore[no-untyped-def]
        self, scope, request_id, pos, fingerprint, account, code, device_id, channel, role
    ) -> dict[str, Any]:
        record = dict(target=device_id, fingerprint=fingerprint, create_us=self.now_us())
        try:
            device = self.store.device(device_id)
            if (
                device is None
                or device["account_id"] != account["account_id"]
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
            now = self.now()
            deadline = to_epoch_us(now + timedelta(hours=self.settings.delivery_window_hours))
            delivery_id = new_id("dlv")
            hid = new_id("hs")
            with self.handshakes.owned(hid):
                with self.store.write() as db:
                    row = self.handshakes.begin(
                        db,
                        purpose="SEND",
                        code=code,
                        device=device,
                        caller_channel=channel,
                        caller_role=role,
                        grant_expire_us=deadline,
                        deadline_us=deadline,
                        owner_id=delivery_id,
                        handshake_id=hid,
                    )
                    self.store.put_outcome(scope, request_id, pos, handshake_id=hid, **record)
                self.handshakes.prepare(hid, row)
            # The outcome row already names the handshake, whose owner is the
            # delivery: a replay finds it from there (_replay_send), so no
            # transaction of its own records the delivery id.
            return {"delivery": convert.delivery(self.store.delivery(delivery_id))}
        except DeviceError as err:
            if not err.transient:
                self.store.put_outcome(
                    scope,
                    request_id,
                    pos,
                    reason=err.reason,
                    message=err.message,
                    metadata_json=json.dumps(err.metadata),
                    **record,
                )
            return {"refusal": refusal_of(err)}

    def CompleteDelivery(  # type: ignore[no-untyped-def]
        self, request: pb.CompleteDeliveryRequest, context
    ) -> pb.CompleteDeliveryResponse:
        device = self.own_device()
        rules.request_id(request.request_id, required=False)
        delivery = self.delivery_for(request.delivery_id)
        hid = delivery["handshake_id"]
        with self.handshakes.owned(hid):
            delivery = self.store.delivery(delivery["delivery_id"])
            assert delivery is not None
            if delivery["state"] == "DELIVERED":
                code = self.license.get_code(delivery["code"])
                return pb.CompleteDeliveryResponse(delivery=convert.delivery(delivery), code=code)
            _refuse_unless_pending(delivery)
            row = self.store.handshake(hid)
            assert row is not None
            if row["step"] == hs.PREPARED:
                if delivery["expire_us"] <= self.now_us():
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
        done = self.store.delivery(delivery["delivery_id"])
        return pb.CompleteDeliveryResponse(delivery=convert.delivery(done), code=grant.code_details)

    def CancelDelivery(  # type: ignore[no-untyped-def]
        self, request: pb.CancelDeliveryRequest, context
    ) -> pb.CancelDeliveryResponse:
        rules.require_account_caller(self.principal())
        rules.request_id(request.request_id, required=False)
        delivery = self.delivery_for(request.delivery_id)
        hid = delivery["handshake_id"]
        with self.handshakes.owned(hid):
            delivery = self.store.delivery(delivery["delivery_id"])
            assert delivery is not None
            if delivery["state"] != "CANCELLED":
                _refuse_unless_pending(delivery)
                row = self.store.handshake(hid)
                assert row is not None
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
        done = self.store.delivery(delivery["delivery_id"])
        return pb.CancelDeliveryResponse(delivery=convert.delivery(done))

    def GetDelivery(self, request: pb.GetDeliveryRequest, context) -> pb.GetDeliveryResponse:  # type: ignore[no-untyped-def]
        return pb.GetDeliveryResponse(
            delivery=convert.delivery(self.delivery_for(request.delivery_id))
        )

    def ListDeliveries(  # type: ignore[no-untyped-def]
        self, request: pb.ListDeliveriesRequest, context
    ) -> pb.ListDeliveriesResponse:
        if bool(request.account_id) == bool(request.device_id):
            raise DeviceError.invalid("account_id", "give exactly one of account_id, device_id")
        if request.state not in pb.DeliveryState.values():
            raise DeviceError.invalid("state", "unknown delivery state")
        if request.account_id:
            where, key = "account_id = ?", self.account_for(request.account_id)["account_id"]
        else:
            where, key = "device_id = ?", self.device_for(request.device_id)["device_id"]
        params: tuple = (key,)  # type: ignore[type-arg]
        if request.state:
            where += " AND state = ?"
            params += (pb.DeliveryState.Name(request.state).removeprefix("DELIVERY_STATE_"),)
        rows, token = self.page(
            f"SELECT * FROM deliveries WHERE {where} ORDER BY create_us DESC, rowid DESC",
            params,
            request.page_size,
            request.page_token,
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery(r) for r in rows], next_page_token=token
        )


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


def _already_exists():  # type: ignore[no-untyped-def]

    return Code.ALREADY_EXISTS
