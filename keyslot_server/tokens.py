"""The tokens file (S6): create, list, revoke and migrate static tokens, and its CLI.

The file holds each token's SHA-256, never the token (format in
keyslot_server.auth); a token is printed once, when it is created. The
services pick up every change on their next call, so revoking or rotating
needs no restart::

    python -m keyslot_server.tokens create --kind provider --name acme-shop
    python -m keyslot_server.tokens list
    python -m keyslot_server.tokens revoke acme-shop

Every write replaces the file atomically (a 0600 temporary file in the same
directory, fsync, ``os.replace``) under an exclusive lock on ``<file>.lock``,
so concurrent writers lose nothing and the services never read half a file.

Client-side credentials (the tokens ``make run`` hands the CLI, the bench and
the device service's peer link) live in a separate flat JSON object of
``{"<key>": "<token>"}``, written the same way: ``save_credential`` and
``read_credential``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from keyslot_server.auth import (
    KINDS,
    TOKENS_FILE_VERSION,
    StoredToken,
    file_signature,
    hash_token,
    new_token,
    read_tokens_file,
)
from keyslot_server.clock import SystemClock, parse_rfc3339
from keyslot_server.config import EXIT_CONFIG, ConfigError, read_bytes
from keyslot_server.files import FILE_MODE, private_dir

DEFAULT_FILE = "var/tokens.json"
FILE_VARIABLE = "KEYSLOT_TOKENS_FILE"
PROG_VARIABLE = "KEYSLOT_TOKENS_PROG"
EXIT_NO_MATCH = 1
# Version-1 tokens were refused below this length; migrating keeps that floor.
MIN_PLAINTEXT_LENGTH = 16


# --- the tokens file --------------------------------------------------------------


def create(
    path: str | Path,
    kind: str,
    name: str,
    role: str = "",
    expires: datetime | None = None,
    now: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new token of ``kind`` for ``name``: (the token, its stored entry).

    The token (``ks_<kind>_`` and 256 random bits) is returned, never stored:
    the caller shows it once. The file (0600, its directory 0700) is created
    if absent. ValueError for an unknown kind, an empty name, or a naive or
    past expiry.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if not name:
        raise ValueError("name must not be empty")
    now = _aware(now or SystemClock().now(), "now").replace(microsecond=0)
    if expires is not None and _aware(expires, "expires") <= now:
        raise ValueError("expires must be later than now")
    token = new_token(f"ks_{kind}")
    path = Path(path)
    with _locked(path):
        stored = read_tokens_file(path)[1] if path.exists() else []
        taken = {entry.id for entry in stored}
        entry = StoredToken(
            id=_new_id(taken),
            sha256=hash_token(token),
            kind=kind,
            name=name,
            role=role,
            created=now,
            expires=expires,
        )
        _write_tokens(path, [*stored, entry])
    return token, entry.to_json()


def revoke(path: str | Path, ident: str) -> int:
    """Removes the entry with id ``ident``, or every entry named ``ident``; how many.

    The services refuse a removed token from their next call on.
    """
    path = Path(path)
    with _locked(path):
        stored = read_tokens_file(path)[1]
        keep = [entry for entry in stored if ident not in (entry.id, entry.name)]
        if len(keep) != len(stored):
            _write_tokens(path, keep)
    return len(stored) - len(keep)


def entries(path: str | Path) -> list[dict[str, Any]]:
    """The file's entries as stored (hashes only: the file holds no secret)."""
    return [entry.to_json() for entry in read_tokens_file(path)[1]]


def state(entry: dict[str, Any], now: datetime) -> str:
    """``active`` or ``expired`` at ``now``, for an entry as ``entries`` returns it."""
    expires = entry.get("expires")
    return "expired" if expires and now >= parse_rfc3339(expires) else "active"


def migrate(path: str | Path, now: datetime | None = None) -> int:
    """Hashes a version-1 file (plaintext ``token`` entries) in place; how many it hashed.

    Kind, name and role are kept, every token keeps working, ``created`` is
    the migration time and nothing expires. A file already at version 2 is
    checked and left alone (0).
    """
    path = Path(path)
    now = _aware(now or SystemClock().now(), "now").replace(microsecond=0)
    with _locked(path):
        data = _json(path, "tokens file")
        if isinstance(data, dict) and data.get("version") == TOKENS_FILE_VERSION:
            read_tokens_file(path)  # checked, so "already version 2" means a good file
            return 0
        items = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ConfigError(path, 'a version-1 tokens file is a JSON object {"tokens": [...]}')
        stored: list[StoredToken] = []
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            entry = _v1_entry(path, i, item, {e.id for e in stored}, now)
            seen = first.setdefault(entry.sha256, i)
            if seen != i:
                raise ConfigError(path, f"tokens[{i}].token repeats tokens[{seen}].token")
            stored.append(entry)
        _write_tokens(path, stored)
    return len(stored)


def _v1_entry(path: Path, i: int, item: object, taken: set[str], now: datetime) -> StoredToken:
    # Problems name the entry and field, never the token (S6).
    where = f"tokens[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(path, f"{where} must be an object")
    token, kind = item.get("token"), item.get("kind")
    if not isinstance(token, str) or len(token) < MIN_PLAINTEXT_LENGTH:
        raise ConfigError(
            path, f"{where}.token must be a string of at least {MIN_PLAINTEXT_LENGTH} characters"
        )
    if kind not in KINDS:
        raise ConfigError(path, f"{where}.kind must be one of {', '.join(KINDS)}")
    name, role = item.get("name") or kind, item.get("role", "")
    if not isinstance(name, str) or not isinstance(role, str):
        raise ConfigError(path, f"{where}.name and .role must be strings")
    return StoredToken(
        id=_new_id(taken),
        sha256=hash_token(token),
        kind=kind,
        name=name,
        role=role,
        created=now,
        expires=None,
    )


def _write_tokens(path: Path, stored: Sequence[StoredToken]) -> None:
    document = {"version": TOKENS_FILE_VERSION, "tokens": [entry.to_json() for entry in stored]}
    _write_atomic(path, json.dumps(document, indent=2) + "\n")


def _new_id(taken: set[str]) -> str:
    while True:
        ident = f"tok_{secrets.token_hex(6)}"
        if ident not in taken:
            return ident


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value


# --- client-side credentials ----------------------------------------------------------


def save_credential(path: str | Path, key: str, token: str) -> None:
    """Stores ``token`` under ``key`` in a credentials file (a flat JSON object, 0600).

    This is where a client keeps the tokens it calls with (``make run`` keeps
    the development ones for the CLI, the bench and the device service's peer
    link); other keys are kept.
    """
    if not key:
        raise ValueError("key must not be empty")
    path = Path(path)
    with _locked(path):
        credentials = _read_credentials(path) if path.exists() else {}
        credentials[key] = token
        _write_atomic(path, json.dumps(credentials, indent=2, sort_keys=True) + "\n")


def read_credential(path: str | Path, key: str) -> str:
    """The token stored under ``key``; ConfigError when the file or the key is missing."""
    credentials = _read_credentials(Path(path))
    if key not in credentials:
        has = ", ".join(sorted(credentials)) or "none"
        raise ConfigError(path, f"no credential {key!r} in the credentials file (it has: {has})")
    return credentials[key]


def _read_credentials(path: Path) -> dict[str, str]:
    data = _json(path, "credentials file")
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(path, 'credentials file must be a JSON object {"<key>": "<token>"}')
    return data


# --- files ------------------------------------------------------------------------------


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(read_bytes(path, what))
    except ValueError as err:  # neither JSONDecodeError nor UnicodeDecodeError quotes the text
        raise ConfigError(path, f"{what} is not JSON: {err}") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``<path>.lock`` (created 0600 in a 0700 directory).

    The lock file stays: removing it would let two writers lock different files.
    flock excludes other processes and, through separate open files, other
    threads of this one.
    """
    private_dir(path.parent)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: Path, text: str) -> None:
    """Replaces ``path`` with ``text``: readers see the old file or the new one, never half.

    The new file gets a new inode and an mtime later than the old one's,
    however fast the writes come; so (inode, mtime, size), which the services
    stat on each call, never comes back to a value they saw, even when the
    file system reuses a freed inode within one mtime tick.
    """
    before = file_signature(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:  # mkstemp creates the file 0600, whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as out:
            out.write(text)
        _mtime_after(fd, before[1])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _mtime_after(fd: int, previous_ns: int) -> None:
    # A nanosecond later when the file system keeps them, else a second later.
    for step in (1, 1_000_000_000):
        st = os.fstat(fd)
        if st.st_mtime_ns > previous_ns:
            return
        os.utime(fd, ns=(st.st_atime_ns, previous_ns + step))


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a crash only once the directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the command line -------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    path = Path(args.file)
    save_as = args.save_as or args.kind
    if args.save_to and Path(args.save_to).exists():
        _read_credentials(Path(args.save_to))  # refuse a bad credentials file before creating
    now = SystemClock().now().replace(microsecond=0)
    expires = now + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    token, entry = create(path, args.kind, args.name, args.role, expires, now)
    print(token, flush=True)  # shown before saving: a failed save must not lose it
    saved = ""
    if args.save_to:
        save_credential(args.save_to, save_as, token)
        saved = f"; saved to {args.save_to} as {save_as!r}"
    print(
        f"{entry['id']}: {args.kind} token for {args.name!r} created in {path}{saved}. "
        "It is stored only as a hash and will not be shown again.",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    rows = [
        {
            **{k: entry[k] for k in ("id", "kind", "name", "role", "created", "expires")},
            "state": state(entry, now),
        }
        for entry in entries(args.file)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # Fits 100 columns with room for a name and a role; ids never wrap, names fold.
    table = Table(
        title=f"{args.file} ({len(rows)} tokens, times UTC)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    table.add_column("id", no_wrap=True, min_width=16)  # tok_ and 12 hex: whole, to copy
    table.add_column("kind", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("role", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for row in rows:
        table.add_row(
            row["id"],
            row["kind"],
            row["name"],
            row["role"] or "-",
            row["created"][:10],
            _minutes(row["expires"]) if row["expires"] else "never",
            "[red]expired[/]" if row["state"] == "expired" else "active",
        )
    Console(highlight=False).print(table)
    return 0


def _minutes(value: str) -> str:
    return parse_rfc3339(value).strftime("%Y-%m-%d %H:%M")


def cmd_revoke(args: argparse.Namespace) -> int:
    count = revoke(args.file, args.ident)
    if count == 0:
        # The argument is not repeated: it could be a token pasted by mistake.
        print(f"{args.file}: nothing matched, no token has that id or name", file=sys.stderr)
        return EXIT_NO_MATCH
    print(f"revoked {count} token{'s' if count != 1 else ''} in {args.file}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    count = migrate(args.file)
    print(f"{args.file}: {count} plaintext token{'s' if count != 1 else ''} hashed; version 2 now")
    return 0


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return days


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: --file and one subcommand per operation."""
    default_file = os.environ.get(FILE_VARIABLE) or DEFAULT_FILE
    parser = argparse.ArgumentParser(
        # `keyslot tokens` runs this tool and names itself in the usage lines.
        prog=os.environ.get(PROG_VARIABLE) or "python -m keyslot_server.tokens",
        description="Manage the static tokens the keyslot services accept (S1, S6). "
        "The file keeps only SHA-256 hashes; the services pick up changes on their next call.",
    )
    parser.add_argument(
        "--file",
        default=default_file,
        metavar="PATH",
        help=f"the tokens file (default: ${FILE_VARIABLE}, else {DEFAULT_FILE}; now %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("create", help="create a token and print it once")
    p.add_argument("--kind", required=True, choices=KINDS, help="the caller kind (required)")
    p.add_argument("--name", required=True, type=_name, help="the caller's name (required)")
    p.add_argument(
        "--role", default="", help="console role: ADMINISTRATOR or MEMBER (default: none)"
    )
    p.add_argument(
        "--expires-in-days",
        type=_days,
        default=None,
        metavar="D",
        help="refuse the token D days from now (default: never expires)",
    )
    p.add_argument(
        "--save-to",
        metavar="CREDENTIALS_FILE",
        default=None,
        help="also store the token in this client credentials file (default: not stored)",
    )
    p.add_argument(
        "--as",
        dest="save_as",
        metavar="KEY",
        default=None,
        help="the key to store it under with --save-to (default: the kind)",
    )
    p.set_defaults(func=cmd_create)

    p = commands.add_parser("list", help="list the tokens (ids, never secrets)")
    p.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: table)"
    )
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("revoke", help="revoke a token by id, or every token of a name")
    p.add_argument("ident", metavar="ID_OR_NAME", help="a token id (tok_...) or a name")
    p.set_defaults(func=cmd_revoke)

    p = commands.add_parser("migrate", help="hash a version-1 file of plaintext tokens in place")
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; a configuration problem is one line on stderr and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "create" and args.save_as and not args.save_to:
        parser.error("--as needs --save-to")
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(err, file=sys.stderr)
    except OSError as err:
        print(f"{err.filename or args.file}: {err.strerror}", file=sys.stderr)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
