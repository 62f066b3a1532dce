"""Rows of the device store's tables, as the unit tests insert them."""

from __future__ import annotations

CODE = "ABCDE-12345-FGHIJ-67890"


def device_row(device_id: str) -> dict[str, object]:
    """A connected device of acc_1 using CODE."""
    return {
        "device_id": device_id,
        "account_id": "acc_1",
        "platform": 3,
        "app_version": "10.0",
        "region": "FI",
        "display_name": device_id,
        "current_code": CODE,
        "connect_us": 1,
        "update_us": 2,
        "disconnect_us": None,
        "last_check_in_us": None,
    }


def reserve_row(device_id: str, reserve_id: str = "rsv_1") -> dict[str, object]:
    """A WAITING reserve of the device, far from its take-over."""
    return {
        "reserve_id": reserve_id,
        "device_id": device_id,
        "account_id": "acc_1",
        "code": "ZZZZZ-12345-FGHIJ-67890",
        "state": "WAITING",
        "failure_reason": "",
        "failure_message": "",
        "handshake_id": None,
        "grant_id": "",
        "max_devices": 3,
        "takeover_us": 2**60,
        "add_us": 5,
        "state_us": 5,
    }
