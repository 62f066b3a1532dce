"""The app enters a code itself: ActivateDevice (prepare + claim + commit in one call)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import handshake as hs
from device_service import rules
from device_service.peer import LicensePeer
from device_service.store import DeviceStore
from keyslot_server.clock import Clock
from keyslot_server.requests import Key
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

    def activate(
        self, device: Row, code: str, caller: rules.Caller, request_id: str
    ) -> tuple[Row, lpb.Code]:
        """Activates ``code`` on the (connected, calling) device; returns the device after
        it and the code. A request id replays the first answer (H1)."""
        key = Key(caller.key, "ActivateDevice", request_id or secrets.token_hex(16))
        grant = self.handshakes.run_at_once(
            key,
            code,
            device,
            purpose="ACTIVATE",
            channel=caller.channel,
            role=caller.role,
            hold_us=int(to_epoch_us(self.clock.now() + ACTIVATE_HOLD) or 0),
            # The typed code is a look-up on the account's budget (S3).
            on_behalf_of=rules.lookup_subject(device["account_id"]),
        )
        details = grant.code_details if grant is not None else self.license.get_code(code)
        return self._answer(device["device_id"], details)

    def _answer(self, device_id: str, code: lpb.Code) -> tuple[Row, lpb.Code]:
        row = self.store.device(device_id)
        assert row is not None
        return row, code
