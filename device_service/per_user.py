"""Per-user codes (D11): a code that licenses the account's user, not one device.

Adding a per-user code to an account is an ACCOUNT handshake: the license
side checks and activates the code (L1) through a grant, the device side
claims one of the code's slots for the account itself (max devices counts
accounts, D3) and records the subscription. Like ACTIVATE it commits within
its one call, and it is crash-safe the same way (H4): recovery undoes an
orphan before its commit decision and re-commits one after it.

Every connected device of the account that has no current code of its own
uses the account's first per-user code that fits it (region and app version,
checked per device, D5) when it connects and at each check-in, without a
slot of its own. A code the device activated or received itself wins.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import handshake as hs
from device_service import store as st
from device_service.errors import DeviceError
from device_service.peer import LicensePeer
from device_service.rules import Caller
from keyslot_server.clock import Clock, now_us
from keyslot_server.errors import Code
from keyslot_server.formats import released_in, version_in_range
from keyslot_server.requests import Key
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]
# How long the license side holds an ACCOUNT grant; it is committed at once.
ACCOUNT_HOLD = timedelta(minutes=10)


def account_hooks(store: st.DeviceStore) -> hs.Hooks:
    """The ACCOUNT purpose: a PENDING slot for the account at prepare, the
    subscription (and an ACTIVE slot) at commit."""

    def on_prepared(row: Row, grant: lpb.Grant, now: int) -> None:
        # Authoritative, under the claim's write lock: added, or being added by another call.
        if store.subscription(row["account_id"], row["code"]) is not None or store.holds(
            row["account_id"], row["code"]
        ):
            raise _exists(row["code"])
        store.claim_slot(
            row["code"],
            row["account_id"],
            grant.code_details.terms.max_devices,
            now,
            handshake_id=row["handshake_id"],
            for_account=True,
        )

    def on_committed(row: Row, grant: lpb.Grant, now: int) -> None:
        store.add_per_user_subscription(row["account_id"], row["code"], now)

    def nothing(*_: Any) -> None:
        return None

    # PREPARED is mid-call: an orphaned one is undone by recovery.
    return hs.Hooks(
        on_prepared,
        on_committed,
        nothing,
        prepared_is_stable=False,
        commit_at_once=True,
        for_account=True,
    )


def _exists(code: str) -> DeviceError:
    return DeviceError(
        "SUBSCRIPTION_EXISTS",
        "the code is already on the account",
        Code.ALREADY_EXISTS,
        metadata={"code": code},
    )


def is_per_user(code: lpb.Code) -> bool:
    return code.terms.slot_kind == lpb.SLOT_KIND_PER_USER


class PerUserCodes:
    """Adds and removes per-user codes; tells which one a device uses."""

    def __init__(
        self,
        store: st.DeviceStore,
        license: LicensePeer,
        clock: Clock,
        handshakes: hs.Handshakes,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.handshakes = handshakes

    def add(self, account: Row, code: str, caller: Caller, request_id: str) -> Row:
        """Activates ``code`` for the account (D11); returns the subscription row.

        With the same request id a retry returns the first answer (H1); the
        id with another code is REQUEST_ID_REUSED.
        """
        account_id = account["account_id"]
        key = Key(caller.key, "AddSubscription", request_id or secrets.token_hex(16))
        holder = {
            "device_id": account_id,  # the account holds the slot (D11)
            "account_id": account_id,
            "app_version": "",
            "region": "",
            "current_code": "",
        }

        def not_added_yet() -> None:
            if self.store.subscription(account_id, code) is not None:
                raise _exists(code)

        self.handshakes.run_at_once(
            key,
            code,
            holder,
            purpose="ACCOUNT",
            channel=caller.channel,
            role=caller.role,
            hold_us=int(to_epoch_us(self.clock.now() + ACCOUNT_HOLD) or 0),
            precheck=not_added_yet,
        )
        added = self.store.subscription(account_id, code)
        assert added is not None
        return added

    def remove(self, account_id: str, code: str) -> None:
        """Takes ``code`` off the account; a per-user code's account slot is freed (D11)."""
        if not self.store.remove_subscription(account_id, code, now_us(self.clock)):
            raise DeviceError.not_found(
                "SUBSCRIPTION_NOT_FOUND", "the code is not on the account", code=code
            )

    def code_for(self, device: Row) -> lpb.Code | None:
        """The per-user code a device without a code of its own uses, if any fits it."""
        if device["current_code"]:
            return None
        codes = self.store.account_codes(device["account_id"])
        if not codes:
            return None
        for code in self.license.batch_get_codes(codes):
            if self.fits(code, device):
                return code
        return None

    def fits(self, code: lpb.Code, device: Row) -> bool:
        """Region and app version of the device against the code's product (D5)."""
        product = self.license.get_product(code.terms.product_id)
        return released_in(product.released_regions, device["region"]) and version_in_range(
            device["app_version"], product.min_app_version, product.max_app_version
        )
