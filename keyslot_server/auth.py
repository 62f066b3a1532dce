"""Bearer-token authentication (S1): tokens resolve to principals.

Static principals (provider backends, the portal and console services, the
peer service) come from a tokens file that stores no token, only its SHA-256
(S6), written by ``python -m keyslot_server.tokens``::

    {"version": 2, "tokens": [
        {"id": "tok_0123456789ab", "sha256": "<64 hex>", "kind": "provider",
         "name": "acme-shop", "role": "", "created": "2026-12-03T10:00:00Z",
         "expires": null}
    ]}

``kind`` is one of provider, portal, console, device, peer; ``role`` is ""
or, for console members, ADMINISTRATOR or MEMBER; ``expires`` is null or an
RFC 3339 time. The device service adds resolvers for the account, member and
device credentials it issues.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from keyslot_server.clock import Clock, SystemClock, format_rfc3339, parse_rfc3339
from keyslot_server.config import ConfigError, read_bytes

KINDS = ("provider", "portal", "console", "device", "peer")

log = logging.getLogger("keyslot.auth")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a kind, a name and, for credentials, what they are bound to."""

    kind: str
    name: str
    role: str = ""
    account_id: str = ""
    device_id: str = ""
    member_id: str = ""


def caller_key(principal: Principal) -> str:
    """The caller as stored with what it did (request ids, support requests, budgets):
    its kind and name, which name the credential for issued ones (``device:<id>``)."""
    return f"{principal.kind}:{principal.name}"


Resolver = Callable[[str], Principal | None]

_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "keyslot_principal", default=None
)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _current.get()
    if principal is None:
        raise RuntimeError("no principal: called outside an authenticated RPC")
    return principal


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Binds the caller for the current RPC; the interceptor resets it after."""
    return _current.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def hash_token(token: str) -> str:
    """The stored form of an issued credential: SHA-256 hex (tokens are random)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh credential: a readable prefix plus 256 random bits."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


TOKENS_FILE_VERSION = 2
# An entry's fields, in the order they are written.
ENTRY_FIELDS = ("id", "sha256", "kind", "name", "role", "created", "expires")
_TOKEN_ID = re.compile(r"tok_[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredToken:
    """One entry of the tokens file: a static principal known by its token's SHA-256."""

    id: str
    sha256: str
    kind: str
    name: str
    role: str
    created: datetime
    expires: datetime | None

    @property
    def principal(self) -> Principal:
        return Principal(kind=self.kind, name=self.name, role=self.role)

    def to_json(self) -> dict[str, Any]:
        """The entry as written to the file."""
        return {
            "id": self.id,
            "sha256": self.sha256,
            "kind": self.kind,
            "name": self.name,
            "role": self.role,
            "created": format_rfc3339(self.created),
            "expires": None if self.expires is None else format_rfc3339(self.expires),
        }


def parse_tokens_file(path: str | Path, raw: bytes) -> list[StoredToken]:
    """The entries of a version-2 tokens file, or ConfigError naming entry and field.

    Problems never quote a field's value: a token pasted into the wrong field
    must not reach a log (S6). Unknown fields are refused, so a misspelt
    ``"expire"`` cannot leave a token valid forever.
    """
    try:
        data = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError; neither quotes the text
        raise ConfigError(path, f"tokens file is not JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise ConfigError(path, 'tokens file must be a JSON object {"version": 2, "tokens": [...]}')
    version = data.get("version")
    if version is None or version == 1:
        raise ConfigError(
            path,
            "tokens file holds plaintext tokens (version 1); hash them in place with: "
            f"python -m keyslot_server.tokens --file {path} migrate",
        )
    if version != TOKENS_FILE_VERSION:
        raise ConfigError(
            path, f"tokens file version {version!r} is not supported (this keyslot reads 2)"
        )
    unknown = sorted(set(data) - {"version", "tokens"})
    if unknown:
        raise ConfigError(path, f"tokens file has an unknown field {unknown[0]!r}")
    entries = [_parse_entry(path, i, item) for i, item in enumerate(data["tokens"])]
    first: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        for field in ("id", "sha256"):
            seen = first.setdefault((field, getattr(entry, field)), i)
            if seen != i:
                raise ConfigError(path, f"tokens[{i}].{field} repeats tokens[{seen}].{field}")
    return entries


def _parse_entry(path: str | Path, i: int, item: object) -> StoredToken:
    where = f"tokens[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(path, f"{where} must be an object")
    if "token" in item:
        raise ConfigError(
            path,
            f'{where} holds a plaintext "token", which version 2 never stores; delete the '
            "entry and create the token again with: python -m keyslot_server.tokens create",
        )
    for field in ENTRY_FIELDS:
        if field not in item:
            raise ConfigError(path, f"{where} has no {field!r}")
    unknown = sorted(set(item) - set(ENTRY_FIELDS))
    if unknown:
        raise ConfigError(path, f"{where} has an unknown field {unknown[0]!r}")

    def text(field: str, pattern: re.Pattern[str] | None, must: str) -> str:
        value = item[field]
        if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)):
            raise ConfigError(path, f"{where}.{field} must be {must}")
        return value

    def time(field: str) -> datetime:
        value = item[field]
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return parse_rfc3339(value)
        except ValueError:
            raise ConfigError(
                path, f'{where}.{field} must be an RFC 3339 time such as "2026-12-03T10:00:00Z"'
            ) from None

    kind = text("kind", None, "one of " + ", ".join(KINDS))
    if kind not in KINDS:
        raise ConfigError(path, f"{where}.kind must be one of " + ", ".join(KINDS))
    name = text("name", None, "a non-empty string")
    if not name:
        raise ConfigError(path, f"{where}.name must be a non-empty string")
    return StoredToken(
        id=text("id", _TOKEN_ID, '"tok_" and 12 lowercase hex digits'),
        sha256=text("sha256", _SHA256, "64 lowercase hex digits (the token's SHA-256)"),
        kind=kind,
        name=name,
        role=text("role", None, 'a string ("" for none)'),
        created=time("created"),
        expires=None if item["expires"] is None else time("expires"),
    )


Signature = tuple[int, int, int]
"""What a stat says about the file: (inode, mtime in ns, size)."""
GONE: Signature = (-1, -1, -1)  # the file is not there
UNREADABLE: Signature = (-2, -2, -2)  # stat failed for another reason


def file_signature(path: str | Path) -> Signature:
    """(st_ino, st_mtime_ns, st_size) of ``path``, or GONE / UNREADABLE; never raises."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return GONE
    except OSError:
        return UNREADABLE
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_tokens_file(path: str | Path) -> tuple[Signature, list[StoredToken]]:
    """The file's signature and entries; ConfigError when missing, unreadable or malformed."""
    # Stat before reading: a file replaced in between is read new under the old
    # signature, and the next stat reloads it again; the other order could pair
    # the old content with the new signature and miss a revocation.
    signature = file_signature(path)
    return signature, parse_tokens_file(path, read_bytes(path, "tokens file"))


class _Loaded(NamedTuple):
    signature: Signature  # of the file last looked at, loaded or not
    by_hash: dict[str, tuple[Principal, datetime | None]]


def _index(entries: Iterable[StoredToken]) -> dict[str, tuple[Principal, datetime | None]]:
    return {e.sha256: (e.principal, e.expires) for e in entries}


class TokenFile:
    """Static principals (S1) from the tokens file, which holds only SHA-256 hashes (S6).

    Revocation needs no restart and has no TTL window: every ``resolve`` stats
    the file (a couple of microseconds) and reloads it when its inode, mtime or size
    changed, so a token removed from the file is refused on the very next call.
    Writers replace the file (``os.replace``), which gives it a new inode: two
    writes within one mtime tick are still told apart. ``reload()`` (SIGHUP)
    reads the file whatever the stat says, for an in-place edit that kept
    inode, size and mtime tick.

    A reload that fails (a file malformed half-way through a hand edit, or
    unreadable) logs one error line and keeps the previous entries: a typo must
    not lock every provider out. A file that disappeared holds no static
    principals (logged): deleting it revokes them all, never "keep the old ones".

    Thread-safe: workers resolve concurrently, one of them reloads under a lock
    and the new entries replace the old ones in a single assignment.
    """

    def __init__(self, path: str | None, clock: Clock, loaded: _Loaded) -> None:
        self._path = path  # a str: stat on each call skips the Path conversion
        self._clock = clock
        self._loaded = loaded
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None, clock: Clock | None = None) -> TokenFile:
        """Reads and checks the whole file; ConfigError names the file and the problem.

        No path (None or "") means no static principals. ``clock`` decides
        expiry (the system clock by default).
        """
        clock = clock or SystemClock()
        if not path:
            return cls(None, clock, _Loaded(GONE, {}))
        signature, entries = read_tokens_file(path)
        return cls(os.fspath(path), clock, _Loaded(signature, _index(entries)))

    def resolve(self, token: str) -> Principal | None:
        """The principal of ``token``; None when unknown, revoked or expired."""
        if self._path is None:
            return None
        loaded = self._loaded
        signature = file_signature(self._path)
        if signature != loaded.signature:
            self._reload(signature, force=False)
            loaded = self._loaded
        found = loaded.by_hash.get(hash_token(token))  # by hash: the lookup never sees the token
        if found is None:
            return None
        principal, expires = found
        if expires is not None and self._clock.now() >= expires:
            return None
        return principal

    def reload(self) -> bool:
        """Reads the file now, changed or not (the services call this on SIGHUP).

        True when the entries are now the file's (none if the file is gone);
        False when it could not be read or is malformed, and the previous
        entries stay (one error line logged).
        """
        if self._path is None:
            return True
        return self._reload(file_signature(self._path), force=True)

    def _reload(self, seen: Signature, *, force: bool) -> bool:
        assert self._path is not None
        with self._lock:
            before = self._loaded
            if not force and before.signature == seen:
                return True  # another worker reloaded it meanwhile
            if seen == GONE:
                if before.signature != GONE:
                    log.error(
                        "tokens file %s is gone: no static principals until it is back", self._path
                    )
                self._loaded = _Loaded(GONE, {})
                return True
            try:
                signature, entries = read_tokens_file(self._path)
            except ConfigError as err:
                log.error(
                    "tokens file not reloaded, keeping the %d tokens loaded before: %s",
                    len(before.by_hash),
                    err,
                )
                # Remember what was looked at, so one bad file logs one line, not one per call.
                self._loaded = _Loaded(seen, before.by_hash)
                return False
            self._loaded = _Loaded(signature, _index(entries))
            log.info("tokens file %s reloaded: %d tokens", self._path, len(entries))
            return True


def chain(*resolvers: Resolver) -> Resolver:
    """A resolver trying each in turn."""

    def resolve(token: str) -> Principal | None:
        for resolver in resolvers:
            found = resolver(token)
            if found is not None:
                return found
        return None

    return resolve


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header, if any."""
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
