"""Accounts, console members, subscriptions on an account and download links (D2)."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import convert, rules
from device_service.accounts import Accounts, Subscription
from device_service.api_base import ApiBase
from device_service.errors import DeviceError
from keyslot_server import formats


def _subscription(s: Subscription) -> pb.Subscription:
    return convert.subscription(s.row, s.code, s.used_slots)


class AccountsApi(ApiBase):
    """CreateAccount .. ListOutbox."""

    accounts: Accounts

    def CreateAccount(self, request: pb.CreateAccountRequest, context) -> pb.CreateAccountResponse:  # type: ignore[no-untyped-def]
        if not rules.is_service(self.principal()):
            raise DeviceError.denied("only the portal or console service creates accounts")
        name = formats.require(
            DeviceError, "account.display_name", rules.display_name, request.account.display_name
        )
        kind = request.account.kind
        if kind not in (pb.ACCOUNT_KIND_PERSONAL, pb.ACCOUNT_KIND_CONSOLE):
            raise DeviceError.invalid("account.kind", "PERSONAL or CONSOLE required")
        row, token = self.accounts.create(name, kind)
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
        name = formats.require(
            DeviceError, "display_name", rules.display_name, request.display_name
        )
        if request.role not in (lpb.CONSOLE_ROLE_ADMINISTRATOR, lpb.CONSOLE_ROLE_MEMBER):
            raise DeviceError.invalid("role", "ADMINISTRATOR or MEMBER required")
        role_name = lpb.ConsoleRole.Name(request.role).removeprefix("CONSOLE_ROLE_")
        row, token = self.accounts.add_member(
            account, name, request.role, role_name, pb.ACCOUNT_KIND_CONSOLE
        )
        return pb.AddConsoleMemberResponse(member=convert.member(row), member_credential=token)

    # --- subscriptions on the account -----------------------------------------------------

    def AddSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.AddSubscriptionRequest, context
    ) -> pb.AddSubscriptionResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False)
        added = self.accounts.add_subscription(account, code, self.principal(), request_id)
        return pb.AddSubscriptionResponse(subscription=_subscription(added))

    def RemoveSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveSubscriptionRequest, context
    ) -> pb.RemoveSubscriptionResponse:
        account = self.account_for(request.account_id)
        self.accounts.remove_subscription(account["account_id"], rules.normalize_code(request.code))
        return pb.RemoveSubscriptionResponse()

    def ListSubscriptions(  # type: ignore[no-untyped-def]
        self, request: pb.ListSubscriptionsRequest, context
    ) -> pb.ListSubscriptionsResponse:
        account = self.account_for(request.account_id)
        page, token = self.accounts.list_subscriptions(
            account["account_id"], request.page_size, request.page_token
        )
        return pb.ListSubscriptionsResponse(
            subscriptions=[_subscription(s) for s in page], next_page_token=token
        )

    def ListSubscriptionDevices(  # type: ignore[no-untyped-def]
        self, request: pb.ListSubscriptionDevicesRequest, context
    ) -> pb.ListSubscriptionDevicesResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        subscription = self.subscription_for(account["account_id"], code)
        out = []
        for d in self.accounts.subscription_devices(subscription):
            if d.through_account:
                device = convert.device_using(d.device, code)
                out.append(pb.SubscriptionDevice(device=device, through_account=True))
                continue
            out.append(
                pb.SubscriptionDevice(
                    device=convert.device(d.device),
                    slot=convert.slot(d.slot) if d.slot else None,
                    delivery=convert.delivery(d.delivery) if d.delivery else None,
                )
            )
        return pb.ListSubscriptionDevicesResponse(devices=out)

    # --- download links (D2) ------------------------------------------------------------------

    def SendDownloadLink(  # type: ignore[no-untyped-def]
        self, request: pb.SendDownloadLinkRequest, context
    ) -> pb.SendDownloadLinkResponse:
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        address = formats.require(DeviceError, "email", formats.email, request.email)
        self.subscription_for(account["account_id"], code)
        row = self.accounts.send_download_link(account["account_id"], address)
        return pb.SendDownloadLinkResponse(message=convert.outbox(row))

    def ListOutbox(self, request: pb.ListOutboxRequest, context) -> pb.ListOutboxResponse:  # type: ignore[no-untyped-def]
        p = self.principal()
        if not (rules.is_service(p) and p.kind == "portal"):
            raise DeviceError.denied("only the portal's operators read the outbox")
        rows, token = self.accounts.list_outbox(request.page_size, request.page_token)
        return pb.ListOutboxResponse(
            messages=[convert.outbox(r) for r in rows], next_page_token=token
        )
