"""Shared plumbing of the DeviceService mixins: the caller and what it reaches (S2)."""

from __future__ import annotations

from typing import Any

from device_service.access import Access
from device_service.check_in_cache import CheckInView
from keyslot_server.auth import Principal, current_principal

Row = dict[str, Any]


class ApiBase:
    """The caller of this RPC and the S2 look-ups every mixin uses."""

    access: Access

    @staticmethod
    def principal() -> Principal:
        return current_principal()

    def account_for(self, account_id: str, field: str = "account_id") -> Row:
        return self.access.account_for(self.principal(), account_id, field)

    def device_for(self, device_id: str, field: str = "device_id") -> Row:
        return self.access.device_for(self.principal(), device_id, field)

    def connected_device_for(self, device_id: str) -> Row:
        return self.access.connected_device_for(self.principal(), device_id)

    def own_device(self) -> Row:
        return self.access.own_device(self.principal())

    def own_check_in_view(self) -> CheckInView:
        return self.access.own_check_in_view(self.principal())

    def delivery_for(self, delivery_id: str) -> Row:
        return self.access.delivery_for(self.principal(), delivery_id)

    def subscription_for(self, account_id: str, code: str) -> Row:
        return self.access.subscription_for(account_id, code)
