"""`keyslot`: the operator and demo command line for keyslot's two services.

    keyslot create-product suite --name "Suite"
    keyslot issue-codes --product suite --kind subscription --days 365 --max-devices 3
    keyslot issue-codes --product suite --trial --duration 1h --grace 10m
    keyslot list-codes --product suite --json
    keyslot demo            # the whole story against `make run`

One command per provider or operator RPC of the two services, named
verb-noun (``cli_commands``); the global flags go before or after the
command. Output fits the terminal: one line per record in lists, ids never
cut or wrapped (``cli_tables``); ``--json`` prints the replies as JSON.

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
(complete-delivery, check-in, activate-device) need the device credential
that connect-device printed, given with ``--token``.

Every failure exits with the code of its reason family (``keyslot reasons``
prints the table); a send that reached only some of its targets exits 16.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

if "grpc" not in sys.modules:
    # Unset, gRPC (read once, at import) logs every failed TLS handshake at INFO on stderr;
    # the CLI says it in one line instead. Only when the CLI is the program: a process that
    # loaded gRPC first keeps its settings, and a GRPC_VERBOSITY given by the user wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from rich.markup import escape

from keyslot.cli_commands import Registry, add_commands, exit_codes
from keyslot.cli_connect import (
    DEFAULT_CA,
    DEFAULT_CREDENTIALS,
    DEVICE_ADDRESS,
    LICENSE_ADDRESS,
    SYSTEM_ROOTS,
    USAGE_ERROR,
    UsageError,
    ca_file,
    channel_credentials,
    connection_hint,
    credential_from_file,
    device_client,
    license_client,
    plaintext,
    span,
    tls_failure_line,
    token_for,
)
from keyslot.cli_tables import Output, to_dict
from keyslot.errors import KeyslotError, TlsFailure

__all__ = [
    "DEFAULT_CA",
    "DEFAULT_CREDENTIALS",
    "Output",
    "UsageError",
    "build_parser",
    "ca_file",
    "channel_credentials",
    "credential_from_file",
    "device_client",
    "license_client",
    "main",
    "plaintext",
    "span",
    "to_dict",
    "token_for",
]

NOT_COMMANDS = """\
not commands: the grant RPCs (PrepareGrant, CommitGrant, AbortGrant, GetGrant)
and the WatchCodeChanges stream belong to the device service, the license
service's only peer; the typed client (keyslot.client) has them."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; each option's default after its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = "default" in text or "%(default)" in text
        silent = action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
        if shown or silent:
            return text
        return f"{text} (default: %(default)s)"


def version() -> str:
    """The installed keyslot package's version."""
    try:
        return metadata.version("keyslot")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _exit_code_epilog() -> str:
    lines = ["exit codes (by error reason family):"]
    lines += [f"  {code:>3}  {family}" for family, code in exit_codes().items()]
    lines.append("`keyslot reasons` lists every reason with its exit code.")
    return "\n".join(lines) + "\n\n" + NOT_COMMANDS


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and output flags. ``suppress``: for the subcommands, where a flag
    sets its value only when given (so it wins over one given before the command)."""
    env = os.environ.get
    defaults: dict[str, Any] = {
        "license": env("KEYSLOT_LICENSE", LICENSE_ADDRESS),
        "device": env("KEYSLOT_DEVICE", DEVICE_ADDRESS),
        "ca": env("KEYSLOT_CA"),
        "cert": env("KEYSLOT_CERT"),
        "key": env("KEYSLOT_KEY"),
        "plaintext": env("KEYSLOT_PLAINTEXT", "0"),
        "token": None,
        "credentials": env("KEYSLOT_CREDENTIALS", DEFAULT_CREDENTIALS),
        "tokens_file": None,
        "timeout": 10.0,
        "json": False,
    }

    def default(name: str) -> Any:
        return argparse.SUPPRESS if suppress else defaults[name]

    title = "global options (before or after the command)" if suppress else "global options"
    group = parser.add_argument_group(title)
    group.add_argument(
        "--license",
        default=default("license"),
        help=f"license service address (KEYSLOT_LICENSE, default {defaults['license']})",
    )
    group.add_argument(
        "--device",
        default=default("device"),
        help=f"device service address (KEYSLOT_DEVICE, default {defaults['device']})",
    )
    group.add_argument(
        "--ca",
        metavar="PATH",
        default=default("ca"),
        help=(
            "CA certificate (PEM) the services' certificates must chain to (KEYSLOT_CA; "
            f"default {DEFAULT_CA} when it exists, else {SYSTEM_ROOTS})"
        ),
    )
    group.add_argument(
        "--cert",
        metavar="PATH",
        default=default("cert"),
        help="client certificate (PEM) for mutual TLS, with --key (KEYSLOT_CERT; default none)",
    )
    group.add_argument(
        "--key",
        metavar="PATH",
        default=default("key"),
        help="unencrypted private key (PEM) of --cert (KEYSLOT_KEY; default none)",
    )
    group.add_argument(
        "--plaintext",
        action="store_const",
        const="1",
        default=default("plaintext"),
        help="no TLS: for a service started in plaintext on loopback (KEYSLOT_PLAINTEXT=1; "
        "default TLS)",
    )
    group.add_argument(
        "--token",
        default=default("token"),
        help="bearer token (KEYSLOT_TOKEN; default the caller kind's entry of --credentials)",
    )
    group.add_argument(
        "--credentials",
        metavar="PATH",
        default=default("credentials"),
        help="JSON file of tokens by caller kind that `make run` writes (KEYSLOT_CREDENTIALS, "
        f"default {defaults['credentials']})",
    )
    # Gone: tokens files hold hashes now. Kept hidden so an old script hears why (main).
    group.add_argument("--tokens-file", default=default("tokens_file"), help=argparse.SUPPRESS)
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default("timeout"),
        help=f"deadline per call (default {defaults['timeout']:g} s)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default("json"),
        help="print the replies as JSON instead of tables (default: tables)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: global flags and one subcommand per operation.

    The global flags are read before the command and again after it; a flag given
    after the command wins over the same flag given before it.
    """
    parser = argparse.ArgumentParser(
        prog="keyslot",
        description="Operate keyslot's license and device services.",
        epilog=_exit_code_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version"
    )
    add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(Registry(sub, [common], HelpFormatter))
    # Listed for --help; main() hands `keyslot tokens ...` to the server's tool.
    sub.add_parser("tokens", help=TOKENS_HELP, description=TOKENS_HELP, add_help=False)
    return parser


TOKENS_HELP = (
    "create, list and revoke the static tokens of a service's tokens file (S6): runs"
    " python -m keyslot_server.tokens, installed with keyslot[server]; `keyslot tokens"
    " --help` shows its commands"
)


def tokens_tool(args: Sequence[str]) -> int:
    """`keyslot tokens ...`: the tokens file belongs to the services, so its tool is
    server code; the CLI runs it as a process rather than importing it."""
    if importlib.util.find_spec("keyslot_server") is None:
        print(
            "keyslot: `keyslot tokens` manages a service's tokens file and needs the"
            " server install: pip install 'keyslot[server]'",
            file=sys.stderr,
        )
        return USAGE_ERROR
    env = dict(os.environ, KEYSLOT_TOKENS_PROG="keyslot tokens")  # its usage names us
    return subprocess.call([sys.executable, "-m", "keyslot_server.tokens", *args], env=env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `keyslot` console script; returns the exit code."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["tokens"]:
        return tokens_tool(given[1:])
    args = build_parser().parse_args(given)
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
