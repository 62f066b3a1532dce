"""Settings and wiring of the license service process."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc
from keyslot.runtime import auth
from keyslot.runtime.budget import FailureBudget
from keyslot.runtime.clock import Clock, make_clock
from keyslot.runtime.retention import (
    DEFAULT_RETENTION_HOURS,
    Pruner,
    add_retention_flag,
    check_retention_hours,
)
from keyslot.runtime.server import Running, create_server
from keyslot.runtime.settings import add_common_flags, truthy

from license_service.api import LicenseApi
from license_service.errors import DOMAIN
from license_service.store import LicenseStore
from license_service.sweeper import Sweeper

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
    lookup_budget: int = 20
    lookup_window: float = 60.0
    # Request ids and other history the rules no longer read (README "Retention").
    retention_hours: float = DEFAULT_RETENTION_HOURS

    def __post_init__(self) -> None:
        check_retention_hours(self.retention_hours)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        parser = argparse.ArgumentParser(prog="python -m license_service")
        add_common_flags(parser, cls.listen, cls.db)
        env = os.environ.get
        parser.add_argument(
            "--lookup-budget",
            type=int,
            default=int(env("KEYSLOT_LOOKUP_BUDGET", str(cls.lookup_budget))),
            help="failed code look-ups a caller (for the device service: each account it"
            " acts for) may make per window, counted in the database; 0 = no limit"
            " (KEYSLOT_LOOKUP_BUDGET, S3)",
        )
        parser.add_argument(
            "--lookup-window",
            type=float,
            default=float(env("KEYSLOT_LOOKUP_WINDOW", str(cls.lookup_window))),
            help="seconds of the rolling failed look-up window (KEYSLOT_LOOKUP_WINDOW, S3)",
        )
        add_retention_flag(parser)
        a = parser.parse_args(argv)
        if a.lookup_window <= 0:
            parser.error("--lookup-window must be a positive number of seconds")
        try:
            check_retention_hours(a.retention_hours)
        except ValueError as err:
            parser.error(str(err))  # exits 2 with the usage and the reason
        return cls(
            listen=a.listen,
            db=a.db,
            tokens_file=a.tokens_file,
            grace=a.grace,
            workers=a.workers,
            sweep_interval=a.sweep_interval,
            test_clock_file=a.test_clock_file,
            log_calls=truthy(a.log_calls),
            lookup_budget=a.lookup_budget,
            lookup_window=a.lookup_window,
            retention_hours=a.retention_hours,
        )


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, starts the server and the sweeper; returns the running server."""
    clock = clock or make_clock(settings.test_clock_file)
    store = LicenseStore(settings.db)
    tokens = auth.TokenFile.load(settings.tokens_file)
    window = timedelta(seconds=settings.lookup_window)
    lookups = FailureBudget(store, settings.lookup_budget, window)  # S3, in the database
    api = LicenseApi(store=store, clock=clock, lookups=lookups)
    running = create_server(
        address=settings.listen,
        domain=DOMAIN,
        resolver=tokens.resolve,
        register=lambda server: pb_grpc.add_LicenseServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        workers=settings.workers,
        log_calls=settings.log_calls,
    )
    retention = store.retention_rules(timedelta(hours=settings.retention_hours))
    pruner = Pruner(store, (*retention, lookups.prune_rule()))
    sweeper = Sweeper(api.ops, clock, settings.sweep_interval, pruner)
    sweeper.start()
    # The sweeper stops before the store closes under it.
    running.on_stopping.append(store.feed.close)  # watches would hold the grace period
    running.on_stop.extend([sweeper.stop, store.close])
    return running
