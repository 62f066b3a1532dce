"""Accounts, console members, subscriptions on an account and download links (D2)."""

from __future__ import annotations

import json
import math
import secrets
from datetime import timedelta

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import convert, rules
from device_service.api_base import ApiBase
from device_service.errors import DeviceError
from device_service.per_user import PerUserCodes, is_per_user
from device_service.store import new_id
from keyslot_server.auth import new_token
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_epoch_us

DOWNLOAD_LINK_TTL = timedelta(days=7)
DOWNLOAD_BASE_URL = "https://download.keyslot.invalid/d/"


class AccountsApi(ApiBase):
    """CreateAccount .. ListOutbox."""

    per_user: PerUserCodes

    def CreateAccount(self, request: pb.CreateAccountRequest, context) -> pb.CreateAccountResponse:  # type: ignore[no-untyped-def]
        p = self.principal()
        if not rules.is_service(p):
            raise DeviceError.denied("only the portal or console service creates accounts")
        name = rules.display_name(request.account.display_name, "account.display_name")
        kind = request.account.kind
        if kind not in (pb.ACCOUNT_KIND_PERSONAL, pb.ACCOUNT_KIND_CONSOLE):
            raise DeviceError.invalid("account.kind", "PERSONAL or CONSOLE required")
        now = self.now_us()
        account_id = new_id("acc")
        token = new_token("acct")
        with self.store.write() as db:
            db["accounts"].insert(
                {"account_id": account_id, "display_name": name, "kind": kind, "create_us": now}
            )
            self.store.add_credential(token, "account", account_id, now)
        row = self.store.account(account_id)
        assert row is not None
        return pb.CreateAccountResponse(account=convert.account(row), account_credential=token)

    def GetAccount(self, request: pb.GetAccountRequest, context) -> pb.GetAccountResponse:  # type: ignore[no-untyped-def]
        return pb.GetAccountResponse(account=convert.account(self.account_for(request.account_id)))

    def AddConsoleMember(  # type: ignore[no-untyped-def]
        self, request: pb.AddConsoleMemberRequest, context
    ) -> pb.AddConsoleMemberResponse:
        p = self.principal()
        account = self.account_for(request.account_id)
        # Members are added by the backends, the account itself or an administrator.
        if p.kind == "console" and p.member_id and p.role != "ADMINISTRATOR":
            raise DeviceError.denied("only an administrator adds members")
        name = rules.display_name(request.display_name)
        if request.role not in (lpb.CONSOLE_ROLE_ADMINISTRATOR, lpb.CONSOLE_ROLE_MEMBER):
            raise DeviceError.invalid("role", "ADMINISTRATOR or MEMBER required")
        if account["kind"] != pb.ACCOUNT_KIND_CONSOLE:
            raise DeviceError.refused(
                "NOT_A_CONSOLE_ACCOUNT",
                "members belong to console accounts",
                accountId=account["account_id"],
            )
        role_name = lpb.ConsoleRole.Name(request.role).removeprefix("CONSOLE_ROLE_")
        now = self.now_us()
        member_id = new_id("mem")
        token = new_token("memb")
        with self.store.write() as db:
            db["members"].insert(
                {
                    "member_id": member_id,
                    "account_id": account["account_id"],
                    "display_name": name,
                    "role": request.role,
                    "create_us": now,
                }
            )
            self.store.add_credential(
                token, "member", account["account_id"], now, member_id=member_id, role=role_name
            )
        row = self.store.one("SELECT * FROM members WHERE member_id = ?", (member_id,))
        assert row is not None
        return pb.AddConsoleMemberResponse(member=convert.member(row), member_credential=token)

    # --- subscriptions on the account -----------------------------------------------------

    def AddSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.AddSubscriptionRequest, context
    ) -> pb.AddSubscriptionResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False)
        # Checked before anything is written: a slow license service leaves no row.
        # The typed code is a look-up on the account's budget (S3).
        details = self.license.get_code(code, rules.lookup_subject(account["account_id"]))
        refusal = rules.subscription_refusal(lpb.CodeStatus.Name(details.status))
        if refusal:
            raise DeviceError.refused(
                refusal, f"the code is {refusal.split('_')[1].lower()}", code=code
            )
        if is_per_user(details):
            # D11: adding it activates it for the account, through a grant.
            channel, role = rules.caller_context(self.principal())
            row = self.per_user.add(account, code, channel, role, request_id)
            return pb.AddSubscriptionResponse(
                subscription=convert.subscription(
                    row, self.license.get_code(code), self.store.used_slots(code)
                )
            )
        now = self.now_us()
        with self.store.write() as db:
            if self.store.subscription(account["account_id"], code):
                raise DeviceError(
                    "SUBSCRIPTION_EXISTS",
                    "the code is already on the account",
                    Code.ALREADY_EXISTS,
                    metadata={"code": code},
                )
            db["subscriptions"].insert(
                {"account_id": account["account_id"], "code": code, "add_us": now}
            )
        row = self.store.subscription(account["account_id"], code)
        assert row is not None
        return pb.AddSubscriptionResponse(
            subscription=convert.subscription(row, details, self.store.used_slots(code))
        )

    def RemoveSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveSubscriptionRequest, context
    ) -> pb.RemoveSubscriptionResponse:
        account = self.account_for(request.account_id)
        self.per_user.remove(account["account_id"], rules.normalize_code(request.code))
        return pb.RemoveSubscriptionResponse()

    def ListSubscriptions(  # type: ignore[no-untyped-def]
        self, request: pb.ListSubscriptionsRequest, context
    ) -> pb.ListSubscriptionsResponse:
        account = self.account_for(request.account_id)
        rows, token = self.page(
            "SELECT * FROM subscriptions WHERE account_id = ? ORDER BY add_us, code",
            (account["account_id"],),
            request.page_size,
            request.page_token,
        )
        # One batch call for the whole page, never one per code.
        details = {c.code: c for c in self.license.batch_get_codes([r["code"] for r in rows])}
        return pb.ListSubscriptionsResponse(
            subscriptions=[
                convert.subscription(r, details.get(r["code"]), self.store.used_slots(r["code"]))
                for r in rows
            ],
            next_page_token=token,
        )

    def ListSubscriptionDevices(  # type: ignore[no-untyped-def]
        self, request: pb.ListSubscriptionDevicesRequest, context
    ) -> pb.ListSubscriptionDevicesResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        subscription = self.subscription_for(account["account_id"], code)
        devices = self.store.query(
            "SELECT * FROM devices WHERE account_id = ? AND device_id IN ("
            " SELECT device_id FROM slots WHERE code = ? AND state != 'RELEASED'"
            " UNION SELECT device_id FROM deliveries WHERE code = ? AND account_id = ?)"
            " ORDER BY connect_us, device_id",
            (account["account_id"], code, code, account["account_id"]),
        )
        out = []
        for d in devices:
            slot = self.store.one(
                "SELECT * FROM slots WHERE code = ? AND device_id = ?"
                " ORDER BY state = 'RELEASED', state_us DESC LIMIT 1",
                (code, d["device_id"]),
            )
            delivery = self.store.one(
                "SELECT * FROM deliveries WHERE code = ? AND device_id = ?"
                " ORDER BY create_us DESC, rowid DESC LIMIT 1",
                (code, d["device_id"]),
            )
            out.append(
                pb.SubscriptionDevice(
                    device=convert.device(d),
                    slot=convert.slot(slot) if slot else None,
                    delivery=convert.delivery(delivery) if delivery else None,
                )
            )
        if subscription["per_user"]:
            # D11: the devices that use it through the account, without a slot of their own.
            listed = {d["device_id"] for d in devices}
            for d in self.store.query(
                "SELECT * FROM devices WHERE account_id = ? AND disconnect_us IS NULL"
                " AND current_code = '' ORDER BY connect_us, device_id",
                (account["account_id"],),
            ):
                if d["device_id"] in listed:
                    continue
                used = self.per_user.code_for(d)
                if used is not None and used.code == code:
                    out.append(
                        pb.SubscriptionDevice(
                            device=convert.device_using(d, code), through_account=True
                        )
                    )
        return pb.ListSubscriptionDevicesResponse(devices=out)

    # --- download links (D2) ------------------------------------------------------------------

    def SendDownloadLink(  # type: ignore[no-untyped-def]
        self, request: pb.SendDownloadLinkRequest, context
    ) -> pb.SendDownloadLinkResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        address = rules.email(request.email)
        self.subscription_for(account["account_id"], code)
        now = self.now()
        link_token = secrets.token_urlsafe(24)
        message_id = new_id("msg")
        row = {
            "message_id": message_id,
            "account_id": account["account_id"],
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
        with self.store.write() as db:
            # Counted under the insert's write lock: parallel sends cannot both pass.
            self._within_mail_limits(account["account_id"], address, row["create_us"])
            db["outbox"].insert(row)
        return pb.SendDownloadLinkResponse(message=convert.outbox(row))

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

    def ListOutbox(self, request: pb.ListOutboxRequest, context) -> pb.ListOutboxResponse:  # type: ignore[no-untyped-def]
        p = self.principal()
        if not (rules.is_service(p) and p.kind == "portal"):
            raise DeviceError.denied("only the portal's operators read the outbox")
        rows, token = self.page(
            "SELECT * FROM outbox ORDER BY create_us, rowid",
            (),
            request.page_size,
            request.page_token,
        )
        return pb.ListOutboxResponse(
            messages=[convert.outbox(r) for r in rows], next_page_token=token
        )


def dumps(metadata: dict[str, str]) -> str:
    return json.dumps(metadata, sort_keys=True)
