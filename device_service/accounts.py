"""Accounts, console members, subscriptions on an account and download links (D2, D11)."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import rules
from device_service.errors import DeviceError
from device_service.peer import LicensePeer
from device_service.per_user import PerUserCodes, is_per_user
from device_service.settings import Settings
from device_service.store import DeviceStore, new_id
from keyslot_server.auth import Principal, new_token
from keyslot_server.clock import Clock, now_us
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_epoch_us

Row = dict[str, Any]

DOWNLOAD_LINK_TTL = timedelta(days=7)
DOWNLOAD_BASE_URL = "https://download.keyslot.invalid/d/"


@dataclass(frozen=True)
class Subscription:
    """A code on the account, its details (None if the license side does not know it)
    and how many of its slots are held (D3)."""

    row: Row
    code: lpb.Code | None
    used_slots: int


@dataclass(frozen=True)
class SubscriptionDevice:
    """A device that holds, receives or uses a code: its latest slot and delivery of
    it, or ``through_account`` when it uses its account's per-user code (D11)."""

    device: Row
    slot: Row | None = None
    delivery: Row | None = None
    through_account: bool = False


class Accounts:
    """CreateAccount .. ListOutbox."""

    def __init__(
        self,
        store: DeviceStore,
        license: LicensePeer,
        clock: Clock,
        settings: Settings,
        per_user: PerUserCodes,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.settings = settings
        self.per_user = per_user

    # --- accounts and console members ----------------------------------------------------

    def create(self, display_name: str, kind: int) -> tuple[Row, str]:
        """A new account and its credential."""
        token = new_token("acct")
        row = self.store.create_account(
            new_id("acc"), display_name, kind, token, now_us(self.clock)
        )
        return row, token

    def add_member(
        self, account: Row, display_name: str, role: int, role_name: str, console_kind: int
    ) -> tuple[Row, str]:
        """A console member of a console account (``console_kind``) and its credential."""
        if account["kind"] != console_kind:
            raise DeviceError.refused(
                "NOT_A_CONSOLE_ACCOUNT",
                "members belong to console accounts",
                accountId=account["account_id"],
            )
        token = new_token("memb")
        member = {
            "member_id": new_id("mem"),
            "account_id": account["account_id"],
            "display_name": display_name,
            "role": role,
            "create_us": now_us(self.clock),
        }
        return self.store.add_member(member, token, role_name), token

    # --- subscriptions on the account -------------------------------------------------------

    def add_subscription(
        self, account: Row, code: str, caller: Principal, request_id: str
    ) -> Subscription:
        """Puts a code on the account; a per-user code is activated for it (D11)."""
        account_id = account["account_id"]
        # Checked before anything is written: a slow license service leaves no row.
        # The typed code is a look-up on the account's budget (S3).
        details = self.license.get_code(code, rules.lookup_subject(account_id))
        refusal = rules.subscription_refusal(lpb.CodeStatus.Name(details.status))
        if refusal:
            raise DeviceError.refused(
                refusal, f"the code is {refusal.split('_')[1].lower()}", code=code
            )
        if is_per_user(details):
            # D11: adding it activates it for the account, through a grant.
            row = self.per_user.add(account, code, rules.caller(caller), request_id)
            return Subscription(row, self.license.get_code(code), self.store.used_slots(code))
        if not self.store.add_subscription(account_id, code, now_us(self.clock)):
            raise DeviceError(
                "SUBSCRIPTION_EXISTS",
                "the code is already on the account",
                Code.ALREADY_EXISTS,
                metadata={"code": code},
            )
        row = self.store.subscription(account_id, code)
        assert row is not None
        return Subscription(row, details, self.store.used_slots(code))

    def remove_subscription(self, account_id: str, code: str) -> None:
        self.per_user.remove(account_id, code)

    def list_subscriptions(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[Subscription], str]:
        """One page of the account's codes, with their details in one batch call."""
        rows, token = self.store.list_subscriptions(account_id, page_size, page_token)
        # One batch call for the whole page, never one per code.
        details = {c.code: c for c in self.license.batch_get_codes([r["code"] for r in rows])}
        return [
            Subscription(r, details.get(r["code"]), self.store.used_slots(r["code"])) for r in rows
        ], token

    def subscription_devices(self, subscription: Row) -> list[SubscriptionDevice]:
        """The account's devices that hold, receive or use the subscription's code."""
        account_id, code = subscription["account_id"], subscription["code"]
        found = self.store.subscription_devices(account_id, code)
        out = [SubscriptionDevice(d, slot, delivery) for d, slot, delivery in found]
        if subscription["per_user"]:
            # D11: the devices that use it through the account, without a slot of their own.
            listed = {d["device_id"] for d, _, _ in found}
            for d in self.store.devices_without_code(account_id):
                if d["device_id"] in listed:
                    continue
                used = self.per_user.code_for(d)
                if used is not None and used.code == code:
                    out.append(SubscriptionDevice(d, through_account=True))
        return out

    # --- download links (D2) ------------------------------------------------------------------

    def send_download_link(self, account_id: str, address: str) -> Row:
        """Mails a download link (to the outbox), within the send limits; the message."""
        now = self.clock.now()
        link_token = secrets.token_urlsafe(24)
        row = {
            "message_id": new_id("msg"),
            "account_id": account_id,
            "email": address,
            "subject": "Your download link",
            "body": (
                "Install the app with this link; it works for 7 days:\n"
                f"{DOWNLOAD_BASE_URL}{link_token}\n"
            ),
            "link_token": link_token,
            "link_expire_us": to_epoch_us(now + DOWNLOAD_LINK_TTL),
            "create_us": to_epoch_us(now),
        }
        # Counted under the insert's write lock: parallel sends cannot both pass.
        self.store.add_outbox_message(
            row, lambda: self._within_mail_limits(account_id, address, row["create_us"])
        )
        return row

    def _within_mail_limits(self, account_id: str, address: str, now_us: int) -> None:
        """TOO_MANY_MESSAGES once the account, or the address from any account, had its
        limit of mails within the rolling window (kept in the database: replicas share it)."""
        window_us = round(self.settings.download_link_window * 1_000_000)
        waits = []
        for by, value, limit in (
            ("account", account_id, self.settings.download_links_per_account),
            ("email", address, self.settings.download_links_per_address),
        ):
            if limit <= 0:
                continue  # 0 switches that limit off
            nth = self.store.nth_latest_mail_us(by, value, limit, now_us - window_us)
            if nth is not None:  # once it leaves the window, one more mail fits
                waits.append((nth + window_us - now_us, by))
        if not waits:
            return
        wait_us, by = max(waits)  # both limits must let the mail through
        seconds = max(1, math.ceil(wait_us / 1_000_000))
        whose = "from this account" if by == "account" else "to this address"
        raise DeviceError(
            "TOO_MANY_MESSAGES",
            f"too many download links {whose} within {self.settings.download_link_window:g} s;"
            f" retry in {seconds} s",
            Code.RESOURCE_EXHAUSTED,
            metadata={"retryAfterSeconds": str(seconds), "limitedBy": by},
            retry_delay=timedelta(seconds=seconds),
        )

    def list_outbox(self, page_size: int, page_token: str) -> tuple[list[Row], str]:
        return self.store.list_outbox(page_size, page_token)
