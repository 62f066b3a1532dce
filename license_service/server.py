"""Settings and wiring of the license service process."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc
from keyslot.runtime import auth
from keyslot.runtime.clock import Clock, make_clock
from keyslot.runtime.server import Running, create_server
from keyslot.runtime.settings import add_common_flags, truthy

from license_service.api import LicenseApi
from license_service.errors import DOMAIN
from license_service.store import LicenseStore

SERVICE_NAME = "keyslot.license.v1.LicenseService"
log = logging.getLogger("keyslot.license")


@dataclass(frozen=True)
class Settings:
    """Everything the license service is configured with."""

    listen: str = "127.0.0.1:50051"
    db: str = "var/license.db"
    tokens_file: str = "var/tokens.json"
    grace: float = 5.0
    workers: int = 16
    sweep_interval: float = 30.0
    test_clock_file: str | None = None
    log_calls: bool = True

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        parser = argparse.ArgumentParser(prog="python -m license_service")
        add_common_flags(parser, cls.listen, cls.db)
        a = parser.parse_args(argv)
        return cls(
            listen=a.listen,
            db=a.db,
            tokens_file=a.tokens_file,
            grace=a.grace,
            workers=a.workers,
            sweep_interval=a.sweep_interval,
            test_clock_file=a.test_clock_file,
            log_calls=truthy(a.log_calls),
        )


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, starts the server and the sweeper; returns the running server."""
    clock = clock or make_clock(settings.test_clock_file)
    store = LicenseStore(settings.db)
    tokens = auth.TokenFile.load(settings.tokens_file)
    api = LicenseApi(store=store, clock=clock)
    running = create_server(
        address=settings.listen,
        domain=DOMAIN,
        resolver=tokens.resolve,
        register=lambda server: pb_grpc.add_LicenseServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        workers=settings.workers,
        log_calls=settings.log_calls,
    )
    running.on_stop.append(store.close)
    return running
