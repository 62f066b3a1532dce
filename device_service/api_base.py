"""Shared plumbing of the DeviceService mixins: dependencies, access checks, paging."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from device_service import rules
from device_service.check_in_cache import CheckInView
from device_service.errors import DeviceError
from device_service.handshake import Handshakes
from device_service.peer import LicensePeer
from device_service.settings import Settings
from device_service.store import DeviceStore
from keyslot_server.auth import Principal, current_principal
from keyslot_server.clock import Clock
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]


class ApiBase:
    """Dependencies and the S2 look-ups every mixin uses."""

    store: DeviceStore
    clock: Clock
    license: LicensePeer
    settings: Settings
    handshakes: Handshakes

    def now(self) -> datetime:
        return self.clock.now()

    def now_us(self) -> int:
        return int(to_epoch_us(self.clock.now()) or 0)

    @staticmethod
    def principal() -> Principal:
        return current_principal()

    def account_for(self, account_id: str, field: str = "account_id") -> Row:
        """The account if the caller may act for it (S2); NOT_FOUND otherwise."""
        p = self.principal()
        rules.require_account_caller(p)
        rules.resource_id(account_id, field)
        row = self.store.account(account_id)
        if row is None or not rules.reaches_account(p, account_id):
            raise DeviceError.not_found(
                "ACCOUNT_NOT_FOUND", "no such account", accountId=account_id
            )
        return row

    def device_for(self, device_id: str, field: str = "device_id") -> Row:
        """The device if the caller reaches it (S2: a device only itself); NOT_FOUND else."""
        p = self.principal()
        if not (rules.is_account_caller(p) or p.kind == "device"):
            raise DeviceError.denied()
        rules.resource_id(device_id, field)
        row = self.store.device(device_id)
        if row is None or not rules.reaches_device(p, row["account_id"], device_id):
            raise DeviceError.not_found("DEVICE_NOT_FOUND", "no such device", deviceId=device_id)
        return row

    def own_device(self) -> Row:
        """The calling device (device credential), connected."""
        p = self.principal()
        rules.require_device(p)
        return _connected(self.store.device(p.device_id), p.device_id)

    def own_check_in_view(self) -> CheckInView:
        """own_device, with its shown reserve and PENDING deliveries (one read or none)."""
        p = self.principal()
        rules.require_device(p)
        view = self.store.check_in_view(p.device_id)
        _connected(view.device, p.device_id)
        return view

    def delivery_for(self, delivery_id: str) -> Row:
        """A delivery of the caller's account, or to the calling device; NOT_FOUND else."""
        p = self.principal()
        rules.resource_id(delivery_id, "delivery_id")
        row = self.store.delivery(delivery_id)
        ok = row is not None and (
            (p.kind == "device" and row["device_id"] == p.device_id)
            or (rules.is_account_caller(p) and rules.reaches_account(p, row["account_id"]))
        )
        if not ok:
            raise DeviceError.not_found(
                "DELIVERY_NOT_FOUND", "no such delivery", deliveryId=delivery_id
            )
        assert row is not None
        return row

    def subscription_for(self, account_id: str, code: str) -> Row:
        row = self.store.subscription(account_id, code)
        if row is None:
            raise DeviceError.not_found(
                "SUBSCRIPTION_NOT_FOUND", "the code is not on the account", code=code
            )
        return row

    def page(
        self, sql: str, params: tuple, page_size: int, page_token: str
    ) -> tuple[list[Row], str]:  # type: ignore[type-arg]
        """One page of a query ordered stably; returns rows and the next token."""
        size = rules.page_size(page_size)
        offset = rules.page_offset(page_token)
        rows = self.store.query(f"{sql} LIMIT ? OFFSET ?", (*params, size + 1, offset))
        return rows[:size], rules.next_page_token(offset, size, len(rows))


def _connected(row: Row | None, device_id: str) -> Row:
    if row is None or row["disconnect_us"] is not None:
        raise DeviceError.not_found(
            "DEVICE_NOT_FOUND", "the device is not connected", deviceId=device_id
        )
    return row
