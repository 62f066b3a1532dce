"""How a service listens (S5): TLS from its certificate, or plaintext on loopback.

``listeners`` turns a service's settings into the listeners ``create_server``
binds, after checking every certificate and key (a problem is a ConfigError,
before any database exists). Without a certificate a service serves plaintext,
which is allowed on a loopback address (tests, development) and elsewhere only
with an explicit ``--plaintext 1``, with a loud warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from keyslot_server import tls
from keyslot_server.config import ConfigError
from keyslot_server.server import Listener, PeerCheck

log = logging.getLogger("keyslot.transport")


def server_tls(
    cert: str | None, key: str | None, client_ca: str | None = None
) -> tls.ServerTls | None:
    """The service's TLS material, checked; None when it has no certificate."""
    if not cert and not key:
        return None
    if not cert or not key:
        given, missing = ("--tls-key", "--tls-cert") if key else ("--tls-cert", "--tls-key")
        raise ConfigError(given, f"needs {missing} as well")
    return tls.ServerTls(cert, key, client_ca)


def require_plaintext_allowed(addresses: Sequence[str], plaintext: bool, service: str) -> None:
    """Plaintext outside loopback only when asked for explicitly (S5)."""
    public = [a for a in addresses if a and not tls.is_loopback(a)]
    if not public:
        return
    if not plaintext:
        raise ConfigError(
            public[0],
            "not a loopback address: serving it needs TLS (--tls-cert and --tls-key),"
            " or --plaintext 1 to serve without it",
        )
    log.warning(
        "%s: SERVING PLAINTEXT ON %s: tokens and credentials cross the network in clear;"
        " give --tls-cert and --tls-key for anything but a closed test network",
        service,
        ", ".join(public),
    )


def peer_certificate_check(peer_uri: str) -> PeerCheck:
    """A PeerCheck passing calls whose verified client certificate names ``peer_uri``."""

    def check(context: grpc.ServicerContext) -> bool:
        return peer_uri in tls.peer_uris(context)

    return check


def public_listener(address: str, material: tls.ServerTls | None) -> Listener:
    """The service's main port: server-only TLS, or plaintext without material."""
    return Listener(address, material.credentials() if material is not None else None)
