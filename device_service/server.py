"""The composition root of the device service process: builds every object."""

from __future__ import annotations

import logging
from datetime import timedelta

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc

from device_service.api import DeviceApi
from device_service.errors import DOMAIN
from device_service.license_client import GrpcLicensePeer
from device_service.settings import Settings
from device_service.store import DeviceStore
from device_service.sweeper import Sweeper
from keyslot_server import auth
from keyslot_server.clock import Clock, make_clock
from keyslot_server.retention import Pruner
from keyslot_server.server import Running, create_server

SERVICE_NAME = "keyslot.device.v1.DeviceService"
log = logging.getLogger("keyslot.device")


def build(settings: Settings, clock: Clock | None = None) -> Running:
    """Opens the store, connects to the license service and starts the server."""
    clock = clock or make_clock(settings.test_clock_file)
    store = DeviceStore(settings.db, check_in_cache_size=settings.check_in_cache_size)
    tokens = auth.TokenFile.load(settings.tokens_file)
    peer_token = settings.peer_token or tokens.first_of_kind("peer")
    if not peer_token:
        raise SystemExit(
            "device service: no peer token (set KEYSLOT_DEVICE_PEER_TOKEN or add a peer "
            "token to the tokens file)"
        )
    license_peer = GrpcLicensePeer(
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
