"""The composition root of the license service process: builds every object."""

from __future__ import annotations

import logging
from datetime import timedelta

from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc

from keyslot_server import auth
from keyslot_server.budget import FailureBudget
from keyslot_server.clock import Clock, make_clock
from keyslot_server.retention import Pruner
from keyslot_server.server import Running, create_server
from license_service.api import LicenseApi
from license_service.errors import DOMAIN
from license_service.lookups import CodeLookups
from license_service.ops import LicenseOps
from license_service.request_log import RequestLog
from license_service.settings import Settings
from license_service.store import LicenseStore
from license_service.sweeper import Sweeper

SERVICE_NAME = "keyslot.license.v1.LicenseService"
log = logging.getLogger("keyslot.license")


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, starts the server and the sweeper; returns the running server."""
    clock = clock or make_clock(settings.test_clock_file)
    store = LicenseStore(settings.db)
    tokens = auth.TokenFile.load(settings.tokens_file)
    window = timedelta(seconds=settings.lookup_window)
    lookups = FailureBudget(store, settings.lookup_budget, window)  # S3, in the database
    ops = LicenseOps(store)
    api = LicenseApi(
        ops=ops,
        lookups=CodeLookups(ops, lookups),
        requests=RequestLog(store, clock),
        feed=store.feed,
        clock=clock,
    )
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
    sweeper = Sweeper(ops, clock, settings.sweep_interval, pruner)
    sweeper.start()
    # The sweeper stops before the store closes under it.
    running.on_stopping.append(store.feed.close)  # watches would hold the grace period
    running.on_stop.extend([sweeper.stop, store.close])
    return running
