"""A device's license key and its reserve, as the app and its account change them (D8-D10).

The reserve's handshake and take-over live in ``reserve.Reserves``; these
are the calls around it: what may be asked when, and what the answer shows
(the reserve with its code's details, read in one call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import reserve as rsv
from device_service.errors import DeviceError
from device_service.peer import LicensePeer
from device_service.rules import Caller
from device_service.store import DeviceStore
from keyslot_server.clock import Clock, now_us

Row = dict[str, Any]


@dataclass(frozen=True)
class Shown:
    """A reserve as answered: its row and its code's details (None if not read)."""

    row: Row
    code: lpb.Code | None


@dataclass(frozen=True)
class Details:
    """A device's license details: the device, its current code's details, its reserve."""

    device: Row
    code: lpb.Code | None
    reserve: Shown | None


class LicenseKeys:
    """AddReserveCode .. RemoveLicenseKey, for a device the caller reached."""

    def __init__(
        self, store: DeviceStore, license: LicensePeer, clock: Clock, reserves: rsv.Reserves
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.reserves = reserves

    def _shown(self, device_id: str, row: Row | None = None) -> Shown | None:
        row = row if row is not None else self.store.shown_reserve(device_id)
        if row is None:
            return None
        codes = self.license.batch_get_codes([row["code"]])
        return Shown(row, codes[0] if codes else None)

    def add_reserve(self, device: Row, code: str, caller: Caller, request_id: str) -> Shown | None:
        """Adds a reserve code to the device (D8)."""
        row = self.reserves.add(device, code, caller, request_id)
        return self._shown(device["device_id"], row)

    def remove_reserve(self, device: Row) -> None:
        self.reserves.remove(device["device_id"])

    def details(self, device: Row) -> Details:
        """The device, its current code and its shown reserve, with one read of both codes."""
        reserve = self.store.shown_reserve(device["device_id"])
        # One read for both codes.
        wanted = [c for c in (device["current_code"], reserve and reserve["code"]) if c]
        codes = {c.code: c for c in self.license.batch_get_codes(list(dict.fromkeys(wanted)))}
        return Details(
            device,
            codes.get(device["current_code"]) if device["current_code"] else None,
            Shown(reserve, codes.get(reserve["code"])) if reserve else None,
        )

    def retry_reserve(self, device: Row) -> Shown | None:
        """The app's try-again for a FAILED reserve (D9)."""
        live = self._live(device["device_id"])
        if live["state"] != rsv.FAILED:
            raise DeviceError.refused(
                "RESERVE_NOT_FAILED",
                f"the reserve is {live['state'].lower()}",
                state=live["state"],
            )
        row = self.reserves.take_over(device["device_id"], allow_failed=True)
        return self._shown(device["device_id"], row)

    def activate_reserve_now(self, device: Row) -> Shown | None:
        """The reserve takes over at once while the current code is BLOCKED (D10)."""
        self._live(device["device_id"])
        codes = self.license.batch_get_codes(
            [device["current_code"]] if device["current_code"] else []
        )
        if not rsv.current_blocked(codes[0] if codes else None):
            raise DeviceError.refused(
                "CURRENT_NOT_BLOCKED",
                "the current license is not blocked; the reserve takes over at its expiry",
            )
        row = self.reserves.take_over(device["device_id"], allow_failed=True)
        return self._shown(device["device_id"], row)

    def remove_license_key(self, device: Row) -> tuple[Row, Shown | None]:
        """Removes the current code; a reserve takes over first and, on success, replaces
        it in one step. Returns the device after it and the reserve (if it ran)."""
        device_id = device["device_id"]
        if not device["current_code"]:
            raise DeviceError.refused("NO_CURRENT_LICENSE", "the device has no license key")
        row = None
        if self.store.live_reserve(device_id) is not None:
            # The reserve takes over first: on success it replaces the key in one step.
            row = self.reserves.take_over(device_id, allow_failed=True)
        if row is None or row["state"] != rsv.ACTIVATED:
            self.store.remove_current_code(device_id, now_us(self.clock))
        after = self.store.device(device_id)
        assert after is not None
        return after, self._shown(device_id, row) if row is not None else None

    def _live(self, device_id: str) -> Row:
        live = self.store.live_reserve(device_id)
        if live is None:
            raise DeviceError.refused("NO_RESERVE", "the device has no reserve code")
        return live
