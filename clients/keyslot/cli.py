"""`keyslot`: the operator and demo command line for keyslot's two services.

    keyslot create-product suite --name "Suite"
    keyslot issue-codes --product suite --kind subscription --days 365 --max-devices 3
    keyslot issue-codes --product suite --trial --duration 1h --grace 10m
    keyslot --json list-codes --product suite
    keyslot demo            # the whole story against `make run`

TLS: every call goes over TLS, trusting ``--ca`` (``KEYSLOT_CA``; default
``var/tls/ca.pem``, the development CA ``make run`` creates, when that file
exists, else the system's root certificates); ``--cert``/``--key``
(``KEYSLOT_CERT``/``KEYSLOT_KEY``) add a client certificate for mutual TLS.
``--plaintext`` (``KEYSLOT_PLAINTEXT=1``) talks to a service started without
TLS on loopback.

Tokens: ``--token``, else ``KEYSLOT_TOKEN``, else the entry of the command's
caller kind (provider for license commands, portal or console for account
commands) in the credentials file ``make run`` writes once
(``--credentials``, ``KEYSLOT_CREDENTIALS``, default ``var/credentials.json``:
``{"provider": "<token>", "portal": "<token>", ...}``). The services' tokens
file holds only hashes, so it cannot serve as a source of tokens; the old
``--tokens-file`` flag stops with a message saying so. Device commands
(complete-delivery, check-in) need the device credential that
connect-device printed, given with ``--token``.

Every failure exits with the code of its reason family (``keyslot reasons``
prints the table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

if "grpc" not in sys.modules:
    # Unset, gRPC (read once, at import) logs every failed TLS handshake at INFO on stderr;
    # the CLI says it in one line instead. Only when the CLI is the program: a process that
    # loaded gRPC first keeps its settings, and a GRPC_VERBOSITY given by the user wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keyslot.client import DeviceClient, LicenseClient, dpb, lpb, tls_credentials
from keyslot.errors import (
    EXIT_CODES,
    REASON_CLASSES,
    KeyslotError,
    ServerWithoutTls,
    TlsFailure,
    TlsFileError,
    Unavailable,
    UntrustedServer,
    from_refusal,
    reason_class,
)

USAGE_ERROR = 2
LICENSE_ADDRESS = "127.0.0.1:50051"
DEVICE_ADDRESS = "127.0.0.1:50052"
#: The development CA `make run` creates; trusted by default when it exists.
DEFAULT_CA = "var/tls/ca.pem"
#: The development client tokens `make run` writes once (0600), by caller kind.
DEFAULT_CREDENTIALS = "var/credentials.json"
SYSTEM_ROOTS = "the system's root certificates"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class UsageError(Exception):
    """A problem with the command line itself (exit 2)."""


# --- output ---------------------------------------------------------------------


def to_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready dict, proto field names, defaults left out."""
    return MessageToDict(message, preserving_proto_field_name=True)


class Output:
    """Prints results as rich tables for people or JSON for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def result(self, title: str, value: Message | list[Message] | dict[str, Any]) -> None:
        """One command's result: a record (message/dict) or a list of records."""
        if isinstance(value, list):
            rows = [to_dict(m) for m in value]
            if self.as_json:
                print(json.dumps(rows, indent=2))
            else:
                self.console.print(_rows_table(title, rows))
            return
        data = to_dict(value) if isinstance(value, Message) else value
        if self.as_json:
            print(json.dumps(data, indent=2))
        else:
            self.console.print(_record_table(title, data))

    def error(self, err: KeyslotError, indent: str = "", to_stdout: bool = False) -> None:
        """A failed call: the reason, domain, metadata and bad fields."""
        if self.as_json:
            print(json.dumps({"error": err.to_dict()}, indent=2))
            return
        console = self.console if to_stdout else self.err
        reason = err.reason or "-"
        console.print(f"{indent}[bold red]error[/] {err.code.name} [bold]{reason}[/]")
        if err.message:
            console.print(f"{indent}  {err.message}")
        for key, value in sorted(err.metadata.items()):
            console.print(f"{indent}  {key}: {value}")
        for violation in err.field_violations:
            console.print(f"{indent}  field {violation.field}: {violation.description}")

    def one_line(self, err: KeyslotError, line: str) -> None:
        """A failure that one sentence explains better than the status (TLS failures)."""
        if self.as_json:
            print(json.dumps({"error": {**err.to_dict(), "message": line}}, indent=2))
            return
        self.err.print(f"[bold red]keyslot:[/] {escape(line)}")


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _record_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in _flatten(data):
        table.add_row(key, _cell(value))
    return table


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested messages one level deep as dotted keys (code.terms.max_devices...)."""
    for key, value in data.items():
        if isinstance(value, dict) and value and prefix.count(".") < 2:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    return table


# --- tokens, TLS and clients ----------------------------------------------------


def token_for(args: argparse.Namespace, kind: str) -> str:
    """--token, else KEYSLOT_TOKEN, else the credentials file's entry for ``kind``."""
    if args.token:
        return str(args.token)
    env = os.environ.get("KEYSLOT_TOKEN")
    if env:
        return env
    if kind == "device":
        raise UsageError("this command acts as a device: pass its credential with --token")
    return credential_from_file(Path(args.credentials), kind)


def credential_from_file(path: Path, kind: str) -> str:
    """The token of a caller kind in a credentials file ({"provider": "<token>", ...})."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"no --token, no KEYSLOT_TOKEN and no credentials file at {path}: "
            "run `make run` once to create it, or pass --token"
        ) from None
    except OSError as err:
        raise UsageError(f"{path}: credentials file cannot be read ({err.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{path}: credentials file is not JSON") from None
    if isinstance(data, dict) and isinstance(data.get("tokens"), list):
        raise UsageError(
            f"{path} is a tokens file, which holds only hashes: "
            f"pass the credentials file (--credentials, default {DEFAULT_CREDENTIALS}) or --token"
        )
    if not isinstance(data, dict):
        raise UsageError(f"{path}: credentials file is not a JSON object of tokens by caller kind")
    token = data.get(kind)
    if not isinstance(token, str) or not token:
        raise UsageError(f"no {kind!r} entry in the credentials file {path}: pass --token")
    return token


def plaintext(args: argparse.Namespace) -> bool:
    """--plaintext, or KEYSLOT_PLAINTEXT set to 1/true/yes/on."""
    value = str(args.plaintext).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"KEYSLOT_PLAINTEXT={args.plaintext!r}: use 1 (no TLS) or 0 (TLS)")


def ca_file(args: argparse.Namespace) -> str | None:
    """--ca / KEYSLOT_CA, else var/tls/ca.pem when it exists; None trusts the system's roots."""
    if args.ca:
        return str(args.ca)
    return DEFAULT_CA if Path(DEFAULT_CA).is_file() else None


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials for the global flags, or None with --plaintext."""
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key (KEYSLOT_CERT, KEYSLOT_KEY) go together")
    if plaintext(args):
        if args.cert:
            raise UsageError("--plaintext sends no client certificate: drop --cert/--key")
        return None
    try:
        return tls_credentials(ca_file(args), args.cert, args.key)
    except TlsFileError as err:
        raise UsageError(f"{err} (see --ca, --cert, --key)") from None


def license_client(args: argparse.Namespace, kind: str = "provider") -> LicenseClient:
    """A LicenseClient for the global flags."""
    token = token_for(args, kind)
    return LicenseClient(
        args.license, token, timeout=args.timeout, credentials=channel_credentials(args)
    )


def device_client(args: argparse.Namespace, kind: str | None = "portal") -> DeviceClient:
    """A DeviceClient for the global flags (kind None: no token, as connect-device)."""
    token = token_for(args, kind) if kind else args.token or None
    return DeviceClient(
        args.device, token, timeout=args.timeout, credentials=channel_credentials(args)
    )


def tls_failure_line(args: argparse.Namespace, err: TlsFailure) -> str:
    """One line naming the address, the CA trusted and the flag that fixes it."""
    where = err.target or "the service"
    trusted = ca_file(args) or SYSTEM_ROOTS
    if isinstance(err, UntrustedServer) and err.wrong_name:
        return (
            f"the TLS certificate of {where} does not name that host (trusted CA: {trusted}): "
            "connect by a name the certificate holds"
        )
    if isinstance(err, UntrustedServer):
        why = f" ({err.verify_reason})" if err.verify_reason else ""
        return (
            f"the TLS certificate of {where} is not trusted by {trusted}{why}: "
            "pass the CA that signed it with --ca or KEYSLOT_CA"
        )
    if isinstance(err, ServerWithoutTls):
        return (
            f"{where} does not speak TLS: if it was started in plaintext on loopback, "
            "pass --plaintext or KEYSLOT_PLAINTEXT=1"
        )
    return f"the TLS handshake with {where} failed (trusted CA: {trusted}): {err.transport}"


def connection_hint(args: argparse.Namespace, err: KeyslotError) -> str:
    """A hint when a server hung up at connect time: a TLS/plaintext or client-cert mix-up."""
    if type(err) is not Unavailable or "Socket closed" not in err.message:
        return ""
    where = err.target or "the service"
    if plaintext(args):
        return f"{where} closed the connection: if it serves TLS, drop --plaintext"
    return (
        f"{where} closed the connection during the TLS handshake: if it requires a client "
        "certificate, pass --cert and --key signed by a CA it trusts"
    )


_SPAN_PART = re.compile(r"([0-9]+)([wdhms])")
_SPAN_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def span(text: str) -> timedelta:
    """A term length such as "1h", "90m", "1h30m", "365d" or "3600s" (ASCII, whole seconds).

    Units w, d, h, m, s; every number needs its unit, so "365" is not read as seconds
    by someone who meant days.
    """
    if not re.fullmatch(r"(?:[0-9]+[wdhms])+", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 1h, 90m, 1h30m, 365d or 3600s"
        )
    total = sum(int(n) * _SPAN_UNITS[unit] for n, unit in _SPAN_PART.findall(text))
    if total > 315_576_000_000:  # past what a protobuf Duration holds (the service takes 100 y)
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 10,000 years")
    return timedelta(seconds=total)


def _enum(enum_prefix: str, value: str) -> str:
    """'subscription' -> 'CODE_KIND_SUBSCRIPTION'."""
    return f"{enum_prefix}_{value.upper().replace('-', '_')}"


# --- commands -------------------------------------------------------------------


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
        out.result("product", lic.create_product(product=product).product)
    return 0


def cmd_issue_codes(args: argparse.Namespace, out: Output) -> int:
    """Issues codes with one set of terms (provider)."""
    terms = lpb.CodeTerms(
        product_id=args.product,
        kind=_enum("CODE_KIND", args.kind),
        coverage=_enum("COVERAGE", args.coverage),
        unlimited=args.unlimited,
        max_devices=args.max_devices,
        slot_kind=_enum("SLOT_KIND", args.slot_kind),
        trial=args.trial,
        free=args.free,
        auto_renew=args.auto_renew,
        purchase_channel=_enum("PURCHASE_CHANNEL", args.channel),
        provider_name=args.provider_name,
        order_number=args.order_number or "",
    )
    if not args.unlimited:
        duration = args.duration if args.duration is not None else timedelta(days=args.days)
        terms.duration.FromTimedelta(duration)
    grace = args.grace if args.grace is not None else timedelta(days=args.grace_days)
    terms.grace_period.FromTimedelta(grace)
    with license_client(args) as lic:
        codes = lic.issue_codes(terms=terms, count=args.count).codes
    if args.json:
        out.result("codes", list(codes))
    else:
        out.result("issued codes", [lpb.Code(code=c.code, status=c.status) for c in codes])
    return 0


def cmd_show_code(args: argparse.Namespace, out: Output) -> int:
    """Shows one code with its terms and state (provider)."""
    with license_client(args) as lic:
        out.result(f"code {args.code}", lic.get_code(code=args.code).code)
    return 0


def cmd_list_codes(args: argparse.Namespace, out: Output) -> int:
    """Lists the caller's codes, all pages (provider)."""
    filters: dict[str, Any] = {"page_size": args.page_size}
    if args.product:
        filters["product_id"] = args.product
    if args.status:
        filters["status"] = _enum("CODE_STATUS", args.status)
    with license_client(args) as lic:
        codes = list(lic.iter_codes(**filters))
    if args.json:
        out.result("codes", list(codes))
        return 0
    rows = []
    for c in codes:
        data = to_dict(c)
        terms = data.get("terms", {})
        rows.append(
            {
                "code": c.code,
                "product": c.terms.product_id,
                "kind": str(terms.get("kind", "-")).removeprefix("CODE_KIND_"),
                "status": str(data.get("status", "-")).removeprefix("CODE_STATUS_"),
                "phase": str(data.get("phase", "-")).removeprefix("PHASE_"),
                "devices": f"{c.activation_count}/{c.terms.max_devices}",
                "expires": data.get("expire_time", "-"),
            }
        )
    out.console.print(_rows_table("codes", rows))
    return 0


def cmd_create_account(args: argparse.Namespace, out: Output) -> int:
    """Creates an account (portal); prints its credential once."""
    kind = "ACCOUNT_KIND_CONSOLE" if args.console else "ACCOUNT_KIND_PERSONAL"
    with device_client(args, "console" if args.console else "portal") as dev:
        reply = dev.create_account(account=dpb.Account(display_name=args.name, kind=kind))
    out.result("account", reply)
    return 0


def cmd_add_subscription(args: argparse.Namespace, out: Output) -> int:
    """Registers a code on an account (portal)."""
    with device_client(args) as dev:
        reply = dev.add_subscription(account_id=args.account_id, code=args.code)
    out.result("subscription", reply.subscription)
    return 0


def cmd_connection_code(args: argparse.Namespace, out: Output) -> int:
    """Creates a one-time connection code for an account (portal, D1)."""
    with device_client(args) as dev:
        out.result("connection code", dev.create_connection_code(account_id=args.account_id))
    return 0


def cmd_connect_device(args: argparse.Namespace, out: Output) -> int:
    """Connects a device with a connection code (the code is the credential, D1)."""
    with device_client(args, None) as dev:
        reply = dev.connect_device(
            connection_code=args.connection_code,
            platform=_enum("PLATFORM", args.platform),
            app_version=args.app_version,
            region=args.region,
            display_name=args.name,
        )
    out.result("connected device", reply)
    return 0


def cmd_send(args: argparse.Namespace, out: Output) -> int:
    """Sends a subscription to devices (portal, D4); exit code of the first refusal."""
    with device_client(args) as dev:
        reply = dev.send_subscription(
            account_id=args.account_id,
            code=args.code,
            device_ids=args.device_ids,
            request_id=args.request_id or "",
        )
    out.result("send results", list(reply.results))
    refusals = [r.refusal for r in reply.results if r.WhichOneof("outcome") == "refusal"]
    if refusals:
        return reason_class(refusals[0].reason).exit_code
    return 0


def cmd_complete_delivery(args: argparse.Namespace, out: Output) -> int:
    """Completes the device's pending delivery (device credential, D7)."""
    with device_client(args, "device") as dev:
        out.result("completed", dev.complete_delivery(delivery_id=args.delivery_id))
    return 0


def cmd_cancel_delivery(args: argparse.Namespace, out: Output) -> int:
    """Undoes a pending delivery (portal, D6)."""
    with device_client(args) as dev:
        out.result("cancelled", dev.cancel_delivery(delivery_id=args.delivery_id).delivery)
    return 0


def cmd_add_reserve(args: argparse.Namespace, out: Output) -> int:
    """Stores a reserve code on a device (D8)."""
    with device_client(args) as dev:
        reply = dev.add_reserve_code(device_id=args.device_id, code=args.code)
    out.result("reserve", reply.reserve)
    return 0


def cmd_license_details(args: argparse.Namespace, out: Output) -> int:
    """A device's current code and reserve."""
    with device_client(args) as dev:
        out.result("license details", dev.get_license_details(device_id=args.device_id))
    return 0


def cmd_remove_license_key(args: argparse.Namespace, out: Output) -> int:
    """Removes a device's current code; its reserve takes over (D9)."""
    with device_client(args) as dev:
        out.result("after removal", dev.remove_license_key(device_id=args.device_id))
    return 0


def cmd_check_in(args: argparse.Namespace, out: Output) -> int:
    """The app's periodic check-in (device credential)."""
    with device_client(args, "device") as dev:
        out.result("check-in", dev.check_in(app_version=args.app_version or ""))
    return 0


def cmd_list_devices(args: argparse.Namespace, out: Output) -> int:
    """Lists an account's connected devices, all pages (portal)."""
    with device_client(args) as dev:
        out.result("devices", list(dev.iter_devices(account_id=args.account_id)))
    return 0


def cmd_list_deliveries(args: argparse.Namespace, out: Output) -> int:
    """Lists deliveries of an account or a device, all pages (portal)."""
    with device_client(args) as dev:
        found = dev.iter_deliveries(account_id=args.account or "", device_id=args.device_id or "")
        out.result("deliveries", list(found))
    return 0


def cmd_reasons(args: argparse.Namespace, out: Output) -> int:
    """Prints every error reason with its exception class and exit code."""
    rows = [
        {"reason": r, "exception": c.__name__, "exit": c.exit_code}
        for r, c in sorted(REASON_CLASSES.items())
    ]
    if args.json:
        print(json.dumps({"reasons": rows, "exitCodes": dict(EXIT_CODES)}, indent=2))
        return 0
    out.console.print(_rows_table("reasons", rows))
    out.console.print(
        _rows_table("exit codes", [{"family": k, "exit": v} for k, v in EXIT_CODES.items()])
    )
    return 0


# --- demo -----------------------------------------------------------------------


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
                self.out.console.print(f"    {summary}")
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


# --- parser ---------------------------------------------------------------------


def _exit_code_epilog() -> str:
    lines = ["exit codes (by error reason family):"]
    lines += [f"  {code:>3}  {family}" for family, code in EXIT_CODES.items()]
    lines.append("`keyslot reasons` lists every reason with its exit code.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: global flags and one subcommand per operation."""
    parser = argparse.ArgumentParser(
        prog="keyslot",
        description="Operate keyslot's license and device services.",
        epilog=_exit_code_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    parser.add_argument(
        "--license",
        default=env("KEYSLOT_LICENSE", LICENSE_ADDRESS),
        help="license service address (KEYSLOT_LICENSE, default %(default)s)",
    )
    parser.add_argument(
        "--device",
        default=env("KEYSLOT_DEVICE", DEVICE_ADDRESS),
        help="device service address (KEYSLOT_DEVICE, default %(default)s)",
    )
    parser.add_argument(
        "--ca",
        metavar="PATH",
        default=env("KEYSLOT_CA"),
        help=(
            "CA certificate (PEM) the services' certificates must chain to (KEYSLOT_CA; "
            f"default {DEFAULT_CA} when it exists, else {SYSTEM_ROOTS})"
        ),
    )
    parser.add_argument(
        "--cert",
        metavar="PATH",
        default=env("KEYSLOT_CERT"),
        help="client certificate (PEM) for mutual TLS, with --key (KEYSLOT_CERT; default none)",
    )
    parser.add_argument(
        "--key",
        metavar="PATH",
        default=env("KEYSLOT_KEY"),
        help="unencrypted private key (PEM) of --cert (KEYSLOT_KEY; default none)",
    )
    parser.add_argument(
        "--plaintext",
        action="store_const",
        const="1",
        default=env("KEYSLOT_PLAINTEXT", "0"),
        help="no TLS: for a service started in plaintext on loopback (KEYSLOT_PLAINTEXT=1; "
        "default TLS)",
    )
    parser.add_argument(
        "--token",
        help="bearer token (KEYSLOT_TOKEN; default the caller kind's entry of --credentials)",
    )
    parser.add_argument(
        "--credentials",
        metavar="PATH",
        default=env("KEYSLOT_CREDENTIALS", DEFAULT_CREDENTIALS),
        help="JSON file of tokens by caller kind that `make run` writes (KEYSLOT_CREDENTIALS, "
        "default %(default)s)",
    )
    # Gone: tokens files hold hashes now. Kept hidden so an old script hears why (main).
    parser.add_argument("--tokens-file", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = command("create-product", cmd_create_product, "register a product (provider)")
    p.add_argument("product_id")
    p.add_argument("--name", help="display name (default: the id)")
    p.add_argument("--console-managed", action="store_true")
    p.add_argument("--region", action="append", help="released region, repeatable")
    p.add_argument("--min-version", help="lowest compatible app version")
    p.add_argument("--max-version", help="first incompatible app version")

    p = command("issue-codes", cmd_issue_codes, "issue codes with one set of terms (provider)")
    p.add_argument("--product", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--kind", choices=["license", "subscription"], default="license")
    p.add_argument(
        "--coverage",
        choices=["updates", "updates-and-protection"],
        default="updates-and-protection",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--days", type=int, default=365, help="term length in days (365)")
    length.add_argument(
        "--duration", type=span, help="term length with a unit: 1h, 90m, 1h30m, 30d, 3600s"
    )
    p.add_argument("--unlimited", action="store_true", help="never expires")
    grace = p.add_mutually_exclusive_group()
    grace.add_argument("--grace-days", type=int, default=14, help="grace in days (14)")
    grace.add_argument("--grace", type=span, help="grace with a unit: 10m, 0s, 14d")
    p.add_argument("--max-devices", type=int, default=1)
    p.add_argument("--slot-kind", choices=["per-device", "per-user"], default="per-device")
    p.add_argument("--trial", action="store_true")
    p.add_argument("--free", action="store_true")
    p.add_argument("--auto-renew", action="store_true")
    p.add_argument(
        "--channel",
        choices=["online-store", "account-portal", "isp", "partner"],
        default="account-portal",
    )
    p.add_argument("--provider-name", default="keyslot-cli")
    p.add_argument("--order-number")

    p = command("show-code", cmd_show_code, "show a code with its terms and state (provider)")
    p.add_argument("code")

    p = command("list-codes", cmd_list_codes, "list your codes, every page (provider)")
    p.add_argument("--product")
    p.add_argument("--status", choices=["active", "paused", "blocked", "cancelled"])
    p.add_argument("--page-size", type=int, default=100)

    p = command("create-account", cmd_create_account, "create an account (portal)")
    p.add_argument("name")
    p.add_argument("--console", action="store_true", help="a management-console account")

    p = command("add-subscription", cmd_add_subscription, "add a code to an account (portal)")
    p.add_argument("account_id")
    p.add_argument("code")

    p = command("connection-code", cmd_connection_code, "one-time connection code (portal)")
    p.add_argument("account_id")

    p = command("connect-device", cmd_connect_device, "connect a device with a connection code")
    p.add_argument("connection_code")
    p.add_argument(
        "--platform", choices=["windows", "macos", "android", "ios", "linux"], default="windows"
    )
    p.add_argument("--app-version", default="21.3")
    p.add_argument("--region", default="FI")
    p.add_argument("--name", default="my device")

    p = command("send", cmd_send, "send a subscription to devices (portal)")
    p.add_argument("account_id")
    p.add_argument("code")
    p.add_argument("device_ids", nargs="+", metavar="device_id")
    p.add_argument("--request-id", help="idempotency key (default: a fresh uuid)")

    p = command(
        "complete-delivery", cmd_complete_delivery, "complete a pending delivery (device --token)"
    )
    p.add_argument("delivery_id")

    p = command("cancel-delivery", cmd_cancel_delivery, "undo a pending delivery (portal)")
    p.add_argument("delivery_id")

    p = command("add-reserve", cmd_add_reserve, "store a reserve code on a device")
    p.add_argument("device_id")
    p.add_argument("code")

    p = command("license-details", cmd_license_details, "a device's current code and reserve")
    p.add_argument("device_id")

    p = command(
        "remove-license-key", cmd_remove_license_key, "remove a device's key; reserve takes over"
    )
    p.add_argument("device_id")

    p = command("check-in", cmd_check_in, "the app's check-in (device --token)")
    p.add_argument("--app-version")

    p = command("list-devices", cmd_list_devices, "an account's connected devices (portal)")
    p.add_argument("account_id")

    p = command("list-deliveries", cmd_list_deliveries, "deliveries of an account or a device")
    p.add_argument("--account")
    p.add_argument("--device-id")

    command("reasons", cmd_reasons, "every error reason, its exception class and exit code")
    command("demo", cmd_demo, "run the whole story against running services (make run)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `keyslot` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    try:
        if args.tokens_file is not None:
            raise UsageError(
                "--tokens-file is gone: tokens files hold only hashes now; pass --credentials "
                f"(default {DEFAULT_CREDENTIALS}, written by `make run`) or --token"
            )
        code: int = args.func(args, out)
        return code
    except TlsFailure as err:
        out.one_line(err, tls_failure_line(args, err))
        return err.exit_code
    except KeyslotError as err:
        out.error(err)
        hint = connection_hint(args, err)
        if hint and not args.json:
            out.err.print(f"  hint: {escape(hint)}")
        return err.exit_code
    except UsageError as err:
        out.err.print(f"[bold red]keyslot:[/] {escape(str(err))}")
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
