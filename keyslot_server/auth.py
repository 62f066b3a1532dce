"""Bearer-token authentication (S1): tokens resolve to principals.

Static principals (provider backends, the portal and console services, the
peer service) come from a tokens file, JSON of the form::

    {"tokens": [
        {"token": "dev-provider-...", "kind": "provider", "name": "acme-shop"},
        {"token": "dev-portal-...",   "kind": "portal",   "name": "portal"},
        {"token": "dev-peer-...",     "kind": "peer",     "name": "device-service"}
    ]}

``kind`` is one of provider, portal, console, device, peer; ``role`` is
optional (console members: ADMINISTRATOR or MEMBER). The device service adds
resolvers for the account, member and device credentials it issues.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

KINDS = ("provider", "portal", "console", "device", "peer")


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


class TokenFile:
    """Static principals loaded from a tokens file; constant-time comparison."""

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._by_hash = {hash_token(tok): p for tok, p in entries}
        self._entries = list(entries)

    @classmethod
    def load(cls, path: str | Path | None) -> TokenFile:
        if not path:
            return cls([])
        data = json.loads(Path(path).read_text())
        entries = []
        for i, item in enumerate(data.get("tokens", [])):
            kind = item.get("kind", "")
            if kind not in KINDS:
                raise ValueError(f"tokens[{i}].kind must be one of {KINDS}, got {kind!r}")
            token = item.get("token", "")
            if len(token) < 16:
                raise ValueError(f"tokens[{i}].token must be at least 16 characters")
            entries.append(
                (
                    token,
                    Principal(kind=kind, name=item.get("name", kind), role=item.get("role", "")),
                )
            )
        return cls(entries)

    def resolve(self, token: str) -> Principal | None:
        # Hashing first makes the dict lookup independent of the token's bytes.
        principal = self._by_hash.get(hash_token(token))
        if principal is None:
            return None
        return principal

    def first_of_kind(self, kind: str) -> str | None:
        """The first token of a kind (the device service finds its peer token here)."""
        for token, principal in self._entries:
            if principal.kind == kind:
                return token
        return None


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
