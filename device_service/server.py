"""Settings and wiring of the device service process."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc
from keyslot.runtime import auth
from keyslot.runtime.clock import Clock, make_clock
from keyslot.runtime.retention import (
    DEFAULT_RETENTION_HOURS,
    Pruner,
    add_retention_flag,
    check_retention_hours,
)
from keyslot.runtime.server import Running, create_server
from keyslot.runtime.settings import add_common_flags, truthy

from device_service.api import DeviceApi
from device_service.errors import DOMAIN
from device_service.license_client import LicensePeer
from device_service.store import CHECK_IN_CACHE_SIZE, DeviceStore
from device_service.sweeper import Sweeper

SERVICE_NAME = "keyslot.device.v1.DeviceService"
log = logging.getLogger("keyslot.device")


@dataclass(frozen=True)
class Settings:
    """Everything the device service is configured with."""

    listen: str = "127.0.0.1:50052"
    db: str = "var/device.db"
    tokens_file: str = "var/tokens.json"
    license_address: str = "127.0.0.1:50051"
    # Empty: the first "peer" token of the tokens file.
    peer_token: str = ""
    license_deadline: float = 3.0
    delivery_window_hours: float = 24.0
    connection_code_ttl: float = 600.0
    # S3 for connection codes: unknown ones per client address and from everyone,
    # per rolling window; 0 = no limit.
    connection_code_budget: int = 20
    connection_code_global_budget: int = 1000
    connection_code_window: float = 600.0
    grace: float = 5.0
    workers: int = 16
    sweep_interval: float = 30.0
    test_clock_file: str | None = None
    log_calls: bool = True
    code_cache_size: int = 20_000
    check_in_cache_size: int = CHECK_IN_CACHE_SIZE
    code_cache_max_age: float = 60.0
    # Download-link mails (D2) per account and per address in a rolling window; 0 = no limit.
    download_links_per_account: int = 20
    download_links_per_address: int = 5
    download_link_window: float = 3600.0
    # Request outcomes, finished handshakes and other history (README "Retention").
    retention_hours: float = DEFAULT_RETENTION_HOURS

    def __post_init__(self) -> None:
        check_retention_hours(self.retention_hours)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        env = os.environ.get
        parser = argparse.ArgumentParser(prog="python -m device_service")
        add_common_flags(parser, cls.listen, cls.db)
        parser.add_argument(
            "--license-address",
            default=env("KEYSLOT_LICENSE_ADDRESS", cls.license_address),
            help="host:port of the license service (KEYSLOT_LICENSE_ADDRESS)",
        )
        parser.add_argument(
            "--peer-token",
            default=env("KEYSLOT_PEER_TOKEN", ""),
            help="token for calls to the license service (KEYSLOT_PEER_TOKEN);"
            " default: the first peer token of the tokens file",
        )
        parser.add_argument(
            "--license-deadline",
            type=float,
            default=float(env("KEYSLOT_LICENSE_DEADLINE", "3")),
            help="seconds per call to the license service",
        )
        parser.add_argument(
            "--delivery-window-hours",
            type=float,
            default=float(env("KEYSLOT_DELIVERY_WINDOW_HOURS", "24")),
            help="hours a sent subscription waits for completion (D4)",
        )
        parser.add_argument(
            "--connection-code-ttl",
            type=float,
            default=float(env("KEYSLOT_CONNECTION_CODE_TTL", "600")),
            help="seconds a connection code stays valid (D1)",
        )
        parser.add_argument(
            "--connection-code-budget",
            type=int,
            default=int(env("KEYSLOT_CONNECTION_CODE_BUDGET", str(cls.connection_code_budget))),
            help="unknown connection codes one client address may try per window, counted"
            " in the database; 0 = no limit (KEYSLOT_CONNECTION_CODE_BUDGET, S3)",
        )
        parser.add_argument(
            "--connection-code-global-budget",
            type=int,
            default=int(
                env("KEYSLOT_CONNECTION_CODE_GLOBAL_BUDGET", str(cls.connection_code_global_budget))
            ),
            help="unknown connection codes all clients together may try per window; past it"
            " every ConnectDevice is refused until the window moves on; 0 = no limit"
            " (KEYSLOT_CONNECTION_CODE_GLOBAL_BUDGET, S3)",
        )
        parser.add_argument(
            "--connection-code-window",
            type=float,
            default=float(env("KEYSLOT_CONNECTION_CODE_WINDOW", str(cls.connection_code_window))),
            help="seconds of the rolling window of both connection-code budgets"
            " (KEYSLOT_CONNECTION_CODE_WINDOW, S3)",
        )
        parser.add_argument(
            "--code-cache-size",
            type=int,
            default=int(env("KEYSLOT_CODE_CACHE_SIZE", str(cls.code_cache_size))),
            help="codes kept between changes, kept current by the license service's"
            " change feed; 0 reads every code from it (KEYSLOT_CODE_CACHE_SIZE)",
        )
        parser.add_argument(
            "--code-cache-max-age",
            type=float,
            default=float(env("KEYSLOT_CODE_CACHE_MAX_AGE", str(cls.code_cache_max_age))),
            help="seconds a kept code is used at most (KEYSLOT_CODE_CACHE_MAX_AGE)",
        )
        parser.add_argument(
            "--check-in-cache-size",
            type=int,
            default=int(env("KEYSLOT_CHECK_IN_CACHE_SIZE", str(cls.check_in_cache_size))),
            help="devices whose check-in view (device, reserve, pending deliveries) is"
            " kept until one of its rows changes; 0 reads it on every check-in"
            " (KEYSLOT_CHECK_IN_CACHE_SIZE)",
        )
        parser.add_argument(
            "--download-links-per-account",
            type=int,
            default=int(
                env("KEYSLOT_DOWNLOAD_LINKS_PER_ACCOUNT", str(cls.download_links_per_account))
            ),
            help="download-link mails an account may send per window; 0 = no limit"
            " (KEYSLOT_DOWNLOAD_LINKS_PER_ACCOUNT)",
        )
        parser.add_argument(
            "--download-links-per-address",
            type=int,
            default=int(
                env("KEYSLOT_DOWNLOAD_LINKS_PER_ADDRESS", str(cls.download_links_per_address))
            ),
            help="download-link mails one e-mail address may get per window, from any"
            " account; 0 = no limit (KEYSLOT_DOWNLOAD_LINKS_PER_ADDRESS)",
        )
        parser.add_argument(
            "--download-link-window",
            type=float,
            default=float(env("KEYSLOT_DOWNLOAD_LINK_WINDOW", str(cls.download_link_window))),
            help="seconds of the rolling window of the download-link limits"
            " (KEYSLOT_DOWNLOAD_LINK_WINDOW)",
        )
        add_retention_flag(parser)
        a = parser.parse_args(argv)
        try:
            check_retention_hours(a.retention_hours)
        except ValueError as err:
            parser.error(str(err))  # exits 2 with the usage and the reason
        if a.download_links_per_account < 0 or a.download_links_per_address < 0:
            parser.error("--download-links-per-account/-address must be 0 (no limit) or more")
        if a.download_link_window <= 0:
            parser.error("--download-link-window must be a positive number of seconds")
        if a.connection_code_window <= 0:
            parser.error("--connection-code-window must be a positive number of seconds")
        return cls(
            listen=a.listen,
            db=a.db,
            tokens_file=a.tokens_file,
            license_address=a.license_address,
            peer_token=a.peer_token,
            license_deadline=a.license_deadline,
            delivery_window_hours=a.delivery_window_hours,
            connection_code_ttl=a.connection_code_ttl,
            connection_code_budget=a.connection_code_budget,
            connection_code_global_budget=a.connection_code_global_budget,
            connection_code_window=a.connection_code_window,
            grace=a.grace,
            workers=a.workers,
            sweep_interval=a.sweep_interval,
            test_clock_file=a.test_clock_file,
            log_calls=truthy(a.log_calls),
            code_cache_size=a.code_cache_size,
            code_cache_max_age=a.code_cache_max_age,
            check_in_cache_size=a.check_in_cache_size,
            retention_hours=a.retention_hours,
            download_links_per_account=a.download_links_per_account,
            download_links_per_address=a.download_links_per_address,
            download_link_window=a.download_link_window,
        )


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, connects to the license service and starts the server."""
    clock = clock or make_clock(settings.test_clock_file)
    store = DeviceStore(settings.db, check_in_cache_size=settings.check_in_cache_size)
    tokens = auth.TokenFile.load(settings.tokens_file)
    peer_token = settings.peer_token or tokens.first_of_kind("peer")
    if not peer_token:
        raise SystemExit(
            "device service: no peer token (set KEYSLOT_PEER_TOKEN or add a peer "
            "token to the tokens file)"
        )
    license_peer = LicensePeer(
        settings.license_address,
        peer_token,
        settings.license_deadline,
        clock=clock,
        cache_size=settings.code_cache_size,
        cache_max_age=settings.code_cache_max_age,
    )
    api = DeviceApi(store=store, clock=clock, license=license_peer, settings=settings)
    running = create_server(
        address=settings.listen,
        domain=DOMAIN,
        resolver=auth.chain(tokens.resolve, store.resolve_credential),
        register=lambda server: pb_grpc.add_DeviceServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        workers=settings.workers,
        log_calls=settings.log_calls,
    )
    # Recovery at start-up runs in the sweeper's first pass, so an unreachable
    # license service does not delay serving (H4).
    retention = store.retention_rules(timedelta(hours=settings.retention_hours))
    pruner = Pruner(store, (*retention, api.connection_limits.prune_rule()))
    sweeper = Sweeper(
        api.handshakes, settings.sweep_interval, [api.reserves.take_over_due], pruner=pruner
    )
    sweeper.start()
    running.on_stop.extend([sweeper.stop, license_peer.close, store.close])
    return running
