"""Settings and wiring of the device service process."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc
from keyslot.runtime import auth
from keyslot.runtime.clock import Clock, make_clock
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
    grace: float = 5.0
    workers: int = 16
    sweep_interval: float = 30.0
    test_clock_file: str | None = None
    log_calls: bool = True
    code_cache_size: int = 20_000
    check_in_cache_size: int = CHECK_IN_CACHE_SIZE
    code_cache_max_age: float = 60.0

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
        a = parser.parse_args(argv)
        return cls(
            listen=a.listen,
            db=a.db,
            tokens_file=a.tokens_file,
            license_address=a.license_address,
            peer_token=a.peer_token,
            license_deadline=a.license_deadline,
            delivery_window_hours=a.delivery_window_hours,
            connection_code_ttl=a.connection_code_ttl,
            grace=a.grace,
            workers=a.workers,
            sweep_interval=a.sweep_interval,
            test_clock_file=a.test_clock_file,
            log_calls=truthy(a.log_calls),
            code_cache_size=a.code_cache_size,
            code_cache_max_age=a.code_cache_max_age,
            check_in_cache_size=a.check_in_cache_size,
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
    sweeper = Sweeper(api.handshakes, settings.sweep_interval, [api.reserves.take_over_due])
    sweeper.start()
    running.on_stop.extend([sweeper.stop, license_peer.close, store.close])
    return running
