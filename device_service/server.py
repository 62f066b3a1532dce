"""The composition root of the device service process: builds every object."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import grpc
from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc

from device_service.access import Access
from device_service.accounts import Accounts
from device_service.activation import Activation, activate_hooks
from device_service.api import DeviceApi
from device_service.connection_limits import ConnectionLimits
from device_service.deliveries import Deliveries, send_hooks
from device_service.devices import Devices
from device_service.errors import DOMAIN
from device_service.handshake import Handshakes
from device_service.license_client import GrpcLicensePeer
from device_service.license_keys import LicenseKeys
from device_service.peer import LicensePeer
from device_service.per_user import PerUserCodes, account_hooks
from device_service.reserve import Reserves, reserve_hooks
from device_service.settings import Settings
from device_service.store import DeviceStore
from device_service.sweeper import Sweeper
from keyslot_server import auth, otel, tls, transport
from keyslot_server.clock import Clock, make_clock
from keyslot_server.metrics import Metrics, metrics_for
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.retention import Pruner
from keyslot_server.server import Running, create_server
from keyslot_server.tokens import read_credential

SERVICE_NAME = "keyslot.device.v1.DeviceService"
log = logging.getLogger("keyslot.device")


@dataclass(frozen=True)
class Domain:
    """The device service's domain objects over one store and one license peer."""

    store: DeviceStore
    handshakes: Handshakes
    reserves: Reserves
    per_user: PerUserCodes
    connection_limits: ConnectionLimits
    api: DeviceApi


def build_domain(
    store: DeviceStore,
    clock: Clock,
    license: LicensePeer,
    settings: Settings,
    observer: Observer = NOBODY,
) -> Domain:
    """Builds Handshakes (with every purpose), the use cases and the servicer over them."""
    handshakes = Handshakes(store, license, clock, observer)
    handshakes.register("ACTIVATE", activate_hooks(store))
    handshakes.register("SEND", send_hooks(store))
    handshakes.register("RESERVE", reserve_hooks(store))
    handshakes.register("ACCOUNT", account_hooks(store))
    reserves = Reserves(store, license, clock, handshakes)
    per_user = PerUserCodes(store, license, clock, handshakes)
    connection_limits = ConnectionLimits(store, clock, settings, observer)  # S3 for D1
    api = DeviceApi(
        access=Access(store),
        accounts=Accounts(store, license, clock, settings, per_user),
        devices=Devices(
            store, license, clock, settings, handshakes, reserves, per_user, connection_limits
        ),
        activation=Activation(store, license, clock, handshakes),
        deliveries=Deliveries(store, license, clock, settings, handshakes, per_user),
        license_keys=LicenseKeys(store, license, clock, reserves),
    )
    return Domain(store, handshakes, reserves, per_user, connection_limits, api)


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, connects to the license service and starts the server.

    Every configured file is checked first: a ConfigError leaves no database behind."""
    clock = clock or make_clock(settings.test_clock_file)
    metrics = metrics_for(settings.metrics_listen)
    observer = metrics or NOBODY
    material = transport.server_tls(settings.tls_cert, settings.tls_key)
    if material is None:
        transport.require_plaintext_allowed([settings.listen], settings.plaintext, "device")
    if settings.license_ca is None:
        transport.require_plaintext_allowed(
            [settings.license_address], settings.plaintext, "device (link to license)"
        )

    def link_credentials() -> grpc.ChannelCredentials | None:
        """The peer link's TLS material, read again on SIGHUP (S5)."""
        if settings.license_ca is None:
            return None
        return tls.channel_credentials(
            settings.license_ca, settings.license_cert, settings.license_key
        )

    link = link_credentials()  # checked now: a bad file stops the start
    tokens = auth.TokenFile.load(settings.tokens_file, clock)
    peer_token = settings.peer_token or read_credential(settings.peer_credentials, "peer")
    # Off unless the OTEL_* variables ask for it; before the server and the license link.
    stop_tracing = otel.setup("keyslot-device")
    store = DeviceStore(
        settings.db,
        check_in_cache_size=settings.check_in_cache_size,
        observer=observer,
        units=settings.db_units,
    )
    license_peer = GrpcLicensePeer(
        settings.license_address,
        peer_token,
        settings.license_deadline,
        clock=clock,
        cache_size=settings.code_cache_size,
        cache_max_age=settings.code_cache_max_age,
        credentials=link,
        observer=observer,
    )
    domain = build_domain(store, clock, license_peer, settings, observer)
    # Before the gRPC port: a taken metrics port stops the start with nothing serving.
    stop_metrics = _serve_metrics(metrics, store, settings.metrics_listen)
    running = create_server(
        listeners=[transport.public_listener(settings.listen, material)],
        domain=DOMAIN,
        resolver=auth.chain(tokens.resolve, store.resolve_credential),
        register=lambda server: pb_grpc.add_DeviceServiceServicer_to_server(domain.api, server),
        service_names=[SERVICE_NAME],
        workers=settings.workers,
        log_calls=settings.log_calls,
        outer_interceptors=[metrics.interceptor] if metrics else [],
    )
    # Recovery at start-up runs in the sweeper's first pass, so an unreachable
    # license service does not delay serving (H4).
    retention = store.retention_rules(timedelta(hours=settings.retention_hours))
    pruner = Pruner(store, (*retention, domain.connection_limits.prune_rule()))
    sweeper = Sweeper(
        domain.handshakes,
        settings.sweep_interval,
        [domain.reserves.take_over_due],
        pruner=pruner,
        observer=observer,
    )
    sweeper.start()
    running.on_reload.append(tokens.reload)
    if material is not None:
        running.on_reload.append(material.reload)
    running.on_reload.append(lambda: license_peer.reconnect(link_credentials()))
    running.on_stop.extend(
        [stop_metrics, sweeper.stop, license_peer.close, store.close, stop_tracing]
    )
    return running


def _serve_metrics(metrics: Metrics | None, store: DeviceStore, address: str) -> Callable[[], None]:
    """Adds the device service's domain gauges and serves /metrics; returns the stop."""
    if metrics is None:
        return lambda: None
    metrics.gauge("keyslot_slots_used", "Slots held, PENDING or ACTIVE (D3).", store.held_slots)
    metrics.gauge("keyslot_devices_connected", "Connected devices.", store.connected_devices)
    metrics.gauge(
        "keyslot_deliveries_pending",
        "Sent subscriptions waiting for their device (D4).",
        store.pending_deliveries,
    )
    metrics.gauge(
        "keyslot_reserves",
        "Reserves waiting for their take-over, and failed ones still shown (D8-D10).",
        store.live_reserves,
        label="state",
    )
    metrics.gauge(
        "keyslot_handshakes_unfinished",
        "Handshakes not yet ended, by step: what callers and recovery still drive (H4).",
        store.unfinished_steps,
        label="step",
    )
    return metrics.serve(address)
