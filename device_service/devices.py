"""Connecting devices (D1), device records, disconnecting (D3) and the app's CheckIn."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import rules
from device_service.access import connected
from device_service.check_in_cache import CheckInView
from device_service.connection_limits import ConnectionLimits
from device_service.errors import DeviceError
from device_service.handshake import Handshakes
from device_service.peer import LicensePeer
from device_service.per_user import PerUserCodes
from device_service.reserve import Reserves
from device_service.settings import Settings
from device_service.store import DeviceStore, new_id
from keyslot_server.auth import hash_token, new_token
from keyslot_server.clock import Clock, now_us
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]

# last_check_in_time moves when it is this much older than a check-in (proto doc).
CHECK_IN_RESOLUTION_US = 60_000_000


@dataclass(frozen=True)
class Connected:
    """A new device, its credential, and its account's per-user code it uses (D11)."""

    device: Row
    credential: str
    account_code: lpb.Code | None


@dataclass(frozen=True)
class CheckIn:
    """What a check-in answers: the device as seen (with its reserve and pending
    deliveries), the code it uses and whether that is its account's (D11), the
    reserve's code, and the one clock read it recorded."""

    view: CheckInView
    code: lpb.Code | None
    code_from_account: bool
    reserve_code: lpb.Code | None
    now_us: int


class Devices:
    """CreateConnectionCode, ConnectDevice, UpdateDevice, DisconnectDevice, CheckIn."""

    def __init__(
        self,
        store: DeviceStore,
        license: LicensePeer,
        clock: Clock,
        settings: Settings,
        handshakes: Handshakes,
        reserves: Reserves,
        per_user: PerUserCodes,
        connection_limits: ConnectionLimits,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.settings = settings
        self.handshakes = handshakes
        self.reserves = reserves
        self.per_user = per_user
        self.connection_limits = connection_limits

    # --- connecting (D1) -------------------------------------------------------------------

    def create_connection_code(self, account_id: str) -> tuple[str, datetime]:
        """A fresh connection code for the account (stored by hash) and its expiry."""
        now = self.clock.now()
        expire = now + timedelta(seconds=self.settings.connection_code_ttl)
        code = rules.new_connection_code()
        self.store.create_connection_code(
            hash_token(rules.normalize_connection_code(code) or ""),
            account_id,
            int(to_epoch_us(now) or 0),
            int(to_epoch_us(expire) or 0),
        )
        return code, expire

    def connect(self, compact: str, platform: int, values: Row, peer: str) -> Connected:
        """Connects a device with a connection code (``compact``, normalised) used once.

        ``values`` are its checked app_version, region and display_name;
        ``peer`` is the client's address, for the S3 budgets of unknown codes.
        """
        # S3: the code is the only identity here; unknown ones count per address and overall.
        self.connection_limits.check(peer, compact)
        now = now_us(self.clock)
        device_id = new_id("dev")
        token = new_token("devc")

        def check(code: Row | None) -> None:
            if code is None:
                raise DeviceError.not_found("CONNECTION_CODE_NOT_FOUND", "no such connection code")
            if code["used_us"] is not None:
                raise DeviceError.refused("CONNECTION_CODE_USED", "the connection code was used")
            if code["expire_us"] <= now:
                raise DeviceError.refused(
                    "CONNECTION_CODE_EXPIRED", "the connection code expired; ask for a new one"
                )

        device = self.store.connect_device(
            hash_token(compact),
            {
                "device_id": device_id,
                "platform": platform,
                **values,
                "current_code": "",
                "connect_us": now,
                "update_us": now,
                "disconnect_us": None,
                "last_check_in_us": None,
            },
            token,
            now,
            check,
        )
        used = self.per_user.code_for(device)  # D11: the account's per-user code, if any fits
        return Connected(device, token, used)

    # --- device records ----------------------------------------------------------------------

    def list(self, account_id: str, page_size: int, page_token: str) -> tuple[list[Row], str]:
        """The account's connected devices, one page."""
        return self.store.list_devices(account_id, page_size, page_token)

    def update(self, device: Row, changes: Row) -> Row:
        """Sets checked fields of a connected device; returns it after."""
        if device["disconnect_us"] is not None:
            raise DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device is disconnected", deviceId=device["device_id"]
            )
        self.store.update_device(device["device_id"], {**changes, "update_us": now_us(self.clock)})
        return self._device(device["device_id"])

    def disconnect(self, device: Row) -> Row:
        """Disconnects the device (once); returns it after.

        The fence of D3 against in-flight handshakes (``disconnect_now``); the
        aborts it decided are told to the license side now, unless another call
        is working on one (that call, or recovery, finishes it).
        """
        device_id = device["device_id"]
        if device["disconnect_us"] is None:
            # The AbortGrant calls tell the license side; a handshake another call
            # is working on is finished by that call (or recovery).
            for handshake_id in self.disconnect_now(device_id):
                self.handshakes.settle_if_free(handshake_id)
        return self._device(device_id)

    def disconnect_now(self, device_id: str) -> list[str]:
        """Disconnects a device in one write; returns the handshakes whose abort it decided.

        The fence of D3 against in-flight handshakes: every slot of the device
        is released, every handshake not yet COMMITTING is decided aborted,
        its waiting reserve fails, and its credential stops working, all in
        the transaction that sets disconnect_time. A handshake step after it
        (begin, prepare, commit, slot claim) sees the device disconnected.
        """

        def fence() -> list[str]:
            aborted = self.handshakes.abort_device(
                device_id, "DEVICE_NOT_CONNECTED", "device disconnected"
            )
            self.reserves.fail_waiting(device_id, "DEVICE_NOT_CONNECTED", "device disconnected")
            return aborted

        return self.store.disconnect_device(device_id, now_us(self.clock), fence)

    # --- the app's check-in --------------------------------------------------------------------

    def check_in(self, view: CheckInView, app_version: str) -> CheckIn:
        """Records the check-in (and the app version it runs now), lets a due reserve
        take over first (D9), and reads the codes the answer shows in one call.

        ``view`` is the calling device's check-in view; ``app_version`` is checked
        already, or empty.
        """
        device, reserve, pending = view.device, view.reserve, view.pending
        assert device is not None
        at_us = now_us(self.clock)  # one clock read: recorded and answered as server_time
        changes: dict[str, object] = {}
        if app_version and app_version != device["app_version"]:
            changes["app_version"] = app_version
        last = device["last_check_in_us"]
        if changes or last is None or not 0 <= at_us - last < CHECK_IN_RESOLUTION_US:
            changes["last_check_in_us"] = at_us
            # Written first: a take-over below re-checks the version the app runs now (H3).
            # Only on a change or once a minute: a write per check-in would put every
            # check-in in the queue for SQLite's single writer.
            self.store.update_device(device["device_id"], changes)
            device = {**device, **changes}
            view = CheckInView(device, reserve, pending)
        for attempt in range(2):
            # The hot path: one round-trip to the license service (two after a take-over).
            wanted = [
                c
                for c in [device["current_code"], reserve and reserve["code"]]
                + [d["code"] for d in pending]
                if c
            ]
            codes = {c.code: c for c in self.license.batch_get_codes(list(dict.fromkeys(wanted)))}
            current = codes.get(device["current_code"])
            if attempt or not self.reserves.due(device, reserve, current):
                break
            # A due reserve takes over first, so the answer already shows it (D9).
            self.reserves.take_over(device["device_id"], allow_failed=False)
            device_id = device["device_id"]
            view = self.store.check_in_view(device_id)
            device = connected(view.device, device_id)
            reserve, pending = view.reserve, view.pending
        code = codes.get(device["current_code"]) if device["current_code"] else None
        from_account = False
        if not device["current_code"]:
            # D11: without a code of its own the device uses its account's per-user code.
            code = self.per_user.code_for(device)
            from_account = code is not None
        reserve_code = codes.get(reserve["code"]) if reserve else None
        return CheckIn(view, code, from_account, reserve_code, at_us)

    def _device(self, device_id: str) -> Row:
        row = self.store.device(device_id)
        assert row is not None
        return row
