"""The app enters a code itself: ActivateDevice (prepare + claim + commit in one call)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import convert, rules
from device_service import handshake as hs
from device_service.api_base import ApiBase
from device_service.errors import DeviceError
from device_service.store import new_id
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]
# How long the license side holds an ACTIVATE grant; it is committed at once.
ACTIVATE_HOLD = timedelta(minutes=10)


def activate_hooks(store) -> hs.Hooks:  # type: ignore[no-untyped-def]
    """The ACTIVATE purpose: a PENDING slot at prepare, made ACTIVE at commit."""

    def on_prepared(db, row: Row, grant: lpb.Grant, now: int) -> None:  # type: ignore[no-untyped-def]
        store.claim_slot(
            row["code"],
            row["device_id"],
            grant.code_details.terms.max_devices,
            now,
            handshake_id=row["handshake_id"],
        )

    def nothing(*_: Any) -> None:
        return None

    # PREPARED is mid-call: an orphaned one is undone by recovery.
    return hs.Hooks(on_prepared, nothing, nothing, prepared_is_stable=False, commit_at_once=True)


class ActivationApi(ApiBase):
    """ActivateDevice."""

    def ActivateDevice(  # type: ignore[no-untyped-def]
        self, request: pb.ActivateDeviceRequest, context
    ) -> pb.ActivateDeviceResponse:
        device = self.own_device()
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False) or secrets.token_hex(16)
        scope = f"activate:{device['device_id']}"
        with self.handshakes.owned(f"req:{scope}:{request_id}"):
            rec = self.store.outcomes(scope, request_id).get(0)
            if rec is not None:
                if rec["fingerprint"] != code:
                    raise DeviceError(
                        "REQUEST_ID_REUSED",
                        "the request id was used with another code",
                        Code.ALREADY_EXISTS,
                        metadata={"requestId": request_id},
                    )
                replay = self._replay_activation(rec)
                if replay is not None:
                    return replay
            return self._activate(scope, request_id, device, code)

    def _replay_activation(self, rec: Row) -> pb.ActivateDeviceResponse | None:
        if rec["reason"]:
            raise DeviceError.refused(rec["reason"], rec["message"])
        hid = rec["handshake_id"]
        with self.handshakes.owned(hid):
            step = self.handshakes.settle(hid)
        row = self.store.handshake(hid)
        assert row is not None
        if step == hs.COMMITTED:
            return self._activation_answer(row["device_id"], self.license.get_code(row["code"]))
        if row["failure_reason"] and row["failure_reason"] not in hs.NOT_AN_ANSWER:
            raise DeviceError.refused(row["failure_reason"], row["failure_message"] or "")
        return None  # interrupted or rate-limited earlier: try again

    def _activate(
        self, scope: str, request_id: str, device: Row, code: str
    ) -> pb.ActivateDeviceResponse:
        record = dict(target=device["device_id"], fingerprint=code, create_us=self.now_us())
        hid = new_id("hs")
        try:
            with self.handshakes.owned(hid):
                with self.store.write() as db:
                    row = self.handshakes.begin(
                        db,
                        purpose="ACTIVATE",
                        code=code,
                        device=device,
                        caller_channel="DEVICE",
                        caller_role="",
                        grant_expire_us=int(to_epoch_us(self.now() + ACTIVATE_HOLD) or 0),
                        handshake_id=hid,
                    )
                    self.store.put_outcome(scope, request_id, 0, handshake_id=hid, **record)
                # The typed code is a look-up on the account's budget (S3).
                subject = rules.lookup_subject(device["account_id"])
                self.handshakes.prepare(hid, row, on_behalf_of=subject)  # ends COMMITTING
                grant = self.handshakes.commit(hid)
        except DeviceError as err:
            if err.final:
                self.store.put_outcome(
                    scope, request_id, 0, reason=err.reason, message=err.message, **record
                )
            raise
        return self._activation_answer(device["device_id"], grant.code_details)

    def _activation_answer(self, device_id: str, code: lpb.Code) -> pb.ActivateDeviceResponse:
        row = self.store.device(device_id)
        assert row is not None
        return pb.ActivateDeviceResponse(device=convert.device(row), code=code)
