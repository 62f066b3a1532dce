"""Settings of the license service: each declared once, flags and KEYSLOT_LICENSE_* derived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from keyslot_server.settings import ServerSettings, not_negative, positive, setting


@dataclass(frozen=True)
class Settings(ServerSettings):
    """Everything the license service is configured with."""

    service: ClassVar[str] = "license"

    listen: str = setting("127.0.0.1:50051", "host:port to serve on")
    db: str = setting(
        "var/license.db", 'SQLite database file, or a postgresql:// URL (README "PostgreSQL")'
    )
    peer_listen: str = setting(
        "",
        "host:port of the mutual-TLS port the device service calls (S5); needs a TLS certificate"
        " and the peer CA; unset: no peer port",
    )
    peer_ca: str | None = setting(
        None, "CA certificate(s) (PEM) that issue the device service's client certificates"
    )
    peer_uri: str = setting(
        "spiffe://keyslot/device-service",
        "URI SAN the device service's client certificate must carry (S5)",
    )
    lookup_budget: int = setting(
        20,
        "failed code look-ups a caller (for the device service: each account it acts for)"
        " may make per window, counted in the database; 0 = no limit (S3)",
        check=not_negative,
    )
    lookup_window: float = setting(
        60.0, "seconds of the rolling failed look-up window (S3)", check=positive
    )
