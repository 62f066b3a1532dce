"""`keyslot demo`: the story of DOMAIN.md, step by step, against running services."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from rich.text import Text

from keyslot.cli_connect import channel_credentials, credential_from_file, license_client
from keyslot.cli_tables import Output, to_dict
from keyslot.client import DeviceClient, dpb, lpb
from keyslot.errors import KeyslotError, TlsFailure, from_refusal


class Demo:
    """The story of DOMAIN.md, step by step, against running services."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.failed: list[str] = []
        self.step_no = 0
        # --token (or KEYSLOT_TOKEN) stands for the provider; the portal is the file's.
        credentials = Path(args.credentials)
        portal = credential_from_file(credentials, "portal")
        self.lic = license_client(args, "provider")
        self.dev = DeviceClient(
            args.device, portal, timeout=args.timeout, credentials=channel_credentials(args)
        )
        self.log: list[dict[str, Any]] = []

    def step(self, title: str, action: Callable[[], Any], *, required: bool = True) -> Any:
        """Runs one step; prints its result or its error. Stops the demo on a required one."""
        self.step_no += 1
        head = f"{self.step_no:>2}. {title}"
        try:
            value = action()
        except TlsFailure:
            raise  # nothing can work: main explains it in one line
        except KeyslotError as err:
            self.failed.append(title)
            self.log.append({"step": title, "error": err.to_dict()})
            if not self.out.as_json:
                self.out.console.print(f"[bold]{head}[/] [red]failed[/]")
                self.out.error(err, indent="    ", to_stdout=True)
            if required:
                raise
            return None
        self.log.append({"step": title, "result": _jsonable(value)})
        if not self.out.as_json:
            self.out.console.print(f"[bold]{head}[/] [green]ok[/]")
            summary = _summary(value)
            if summary:
                # Wrapped between words: an id in the summary never splits.
                self.out.console.print(Text(f"    {summary}"), soft_wrap=False)
        return value

    def run(self) -> int:
        """The whole story; returns the exit code (0 when every step passed)."""
        try:
            self._story()
        except TlsFailure:
            raise
        except KeyslotError as err:
            self._finish()
            return err.exit_code
        finally:
            self.lic.close()
            self.dev.close()
        return self._finish()

    def _finish(self) -> int:
        if self.out.as_json:
            print(json.dumps({"steps": self.log, "failed": self.failed}, indent=2))
        elif self.failed:
            self.out.console.print(f"\n[yellow]demo finished; steps that failed:[/] {self.failed}")
        else:
            self.out.console.print("\n[green]demo finished: every step passed[/]")
        return 1 if self.failed else 0

    def _story(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        product_id = f"demo-suite-{suffix}"
        self.step(
            f"create product {product_id}",
            lambda: (
                self.lic.create_product(
                    product=lpb.Product(product_id=product_id, display_name="Demo Suite")
                ).product
            ),
        )

        def terms(days: int, devices: int) -> lpb.CodeTerms:
            return lpb.CodeTerms(
                product_id=product_id,
                kind=lpb.CODE_KIND_LICENSE,
                coverage=lpb.COVERAGE_UPDATES_AND_PROTECTION,
                duration=timedelta(days=days),
                grace_period=timedelta(days=14),
                max_devices=devices,
                slot_kind=lpb.SLOT_KIND_PER_DEVICE,
                purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
                provider_name="demo",
            )

        family = self.step(
            "issue a 1-year code for 2 devices",
            lambda: self.lic.issue_codes(terms=terms(365, 2), count=1).codes[0],
        )
        reserve = self.step(
            "issue a 2-year single-device code to keep in reserve",
            lambda: self.lic.issue_codes(terms=terms(730, 1), count=1).codes[0],
        )
        reply = self.step(
            "create an account",
            lambda: self.dev.create_account(
                account=dpb.Account(display_name="Demo family", kind=dpb.ACCOUNT_KIND_PERSONAL)
            ),
        )
        account_id = reply.account.account_id
        account = self.dev.with_token(reply.account_credential)
        self.step(
            "add the code to the account",
            lambda: account.add_subscription(account_id=account_id, code=family.code).subscription,
        )
        devices: dict[str, tuple[str, DeviceClient]] = {}
        for name, platform in (("laptop", dpb.PLATFORM_WINDOWS), ("phone", dpb.PLATFORM_ANDROID)):
            conn = self.step(
                f"connection code for the {name}",
                lambda: account.create_connection_code(account_id=account_id),
            )

            def connect(name: str = name, platform: int = platform, conn: Any = conn) -> Any:
                return self.dev.connect_device(
                    connection_code=conn.connection_code,
                    platform=platform,
                    app_version="21.3",
                    region="FI",
                    display_name=f"demo {name}",
                )

            connected = self.step(f"connect the {name} with it", connect)
            devices[name] = (
                connected.device.device_id,
                self.dev.with_token(connected.device_credential),
            )
        laptop_id, laptop = devices["laptop"]
        phone_id, _phone = devices["phone"]

        def send(device_id: str) -> dpb.SendResult:
            result = account.send_subscription(
                account_id=account_id, code=family.code, device_ids=[device_id]
            ).results[0]
            if result.WhichOneof("outcome") == "refusal":
                refusal = result.refusal
                raise from_refusal(refusal.reason, refusal.message, refusal.metadata)
            return result

        sent = self.step("send the code to the laptop", lambda: send(laptop_id))
        self.step(
            "the laptop completes the delivery",
            lambda: laptop.complete_delivery(delivery_id=sent.delivery.delivery_id),
        )
        to_phone = self.step("send the code to the phone", lambda: send(phone_id))
        self.step(
            "undo the send to the phone",
            lambda: account.cancel_delivery(delivery_id=to_phone.delivery.delivery_id).delivery,
        )
        self.step(
            "store the 2-year code as the laptop's reserve",
            lambda: laptop.add_reserve_code(device_id=laptop_id, code=reserve.code).reserve,
            required=False,
        )
        self.step(
            "license details of the laptop",
            lambda: laptop.get_license_details(device_id=laptop_id),
            required=False,
        )
        self.step(
            "remove the laptop's license key: the reserve takes over",
            lambda: laptop.remove_license_key(device_id=laptop_id),
            required=False,
        )
        self.step("the laptop checks in", lambda: laptop.check_in(), required=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return to_dict(value)
    return value


_SUMMARY_KEYS = (
    "product_id",
    "code",
    "account_id",
    "connection_code",
    "device_id",
    "delivery_id",
    "state",
    "current_code",
    "phase",
    "failure_reason",
)


def _summary(value: Any) -> str:
    """A one-line summary of a step's result: its ids and states."""
    if not isinstance(value, Message):
        return ""
    found: dict[str, Any] = {}

    def walk(data: dict[str, Any]) -> None:
        for key, item in data.items():
            if isinstance(item, dict):
                walk(item)
            elif key in _SUMMARY_KEYS and key not in found and not isinstance(item, list):
                found[key] = item

    walk(to_dict(value))
    return "  ".join(f"{k}={v}" for k, v in found.items())


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    """Runs the whole story against running services (`make run`)."""
    return Demo(args, out).run()
