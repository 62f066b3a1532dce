"""The app enters a code itself: ActivateDevice (prepare + claim + commit in one call)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import handshake as hs
from device_service import rules
from device_service.errors import DeviceError
from device_service.peer import LicensePeer
from device_service.store import DeviceStore, new_id
from keyslot_server.clock import Clock
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]
# How long the license side holds an ACTIVATE grant; it is committed at once.
ACTIVATE_HOLD = timedelta(minutes=10)


def activate_hooks(store: DeviceStore) -> hs.Hooks:
    """The ACTIVATE purpose: a PENDING slot at prepare, made ACTIVE at commit."""

    def on_prepared(row: Row, grant: lpb.Grant, now: int) -> None:
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


class Activation:
    """ActivateDevice: a typed code becomes the device's current code (D3, D7, H1)."""

    def __init__(
        self, store: DeviceStore, license: LicensePeer, clock: Clock, handshakes: hs.Handshakes
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.handshakes = handshakes

    def now_us(self) -> int:
        return int(to_epoch_us(self.clock.now()) or 0)

    def activate(self, device: Row, code: str, request_id: str) -> tuple[Row, lpb.Code]:
        """Activates ``code`` on the (connected, calling) device; returns the device after
        it and the code. A request id replays the first answer (H1)."""
        request_id = request_id or secrets.token_hex(16)
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
                replay = self._replay(rec)
                if replay is not None:
                    return replay
            return self._activate(scope, request_id, device, code)

    def _replay(self, rec: Row) -> tuple[Row, lpb.Code] | None:
        if rec["reason"]:
            raise DeviceError.refused(rec["reason"], rec["message"])
        hid = rec["handshake_id"]
        with self.handshakes.owned(hid):
            step = self.handshakes.settle(hid)
        row = self.handshakes.row(hid)
        if step == hs.COMMITTED:
            return self._answer(row["device_id"], self.license.get_code(row["code"]))
        if row["failure_reason"] and row["failure_reason"] not in hs.NOT_AN_ANSWER:
            raise DeviceError.refused(row["failure_reason"], row["failure_message"] or "")
        return None  # interrupted or rate-limited earlier: try again

    def _activate(
        self, scope: str, request_id: str, device: Row, code: str
    ) -> tuple[Row, lpb.Code]:
        record = dict(target=device["device_id"], fingerprint=code, create_us=self.now_us())
        hid = new_id("hs")
        try:
            with self.handshakes.owned(hid):
                row = self.handshakes.begin(
                    purpose="ACTIVATE",
                    code=code,
                    device=device,
                    caller_channel="DEVICE",
                    caller_role="",
                    grant_expire_us=int(to_epoch_us(self.clock.now() + ACTIVATE_HOLD) or 0),
                    handshake_id=hid,
                    also=lambda hid: self.store.put_outcome(
                        scope, request_id, 0, handshake_id=hid, **record
                    ),
                )
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
        return self._answer(device["device_id"], grant.code_details)

    def _answer(self, device_id: str, code: lpb.Code) -> tuple[Row, lpb.Code]:
        row = self.store.device(device_id)
        assert row is not None
        return row, code
