"""The composition root of the license service process: builds every object."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc

from keyslot_server import auth, otel, transport
from keyslot_server.budget import FailureBudget
from keyslot_server.clock import Clock, make_clock
from keyslot_server.config import ConfigError
from keyslot_server.metrics import Metrics, metrics_for
from keyslot_server.observe import NOBODY
from keyslot_server.retention import Pruner
from keyslot_server.server import Listener, Running, create_server
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
    """Opens the store, starts the server and the sweeper; returns the running server.

    Every configured file is checked first: a ConfigError leaves no database behind."""
    clock = clock or make_clock(settings.test_clock_file)
    metrics = metrics_for(settings.metrics_listen)
    observer = metrics or NOBODY
    material = transport.server_tls(settings.tls_cert, settings.tls_key, settings.peer_ca)
    listeners = [transport.public_listener(settings.listen, material)]
    peer_check = None
    if material is None:
        if settings.peer_listen:
            raise ConfigError("--peer-listen", "the peer port is mutual TLS: give --tls-cert")
        transport.require_plaintext_allowed([settings.listen], settings.plaintext, "license")
    else:
        # S5: with TLS on, the peer principal needs the peer's client certificate, which
        # only the peer port asks for (gRPC cannot make a client certificate optional).
        peer_check = transport.peer_certificate_check(settings.peer_uri)
        if settings.peer_listen:
            if not settings.peer_ca:
                raise ConfigError("--peer-listen", "needs --peer-ca to verify the peer")
            mutual = material.credentials(require_client_auth=True)
            listeners.append(Listener(settings.peer_listen, mutual, "peer port"))
    tokens = auth.TokenFile.load(settings.tokens_file, clock)
    # Off unless the OTEL_* variables ask for it; before the server, which takes its interceptor.
    stop_tracing = otel.setup("keyslot-license")
    store = LicenseStore(settings.db, observer=observer, units=settings.db_units)
    window = timedelta(seconds=settings.lookup_window)
    lookups = FailureBudget(store, settings.lookup_budget, window)  # S3, in the database
    ops = LicenseOps(store)
    api = LicenseApi(
        ops=ops,
        lookups=CodeLookups(ops, lookups, observer),
        requests=RequestLog(store, clock),
        feed=store.feed,
        clock=clock,
    )
    # Before the gRPC port: a taken metrics port stops the start with nothing serving.
    stop_metrics = _serve_metrics(metrics, store, clock, settings.metrics_listen)
    running = create_server(
        listeners=listeners,
        domain=DOMAIN,
        resolver=tokens.resolve,
        register=lambda server: pb_grpc.add_LicenseServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        workers=settings.workers,
        log_calls=settings.log_calls,
        peer_check=peer_check,
        outer_interceptors=[metrics.interceptor] if metrics else [],
    )
    running.on_reload.append(tokens.reload)
    if material is not None:
        running.on_reload.append(material.reload)
    retention = store.retention_rules(timedelta(hours=settings.retention_hours))
    pruner = Pruner(store, (*retention, lookups.prune_rule()))
    sweeper = Sweeper(ops, clock, settings.sweep_interval, pruner, observer)
    sweeper.start()
    # The sweeper stops before the store closes under it.
    running.on_stopping.append(store.feed.close)  # watches would hold the grace period
    running.on_stop.extend([stop_metrics, sweeper.stop, store.close, stop_tracing])
    return running


def _serve_metrics(
    metrics: Metrics | None, store: LicenseStore, clock: Clock, address: str
) -> Callable[[], None]:
    """Adds the license service's domain gauges and serves /metrics; returns the stop."""
    if metrics is None:
        return lambda: None
    metrics.gauge(
        "keyslot_codes",
        "Codes by phase (L2), from the stored expiry; read once a minute.",
        lambda: store.codes_by_phase(clock.now()),
        label="phase",
        every=60.0,
    )
    metrics.gauge(
        "keyslot_grants_prepared",
        "Grants prepared and not yet committed or aborted (H2).",
        store.prepared_grants,
    )
    return metrics.serve(address)
