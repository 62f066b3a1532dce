"""Settings of the device service: each declared once, flags and KEYSLOT_DEVICE_* derived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from device_service.store import CHECK_IN_CACHE_SIZE
from keyslot_server.settings import ServerSettings, not_negative, positive, setting


@dataclass(frozen=True)
class Settings(ServerSettings):
    """Everything the device service is configured with."""

    service: ClassVar[str] = "device"

    listen: str = setting("127.0.0.1:50052", "host:port to serve on")
    db: str = setting(
        "var/device.db", 'SQLite database file, or a postgresql:// URL (README "PostgreSQL")'
    )
    license_address: str = setting(
        "127.0.0.1:50051",
        "host:port of the license service; with a license CA set, its mutual-TLS peer port",
    )
    license_ca: str | None = setting(
        None,
        "CA certificate(s) (PEM) the license service's certificate must chain to; unset:"
        " plaintext, allowed to a loopback address only",
    )
    license_cert: str | None = setting(
        None, "client certificate (PEM) presented to the license service (mutual TLS, S5)"
    )
    license_key: str | None = setting(None, "private key (PEM) of the client certificate")
    peer_token: str = setting(
        "",
        "token for calls to the license service; unset: the 'peer' entry of the credentials file",
        secret=True,
    )
    peer_credentials: str = setting(
        "var/credentials.json",
        "JSON credentials file (0600) holding the peer token under 'peer'",
    )
    license_deadline: float = setting(
        3.0, "seconds per call to the license service", check=positive
    )
    delivery_window_hours: float = setting(
        24.0, "hours a sent subscription waits for completion (D4)", check=positive
    )
    connection_code_ttl: float = setting(
        600.0, "seconds a connection code stays valid (D1)", check=positive
    )
    connection_code_budget: int = setting(
        20,
        "unknown connection codes one client address may try per window, counted in the"
        " database; 0 = no limit (S3)",
        check=not_negative,
    )
    connection_code_global_budget: int = setting(
        1000,
        "unknown connection codes all clients together may try per window; past it every"
        " ConnectDevice is refused until the window moves on; 0 = no limit (S3)",
        check=not_negative,
    )
    connection_code_window: float = setting(
        600.0,
        "seconds of the rolling window of both connection-code budgets (S3)",
        check=positive,
    )
    code_cache_size: int = setting(
        20_000,
        "codes kept between changes, kept current by the license service's change feed;"
        " 0 reads every code from it",
        check=not_negative,
    )
    code_cache_max_age: float = setting(
        60.0, "seconds a kept code is used at most", check=not_negative
    )
    check_in_cache_size: int = setting(
        CHECK_IN_CACHE_SIZE,
        "devices whose check-in view (device, reserve, pending deliveries) is kept until"
        " one of its rows changes; 0 reads it on every check-in",
        check=not_negative,
    )
    download_links_per_account: int = setting(
        20,
        "download-link mails an account may send per window; 0 = no limit (D2)",
        check=not_negative,
    )
    download_links_per_address: int = setting(
        5,
        "download-link mails one e-mail address may get per window, from any account;"
        " 0 = no limit (D2)",
        check=not_negative,
    )
    download_link_window: float = setting(
        3600.0, "seconds of the rolling window of the download-link limits", check=positive
    )
