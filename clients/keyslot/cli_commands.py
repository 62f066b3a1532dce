"""The `keyslot` commands: one per provider or operator RPC of the two services.

Names are verb-noun (``show-code``, ``list-devices``, ``block-code``); the
older names ``send``, ``connection-code`` and ``license-details`` stay as
aliases. Each command parses nothing itself: it builds a typed client from the
global flags (``cli_connect``), makes one call (a list: every page) and hands
the reply to ``Output`` (``cli_tables``), which prints the same message as
JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from keyslot.cli_connect import UsageError, device_client, enum_name, license_client, span
from keyslot.cli_demo import cmd_demo
from keyslot.cli_tables import Output, dict_layout, enum_of
from keyslot.client import dpb, lpb
from keyslot.errors import EXIT_CODES, REASON_CLASSES, NotFound, reason_class

Command = Callable[[argparse.Namespace, Output], int]

#: Exit status of a send in which some targets got a delivery and others were refused.
PARTIAL_SEND = 16
PARTIAL_SEND_FAMILY = "send: some targets refused, the others got a delivery"
PAGE_SIZE_HELP = "records per call while reading every page, 1-1000"

#: The command of each RPC of the two services.
COMMAND_OF_RPC = {
    "CreateProduct": "create-product",
    "GetProduct": "show-product",
    "ListProducts": "list-products",
    "IssueCodes": "issue-codes",
    "GetCode": "show-code",
    "BatchGetCodes": "show-codes",
    "ListCodes": "list-codes",
    "PauseSubscription": "pause-subscription",
    "ResumeSubscription": "resume-subscription",
    "RenewSubscription": "renew-subscription",
    "RecordPrepayment": "record-prepayment",
    "CancelSubscription": "cancel-subscription",
    "BlockCode": "block-code",
    "UnblockCode": "unblock-code",
    "SetAutoRenewal": "set-auto-renewal",
    "GetAutoRenewalRoute": "show-renewal-route",
    "CreateSupportRequest": "create-support-request",
    "CreateAccount": "create-account",
    "GetAccount": "show-account",
    "AddConsoleMember": "add-console-member",
    "AddSubscription": "add-subscription",
    "RemoveSubscription": "remove-subscription",
    "ListSubscriptions": "list-subscriptions",
    "ListSubscriptionDevices": "list-subscription-devices",
    "CreateConnectionCode": "create-connection-code",
    "ConnectDevice": "connect-device",
    "GetDevice": "show-device",
    "ListDevices": "list-devices",
    "UpdateDevice": "update-device",
    "DisconnectDevice": "disconnect-device",
    "SendDownloadLink": "send-download-link",
    "ListOutbox": "list-outbox",
    "CheckIn": "check-in",
    "ActivateDevice": "activate-device",
    "SendSubscription": "send-subscription",
    "CompleteDelivery": "complete-delivery",
    "CancelDelivery": "cancel-delivery",
    "GetDelivery": "show-delivery",
    "ListDeliveries": "list-deliveries",
    "AddReserveCode": "add-reserve",
    "RemoveReserveCode": "remove-reserve",
    "GetLicenseDetails": "show-license",
    "RetryReserveActivation": "retry-reserve",
    "ActivateReserveNow": "activate-reserve",
    "RemoveLicenseKey": "remove-license-key",
}
#: RPCs only the device service (the license service's peer) calls: no command.
PEER_ONLY_RPCS = frozenset(
    {"PrepareGrant", "CommitGrant", "AbortGrant", "GetGrant", "WatchCodeChanges"}
)

# --- products and codes (license service, provider) ------------------------------


def cmd_create_product(args: argparse.Namespace, out: Output) -> int:
    """Registers a product (provider)."""
    with license_client(args) as lic:
        product = lpb.Product(
            product_id=args.product_id,
            display_name=args.name or args.product_id,
            console_managed=args.console_managed,
            released_regions=args.region or [],
            min_app_version=args.min_version or "",
            max_app_version=args.max_version or "",
        )
        out.record(
            f"created product {args.product_id}", lic.create_product(product=product).product
        )
    return 0


def cmd_show_product(args: argparse.Namespace, out: Output) -> int:
    """Shows one product."""
    with license_client(args) as lic:
        product = lic.get_product(product_id=args.product_id).product
    out.record(f"product {product.product_id}", product)
    return 0


def cmd_list_products(args: argparse.Namespace, out: Output) -> int:
    """Lists every product, ordered by id."""
    with license_client(args) as lic:
        out.rows("products", list(lic.iter_products(page_size=args.page_size)))
    return 0


def cmd_issue_codes(args: argparse.Namespace, out: Output) -> int:
    """Issues codes with one set of terms (provider)."""
    terms = lpb.CodeTerms(
        product_id=args.product,
        kind=enum_name("CODE_KIND", args.kind),
        coverage=enum_name("COVERAGE", args.coverage),
        unlimited=args.unlimited,
        max_devices=args.max_devices,
        slot_kind=enum_name("SLOT_KIND", args.slot_kind),
        trial=args.trial,
        free=args.free,
        auto_renew=args.auto_renew,
        purchase_channel=enum_name("PURCHASE_CHANNEL", args.channel),
        provider_name=args.provider_name,
        order_number=args.order_number or "",
    )
    if not args.unlimited:
        duration = args.duration if args.duration is not None else timedelta(days=args.days)
        terms.duration.FromTimedelta(duration)
    grace = args.grace if args.grace is not None else timedelta(days=args.grace_days)
    terms.grace_period.FromTimedelta(grace)
    with license_client(args) as lic:
        reply = lic.issue_codes(terms=terms, count=args.count, request_id=args.request_id or "")
    out.rows("issued codes", list(reply.codes))
    return 0


def cmd_show_code(args: argparse.Namespace, out: Output) -> int:
    """Shows one code with its terms and state (provider)."""
    with license_client(args) as lic:
        code = lic.get_code(code=args.code).code
    out.record(f"code {code.code}", code)
    return 0


def _compact(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


def cmd_show_codes(args: argparse.Namespace, out: Output) -> int:
    """Shows several codes in one call; exit 4 when any was not found."""
    with license_client(args) as lic:
        codes = list(lic.batch_get_codes(codes=args.codes).codes)
    out.rows("codes", codes)
    found = {_compact(c.code) for c in codes}
    missing = [c for c in args.codes if _compact(c) not in found]
    if missing:
        out.note(f"not found: {', '.join(missing)}", style="yellow")
        return NotFound.exit_code
    return 0


def cmd_list_codes(args: argparse.Namespace, out: Output) -> int:
    """Lists the caller's codes, all pages (provider)."""
    filters: dict[str, Any] = {"page_size": args.page_size}
    if args.product:
        filters["product_id"] = args.product
    if args.status:
        filters["status"] = enum_name("CODE_STATUS", args.status)
    with license_client(args) as lic:
        out.rows("codes", list(lic.iter_codes(**filters)))
    return 0


def _changed(out: Output, what: str, code: lpb.Code) -> int:
    out.record(f"{what} {code.code}", code)
    return 0


def cmd_pause(args: argparse.Namespace, out: Output) -> int:
    """Pauses a subscription: its term clock stops (L5)."""
    with license_client(args) as lic:
        return _changed(out, "paused", lic.pause_subscription(code=args.code).code)


def cmd_resume(args: argparse.Namespace, out: Output) -> int:
    """Resumes a paused subscription: expiry moves by the paused time (L5)."""
    with license_client(args) as lic:
        return _changed(out, "resumed", lic.resume_subscription(code=args.code).code)


def cmd_renew(args: argparse.Namespace, out: Output) -> int:
    """Renews a subscription by whole periods (L3, L4)."""
    with license_client(args) as lic:
        reply = lic.renew_subscription(
            code=args.code, periods=args.periods, request_id=args.request_id or ""
        )
    return _changed(out, "renewed", reply.code)


def cmd_prepayment(args: argparse.Namespace, out: Output) -> int:
    """Records prepaid periods, used by automatic renewal at expiry (L4)."""
    with license_client(args) as lic:
        reply = lic.record_prepayment(
            code=args.code, periods=args.periods, request_id=args.request_id or ""
        )
    return _changed(out, "prepaid", reply.code)


def cmd_cancel_subscription(args: argparse.Namespace, out: Output) -> int:
    """Cancels a subscription at the end of its period, or now (L5)."""
    with license_client(args) as lic:
        code = lic.cancel_subscription(code=args.code, immediately=args.immediately).code
    return _changed(out, "cancelled", code)


def cmd_block(args: argparse.Namespace, out: Output) -> int:
    """Blocks a code: nothing is entitled (L7)."""
    with license_client(args) as lic:
        return _changed(out, "blocked", lic.block_code(code=args.code, reason=args.reason).code)


def cmd_unblock(args: argparse.Namespace, out: Output) -> int:
    """Lifts a block."""
    with license_client(args) as lic:
        return _changed(out, "unblocked", lic.unblock_code(code=args.code).code)


def cmd_set_auto_renewal(args: argparse.Namespace, out: Output) -> int:
    """Turns automatic renewal on or off, or says who does (L8)."""
    with license_client(args) as lic:
        reply = lic.set_auto_renewal(code=args.code, auto_renew=args.setting == "on")
    out.record(f"auto-renewal of {reply.code.code}: route {enum_of(reply, 'route')}", reply)
    return 0


def cmd_renewal_route(args: argparse.Namespace, out: Output) -> int:
    """Who disables automatic renewal, for a code or a purchase (L8)."""
    if bool(args.code) == bool(args.channel):
        raise UsageError("give a CODE, or --channel (with --order-number) for a purchase")
    fields: dict[str, Any] = (
        {"code": args.code}
        if args.code
        else {
            "purchase_channel": enum_name("PURCHASE_CHANNEL", args.channel),
            "order_number": args.order_number or "",
        }
    )
    with license_client(args) as lic:
        out.record("auto-renewal route", lic.get_auto_renewal_route(**fields))
    return 0


def cmd_support_request(args: argparse.Namespace, out: Output) -> int:
    """Files a request to our own support to disable automatic renewal (L8)."""
    request = lpb.SupportRequest(
        reason=args.reason,
        purchase_date=args.purchase_date,
        full_name=args.full_name,
        email=args.email,
        order_number=args.order_number or "",
    )
    with license_client(args, args.caller) as lic:
        filed = lic.create_support_request(support_request=request).support_request
    out.record(f"support request {filed.support_request_id}", filed)
    return 0


# --- accounts and subscriptions (device service, portal or console) ---------------


def cmd_create_account(args: argparse.Namespace, out: Output) -> int:
    """Creates an account (portal); prints its credential once."""
    kind = "ACCOUNT_KIND_CONSOLE" if args.console else "ACCOUNT_KIND_PERSONAL"
    with device_client(args, "console" if args.console else "portal") as dev:
        reply = dev.create_account(account=dpb.Account(display_name=args.name, kind=kind))
    out.record("created account (the credential is shown only now)", reply)
    return 0


def cmd_show_account(args: argparse.Namespace, out: Output) -> int:
    """Shows one account."""
    with device_client(args) as dev:
        account = dev.get_account(account_id=args.account_id).account
    out.record(f"account {account.account_id}", account)
    return 0


def cmd_add_console_member(args: argparse.Namespace, out: Output) -> int:
    """Adds a member to a management-console account; prints its credential once."""
    with device_client(args, "console") as dev:
        reply = dev.add_console_member(
            account_id=args.account_id,
            display_name=args.name,
            role=enum_name("CONSOLE_ROLE", args.role),
        )
    out.record("added console member (the credential is shown only now)", reply)
    return 0


def cmd_add_subscription(args: argparse.Namespace, out: Output) -> int:
    """Registers a code on an account (portal)."""
    with device_client(args) as dev:
        reply = dev.add_subscription(
            account_id=args.account_id, code=args.code, request_id=args.request_id or ""
        )
    out.record(f"added {reply.subscription.code}", reply.subscription)
    return 0


def cmd_remove_subscription(args: argparse.Namespace, out: Output) -> int:
    """Removes a code from an account."""
    with device_client(args) as dev:
        reply = dev.remove_subscription(account_id=args.account_id, code=args.code)
    if out.as_json:
        out.record("", reply)
    else:
        out.note(f"removed {args.code} from account {args.account_id}")
    return 0


def cmd_list_subscriptions(args: argparse.Namespace, out: Output) -> int:
    """Lists an account's subscriptions with their terms and phase."""
    with device_client(args) as dev:
        found = dev.iter_subscriptions(account_id=args.account_id, page_size=args.page_size)
        out.rows("subscriptions", list(found))
    return 0


def cmd_list_subscription_devices(args: argparse.Namespace, out: Output) -> int:
    """The "my devices" view of one subscription."""
    with device_client(args) as dev:
        reply = dev.list_subscription_devices(account_id=args.account_id, code=args.code)
    out.rows(f"devices of {args.code}", list(reply.devices))
    return 0


def cmd_send_download_link(args: argparse.Namespace, out: Output) -> int:
    """Records a download link for a subscription, to be mailed (D2)."""
    with device_client(args) as dev:
        reply = dev.send_download_link(account_id=args.account_id, code=args.code, email=args.email)
    out.record("download link recorded", reply.message)
    return 0


def cmd_list_outbox(args: argparse.Namespace, out: Output) -> int:
    """Lists outgoing messages, oldest first (portal operators)."""
    with device_client(args) as dev:
        out.rows("outbox", list(dev.iter_outbox(page_size=args.page_size)))
    return 0


# --- devices ----------------------------------------------------------------------


def cmd_connection_code(args: argparse.Namespace, out: Output) -> int:
    """Creates a one-time connection code for an account (portal, D1)."""
    with device_client(args) as dev:
        out.record("connection code", dev.create_connection_code(account_id=args.account_id))
    return 0


def cmd_connect_device(args: argparse.Namespace, out: Output) -> int:
    """Connects a device with a connection code (the code is the credential, D1)."""
    with device_client(args, None) as dev:
        reply = dev.connect_device(
            connection_code=args.connection_code,
            platform=enum_name("PLATFORM", args.platform),
            app_version=args.app_version,
            region=args.region,
            display_name=args.name,
        )
    out.record("connected device (the credential is shown only now)", reply)
    return 0


def cmd_show_device(args: argparse.Namespace, out: Output) -> int:
    """Shows one device."""
    with device_client(args) as dev:
        device = dev.get_device(device_id=args.device_id).device
    out.record(f"device {device.device_id}", device)
    return 0


def cmd_list_devices(args: argparse.Namespace, out: Output) -> int:
    """Lists an account's connected devices, all pages (portal)."""
    with device_client(args) as dev:
        found = dev.iter_devices(account_id=args.account_id, page_size=args.page_size)
        out.rows("devices", list(found))
    return 0


def cmd_update_device(args: argparse.Namespace, out: Output) -> int:
    """Changes a device's app version, region or name."""
    changes = {
        "app_version": args.app_version,
        "region": args.region,
        "display_name": args.name,
    }
    paths = [path for path, value in changes.items() if value is not None]
    if not paths:
        raise UsageError("nothing to change: give --app-version, --region or --name")
    device = dpb.Device(device_id=args.device_id, **{p: changes[p] for p in paths})
    with device_client(args) as dev:
        reply = dev.update_device(device=device, update_mask={"paths": paths})
    out.record(f"updated device {reply.device.device_id}", reply.device)
    return 0


def cmd_disconnect_device(args: argparse.Namespace, out: Output) -> int:
    """Disconnects a device and releases its slots."""
    with device_client(args) as dev:
        device = dev.disconnect_device(device_id=args.device_id).device
    out.record(f"disconnected device {device.device_id}", device)
    return 0


def cmd_check_in(args: argparse.Namespace, out: Output) -> int:
    """The app's check-in (device credential)."""
    with device_client(args, "device") as dev:
        out.record("check-in", dev.check_in(app_version=args.app_version or ""))
    return 0


def cmd_activate_device(args: argparse.Namespace, out: Output) -> int:
    """The app enters a code itself (device credential, L6)."""
    with device_client(args, "device") as dev:
        reply = dev.activate_device(code=args.code, request_id=args.request_id or "")
    out.record(f"activated {reply.code.code}", reply)
    return 0


# --- deliveries -------------------------------------------------------------------


def send_exit_code(results: Sequence[dpb.SendResult]) -> int:
    """0 when every target got a delivery; PARTIAL_SEND when only some did; when none
    did, the exit code of the first refusal's reason family, as a failed call's."""
    refused = [r.refusal for r in results if r.WhichOneof("outcome") == "refusal"]
    if not refused:
        return 0
    if len(refused) < len(results):
        return PARTIAL_SEND
    return reason_class(refused[0].reason).exit_code


def cmd_send(args: argparse.Namespace, out: Output) -> int:
    """Sends a subscription to devices (portal, D4); see the exit codes in its help."""
    with device_client(args) as dev:
        reply = dev.send_subscription(
            account_id=args.account_id,
            code=args.code,
            device_ids=args.device_ids,
            request_id=args.request_id or "",
        )
    results = list(reply.results)
    sent = [r.delivery for r in results if r.WhichOneof("outcome") == "delivery"]
    # The code and account as the service spells them, when a delivery says.
    code_text = sent[0].code if sent else args.code
    account = sent[0].account_id if sent else args.account_id
    out.rows("send results", results, notes=[f"code {code_text}", f"account {account}"])
    code = send_exit_code(results)
    refused = [r for r in results if r.WhichOneof("outcome") == "refusal"]
    for r in refused:
        out.note(f"refused {r.device_id}: {r.refusal.message}", "yellow")
    if refused:
        got = len(results) - len(refused)
        out.note(
            f"{got} of {len(results)} targets got a delivery, {len(refused)} refused: exit {code}"
        )
    return code


def cmd_complete_delivery(args: argparse.Namespace, out: Output) -> int:
    """Completes the device's pending delivery (device credential, D7)."""
    with device_client(args, "device") as dev:
        reply = dev.complete_delivery(delivery_id=args.delivery_id)
    out.record(f"completed delivery {reply.delivery.delivery_id}", reply)
    return 0


def cmd_cancel_delivery(args: argparse.Namespace, out: Output) -> int:
    """Undoes a pending delivery (portal, D6)."""
    with device_client(args) as dev:
        delivery = dev.cancel_delivery(delivery_id=args.delivery_id).delivery
    out.record(f"cancelled delivery {delivery.delivery_id}", delivery)
    return 0


def cmd_show_delivery(args: argparse.Namespace, out: Output) -> int:
    """Shows one delivery."""
    with device_client(args) as dev:
        delivery = dev.get_delivery(delivery_id=args.delivery_id).delivery
    out.record(f"delivery {delivery.delivery_id}", delivery)
    return 0


def cmd_list_deliveries(args: argparse.Namespace, out: Output) -> int:
    """Lists deliveries of an account or a device, newest first, all pages."""
    filters: dict[str, Any] = {
        "account_id": args.account or "",
        "device_id": args.device_id or "",
        "page_size": args.page_size,
    }
    if args.state:
        filters["state"] = enum_name("DELIVERY_STATE", args.state)
    with device_client(args) as dev:
        out.rows("deliveries", list(dev.iter_deliveries(**filters)))
    return 0


# --- reserve codes and license keys (D8-D10) ----------------------------------------


def cmd_add_reserve(args: argparse.Namespace, out: Output) -> int:
    """Stores a reserve code on a device (D8)."""
    with device_client(args) as dev:
        reply = dev.add_reserve_code(
            device_id=args.device_id, code=args.code, request_id=args.request_id or ""
        )
    out.record(f"reserve of device {args.device_id}", reply.reserve)
    return 0


def cmd_remove_reserve(args: argparse.Namespace, out: Output) -> int:
    """Removes a device's waiting or failed reserve."""
    with device_client(args) as dev:
        reply = dev.remove_reserve_code(device_id=args.device_id)
    if out.as_json:
        out.record("", reply)
    else:
        out.note(f"removed the reserve of device {args.device_id}")
    return 0


def cmd_license_details(args: argparse.Namespace, out: Output) -> int:
    """A device's current code and reserve."""
    with device_client(args) as dev:
        reply = dev.get_license_details(device_id=args.device_id)
    out.record(f"license of device {args.device_id}", reply)
    return 0


def cmd_retry_reserve(args: argparse.Namespace, out: Output) -> int:
    """Retries a failed take-over by the reserve (D10)."""
    with device_client(args) as dev:
        reply = dev.retry_reserve_activation(device_id=args.device_id)
    out.record(f"reserve of device {args.device_id}", reply.reserve)
    return 0


def cmd_activate_reserve(args: argparse.Namespace, out: Output) -> int:
    """Lets the reserve take over at once from a blocked current code (D10)."""
    with device_client(args) as dev:
        reply = dev.activate_reserve_now(device_id=args.device_id)
    out.record(f"reserve of device {args.device_id}", reply.reserve)
    return 0


def cmd_remove_license_key(args: argparse.Namespace, out: Output) -> int:
    """Removes a device's current code; its reserve takes over (D9)."""
    with device_client(args) as dev:
        reply = dev.remove_license_key(device_id=args.device_id)
    out.record(f"removed the license key of device {args.device_id}", reply)
    return 0


# --- about the CLI ---------------------------------------------------------------------


def exit_codes() -> dict[str, int]:
    """Every exit status of the CLI by family, the send's partial success included."""
    codes = dict(EXIT_CODES)
    codes[PARTIAL_SEND_FAMILY] = PARTIAL_SEND
    return codes


def cmd_reasons(args: argparse.Namespace, out: Output) -> int:
    """Prints every error reason with its exception class and exit code."""
    rows = [
        {"reason": r, "exception": c.__name__, "exit": c.exit_code}
        for r, c in sorted(REASON_CLASSES.items())
    ]
    if args.json:
        out.json({"reasons": rows, "exitCodes": exit_codes()})
        return 0
    out.print_rows("reasons", rows, dict_layout(["reason", "exception", "exit"]))
    families = [{"exit": v, "family": k} for k, v in exit_codes().items()]
    out.print_rows("exit codes", families, dict_layout(["exit", "family"]))
    return 0


# --- the parser -------------------------------------------------------------------------

PLATFORMS = ["windows", "macos", "android", "ios", "linux"]
CHANNELS = ["online-store", "account-portal", "isp", "partner"]
SEND_EPILOG = f"""\
One target's refusal does not undo the others: each target gets a pending
delivery or a refusal with its reason (listed, then explained one per line).

exit status:
    0  every target got a pending delivery
   {PARTIAL_SEND}  some targets got a delivery, some were refused (partial send)
  3-15 no target got a delivery: the exit code of the first refusal's reason
       family, as for a failed call (NO_FREE_SLOTS: 10; `keyslot reasons`)
The request id makes a retry safe: the same --request-id returns the first answer."""


class Registry:
    """Adds the subcommands, each with the global flags (``parents``) and the formatter."""

    def __init__(
        self,
        sub: Any,
        parents: Sequence[argparse.ArgumentParser],
        formatter: type[argparse.HelpFormatter],
    ) -> None:
        self.sub = sub
        self.parents = list(parents)
        self.formatter = formatter

    def __call__(
        self,
        name: str,
        func: Command,
        help_text: str,
        *,
        aliases: Sequence[str] = (),
        epilog: str | None = None,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.sub.add_parser(
            name,
            aliases=list(aliases),
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=epilog,
            parents=self.parents,
            formatter_class=self.formatter,
        )
        p.set_defaults(func=func)
        return p


def _code(
    p: argparse.ArgumentParser, help_text: str = "the code (case, blanks, '-' ignored)"
) -> None:
    p.add_argument("code", metavar="CODE", help=help_text)


def _account(p: argparse.ArgumentParser) -> None:
    p.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acc_...)")


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("device_id", metavar="DEVICE_ID", help="the device (dev_...)")


def _delivery(p: argparse.ArgumentParser) -> None:
    p.add_argument("delivery_id", metavar="DELIVERY_ID", help="the delivery (dlv_...)")


def _request_id(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--request-id",
        metavar="ID",
        help="idempotency key: a retry with the same id gets the first answer "
        "(default: a fresh one per run)",
    )


def _page_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--page-size", type=int, default=100, metavar="N", help=PAGE_SIZE_HELP)


def _periods(p: argparse.ArgumentParser) -> None:
    p.add_argument("--periods", type=int, default=1, metavar="N", help="whole periods, 1-100")


def add_product_commands(command: Registry) -> None:
    """Products and codes: the license service, as a provider."""
    p = command("create-product", cmd_create_product, "register a product (provider)")
    p.add_argument("product_id", metavar="PRODUCT_ID", help="1-64 of a-z, 0-9, '-', '_'")
    p.add_argument("--name", help="display name (default: the product id)")
    p.add_argument(
        "--console-managed", action="store_true", help="administered in the management console"
    )
    p.add_argument("--region", action="append", help="released region, repeatable (default: all)")
    p.add_argument("--min-version", help="lowest compatible app version (default: none)")
    p.add_argument("--max-version", help="first incompatible app version (default: none)")

    p = command("show-product", cmd_show_product, "show a product")
    p.add_argument("product_id", metavar="PRODUCT_ID", help="the product")

    p = command("list-products", cmd_list_products, "list every product")
    _page_size(p)

    p = command("issue-codes", cmd_issue_codes, "issue codes with one set of terms (provider)")
    p.add_argument("--product", required=True, help="the product the codes are for (required)")
    p.add_argument("--count", type=int, default=1, help="how many codes, 1-1000")
    p.add_argument(
        "--kind", choices=["license", "subscription"], default="license", help="code kind"
    )
    p.add_argument(
        "--coverage",
        choices=["updates", "updates-and-protection"],
        default="updates-and-protection",
        help="what stops when the code lapses",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--days", type=int, default=365, help="term length in days")
    length.add_argument(
        "--duration", type=span, help="term length with a unit: 1h, 90m, 1h30m, 30d, 3600s"
    )
    p.add_argument("--unlimited", action="store_true", help="never expires (no term)")
    grace = p.add_mutually_exclusive_group()
    grace.add_argument("--grace-days", type=int, default=14, help="grace after expiry, in days")
    grace.add_argument("--grace", type=span, help="grace with a unit: 10m, 0s, 14d")
    p.add_argument("--max-devices", type=int, default=1, help="device slots, 1-10000")
    p.add_argument(
        "--slot-kind",
        choices=["per-device", "per-user"],
        default="per-device",
        help="one slot per device, or a per-user service",
    )
    p.add_argument("--trial", action="store_true", help="a trial code")
    p.add_argument("--free", action="store_true", help="a free code")
    p.add_argument(
        "--auto-renew", action="store_true", help="renews itself when prepaid (subscriptions)"
    )
    p.add_argument(
        "--channel", choices=CHANNELS, default="account-portal", help="where it was bought"
    )
    p.add_argument("--provider-name", default="keyslot-cli", help="the selling provider's name")
    p.add_argument("--order-number", help="order number at the store (default: none)")
    _request_id(p)

    p = command("show-code", cmd_show_code, "show a code with its terms and state (provider)")
    _code(p)

    p = command(
        "show-codes", cmd_show_codes, "show several codes in one call; exit 4 if any is unknown"
    )
    p.add_argument("codes", nargs="+", metavar="CODE", help="up to 1000 codes")

    p = command("list-codes", cmd_list_codes, "list your codes, every page (provider)")
    p.add_argument("--product", help="only this product's codes (default: all)")
    p.add_argument(
        "--status",
        choices=["active", "paused", "blocked", "cancelled"],
        help="only codes with this status (default: any)",
    )
    _page_size(p)

    p = command("pause-subscription", cmd_pause, "pause a subscription: its clock stops (L5)")
    _code(p)
    p = command("resume-subscription", cmd_resume, "resume a paused subscription (L5)")
    _code(p)
    p = command("renew-subscription", cmd_renew, "renew a subscription by whole periods (L3)")
    _code(p)
    _periods(p)
    _request_id(p)
    p = command("record-prepayment", cmd_prepayment, "record prepaid periods for auto-renewal (L4)")
    _code(p)
    _periods(p)
    _request_id(p)
    p = command(
        "cancel-subscription", cmd_cancel_subscription, "cancel a subscription at period end (L5)"
    )
    _code(p)
    p.add_argument(
        "--immediately", action="store_true", help="cancel now (default: at the period's end)"
    )
    p = command("block-code", cmd_block, "block a code: nothing is entitled (L7)")
    _code(p)
    p.add_argument("--reason", default="", help="why, for the record (up to 500 characters)")
    p = command("unblock-code", cmd_unblock, "lift a code's block")
    _code(p)
    p = command(
        "set-auto-renewal", cmd_set_auto_renewal, "turn auto-renewal on/off, or learn who does (L8)"
    )
    _code(p, "the subscription's code")
    p.add_argument("setting", choices=["on", "off"], help="the wanted setting")
    p = command(
        "show-renewal-route",
        cmd_renewal_route,
        "who disables auto-renewal, for a code or a purchase (L8)",
    )
    p.add_argument("code", nargs="?", metavar="CODE", help="the code (or give --channel)")
    p.add_argument("--channel", choices=CHANNELS, help="the purchase channel, without a CODE")
    p.add_argument("--order-number", help="the order number, with --channel (default: none)")
    p = command(
        "create-support-request",
        cmd_support_request,
        "ask our support to disable auto-renewal (L8)",
    )
    p.add_argument("--reason", required=True, help="why renewal should stop (required)")
    p.add_argument(
        "--purchase-date", required=True, metavar="YYYY-MM-DD", help="date of purchase (required)"
    )
    p.add_argument("--full-name", required=True, help="full name on the order (required)")
    p.add_argument("--email", required=True, help="e-mail on the order (required)")
    p.add_argument("--order-number", help="order number, if known (default: none)")
    p.add_argument(
        "--caller",
        choices=["portal", "console", "provider"],
        default="portal",
        help="whose token of --credentials files it",
    )


def add_account_commands(command: Registry) -> None:
    """Accounts, subscriptions and download links: the device service, portal or console."""
    p = command("create-account", cmd_create_account, "create an account (portal)")
    p.add_argument("name", metavar="NAME", help="display name, 1-200 characters")
    p.add_argument(
        "--console", action="store_true", help="a management-console account (console token)"
    )
    p = command("show-account", cmd_show_account, "show an account")
    _account(p)
    p = command(
        "add-console-member", cmd_add_console_member, "add a member to a console account (console)"
    )
    _account(p)
    p.add_argument("name", metavar="NAME", help="the member's name")
    p.add_argument(
        "--role", choices=["administrator", "member"], default="member", help="the member's role"
    )
    p = command("add-subscription", cmd_add_subscription, "add a code to an account (portal)")
    _account(p)
    _code(p)
    _request_id(p)
    p = command("remove-subscription", cmd_remove_subscription, "remove a code from an account")
    _account(p)
    _code(p)
    p = command("list-subscriptions", cmd_list_subscriptions, "list an account's subscriptions")
    _account(p)
    _page_size(p)
    p = command(
        "list-subscription-devices",
        cmd_list_subscription_devices,
        "devices holding or receiving a subscription",
    )
    _account(p)
    _code(p, "the subscription's code")
    p = command("send-download-link", cmd_send_download_link, "record a download link to mail (D2)")
    _account(p)
    _code(p, "a subscription on the account")
    p.add_argument("email", metavar="EMAIL", help="where to send the link")
    p = command("list-outbox", cmd_list_outbox, "outgoing messages, oldest first (portal)")
    _page_size(p)


def add_device_commands(command: Registry) -> None:
    """Connection codes, devices and the app's own calls."""
    p = command(
        "create-connection-code",
        cmd_connection_code,
        "one-time connection code for an account (portal, D1)",
        aliases=["connection-code"],
    )
    _account(p)
    p = command("connect-device", cmd_connect_device, "connect a device with a connection code")
    p.add_argument("connection_code", metavar="CONNECTION_CODE", help="as shown: K7QM-3XPA-9RTW")
    p.add_argument("--platform", choices=PLATFORMS, default="windows", help="operating system")
    p.add_argument("--app-version", default="21.3", help="app version, dotted numbers")
    p.add_argument("--region", default="FI", help="ISO 3166-1 alpha-2 region")
    p.add_argument("--name", default="my device", help="display name")
    p = command("show-device", cmd_show_device, "show a device")
    _device(p)
    p = command("list-devices", cmd_list_devices, "an account's connected devices (portal)")
    _account(p)
    _page_size(p)
    p = command("update-device", cmd_update_device, "change a device's version, region or name")
    _device(p)
    p.add_argument("--app-version", help="new app version (default: unchanged)")
    p.add_argument("--region", help="new region (default: unchanged)")
    p.add_argument("--name", help="new display name (default: unchanged)")
    p = command(
        "disconnect-device", cmd_disconnect_device, "disconnect a device, freeing its slots"
    )
    _device(p)
    p = command("check-in", cmd_check_in, "the app's check-in (device --token)")
    p.add_argument("--app-version", help="the app version now running (default: unchanged)")
    p = command(
        "activate-device", cmd_activate_device, "the app enters a code itself (device --token)"
    )
    _code(p)
    _request_id(p)


def add_delivery_commands(command: Registry) -> None:
    """Sending subscriptions to devices (D4-D7)."""
    p = command(
        "send-subscription",
        cmd_send,
        "send a subscription to devices; partial success is exit 16 (portal)",
        aliases=["send"],
        epilog=SEND_EPILOG,
    )
    _account(p)
    _code(p, "a subscription on the account")
    p.add_argument(
        "device_ids", nargs="+", metavar="DEVICE_ID", help="1-100 target devices (dev_...)"
    )
    _request_id(p)
    p = command(
        "complete-delivery", cmd_complete_delivery, "complete a pending delivery (device --token)"
    )
    _delivery(p)
    p = command("cancel-delivery", cmd_cancel_delivery, "undo a pending delivery (portal, D6)")
    _delivery(p)
    p = command("show-delivery", cmd_show_delivery, "show a delivery")
    _delivery(p)
    p = command("list-deliveries", cmd_list_deliveries, "deliveries of an account or a device")
    whose = p.add_mutually_exclusive_group(required=True)
    whose.add_argument("--account", metavar="ACCOUNT_ID", help="the account's deliveries")
    whose.add_argument("--device-id", metavar="DEVICE_ID", help="the device's deliveries")
    p.add_argument(
        "--state",
        choices=["pending", "delivered", "cancelled", "expired", "failed"],
        help="only deliveries in this state (default: any)",
    )
    _page_size(p)


def add_reserve_commands(command: Registry) -> None:
    """Reserve codes and license keys (D8-D10)."""
    p = command("add-reserve", cmd_add_reserve, "store a reserve code on a device (D8)")
    _device(p)
    _code(p, "the reserve code")
    _request_id(p)
    p = command("remove-reserve", cmd_remove_reserve, "remove a device's waiting or failed reserve")
    _device(p)
    p = command(
        "show-license",
        cmd_license_details,
        "a device's current code and reserve",
        aliases=["license-details"],
    )
    _device(p)
    p = command("retry-reserve", cmd_retry_reserve, "retry a failed take-over by the reserve")
    _device(p)
    p = command(
        "activate-reserve", cmd_activate_reserve, "reserve takes over now from a blocked code"
    )
    _device(p)
    p = command(
        "remove-license-key", cmd_remove_license_key, "remove a device's key; reserve takes over"
    )
    _device(p)


def add_commands(command: Registry) -> None:
    """Every subcommand, grouped as `keyslot --help` lists them."""
    add_product_commands(command)
    add_account_commands(command)
    add_device_commands(command)
    add_delivery_commands(command)
    add_reserve_commands(command)
    command("reasons", cmd_reasons, "every error reason, its exception class and exit code")
    command("demo", cmd_demo, "run the whole story against running services (make run)")
