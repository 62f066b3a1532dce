"""Who reaches what (S2): the records a caller may act on, or NOT_FOUND.

The servicers pass the caller (the principal the auth interceptor bound)
and the ids of the request; everything they get back is a row the caller
may see, so a caller never learns whether a record it cannot reach exists.
"""

from __future__ import annotations

from typing import Any

from device_service import rules
from device_service.check_in_cache import CheckInView
from device_service.errors import DeviceError
from device_service.store import DeviceStore
from keyslot_server.auth import Principal

Row = dict[str, Any]


class Access:
    """The S2 look-ups every servicer uses."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    def account_for(self, p: Principal, account_id: str, field: str = "account_id") -> Row:
        """The account if the caller may act for it (S2); NOT_FOUND otherwise."""
        rules.require_account_caller(p)
        rules.resource_id(account_id, field)
        row = self.store.account(account_id)
        if row is None or not rules.reaches_account(p, account_id):
            raise DeviceError.not_found(
                "ACCOUNT_NOT_FOUND", "no such account", accountId=account_id
            )
        return row

    def device_for(self, p: Principal, device_id: str, field: str = "device_id") -> Row:
        """The device if the caller reaches it (S2: a device only itself); NOT_FOUND else."""
        if not (rules.is_account_caller(p) or p.kind == "device"):
            raise DeviceError.denied()
        rules.resource_id(device_id, field)
        row = self.store.device(device_id)
        if row is None or not rules.reaches_device(p, row["account_id"], device_id):
            raise DeviceError.not_found("DEVICE_NOT_FOUND", "no such device", deviceId=device_id)
        return row

    def connected_device_for(self, p: Principal, device_id: str) -> Row:
        """device_for, refused DEVICE_NOT_CONNECTED once the device is disconnected."""
        device = self.device_for(p, device_id)
        if device["disconnect_us"] is not None:
            raise DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device is disconnected", deviceId=device_id
            )
        return device

    def own_device(self, p: Principal) -> Row:
        """The calling device (device credential), connected."""
        rules.require_device(p)
        return connected(self.store.device(p.device_id), p.device_id)

    def own_check_in_view(self, p: Principal) -> CheckInView:
        """own_device, with its shown reserve and PENDING deliveries (one read or none)."""
        rules.require_device(p)
        view = self.store.check_in_view(p.device_id)
        connected(view.device, p.device_id)
        return view

    def delivery_for(self, p: Principal, delivery_id: str) -> Row:
        """A delivery of the caller's account, or to the calling device; NOT_FOUND else."""
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
        """The code on the account (an account the caller reached), or NOT_FOUND."""
        row = self.store.subscription(account_id, code)
        if row is None:
            raise DeviceError.not_found(
                "SUBSCRIPTION_NOT_FOUND", "the code is not on the account", code=code
            )
        return row


def connected(row: Row | None, device_id: str) -> Row:
    """The device row if connected; NOT_FOUND for a missing or disconnected one."""
    if row is None or row["disconnect_us"] is not None:
        raise DeviceError.not_found(
            "DEVICE_NOT_FOUND", "the device is not connected", deviceId=device_id
        )
    return row
