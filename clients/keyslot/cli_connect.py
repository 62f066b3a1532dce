"""How the `keyslot` CLI connects: tokens, TLS credentials and the two typed clients.

The global flags (``--license``, ``--device``, ``--ca``, ``--cert``, ``--key``,
``--plaintext``, ``--token``, ``--credentials``, ``--timeout``) end up here; every
command builds its client with ``license_client(args)`` or ``device_client(args)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import grpc

from keyslot.client import DeviceClient, LicenseClient, tls_credentials
from keyslot.errors import (
    KeyslotError,
    ServerWithoutTls,
    TlsFailure,
    TlsFileError,
    Unavailable,
    UntrustedServer,
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


def enum_name(enum_prefix: str, value: str) -> str:
    """'subscription' -> 'CODE_KIND_SUBSCRIPTION'."""
    return f"{enum_prefix}_{value.upper().replace('-', '_')}"
