"""DeviceService servicer: composes the per-area mixins (proto <-> domain only).

Each area is a mixin over ``ApiBase`` (api_accounts, api_devices,
api_activation, api_deliveries). A new area (reserve codes, issue 6) adds a
mixin and registers its handshake purpose in ``__init__``.
"""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc

from device_service.api_accounts import AccountsApi
from device_service.api_activation import ActivationApi, activate_hooks
from device_service.api_deliveries import DeliveriesApi, send_hooks
from device_service.api_devices import DevicesApi
from device_service.api_reserve import ReserveApi
from device_service.connection_limits import ConnectionLimits
from device_service.handshake import Handshakes
from device_service.peer import LicensePeer
from device_service.per_user import PerUserCodes, account_hooks
from device_service.reserve import Reserves, reserve_hooks
from device_service.settings import Settings
from device_service.store import DeviceStore
from keyslot_server.clock import Clock


class DeviceApi(
    AccountsApi,
    DevicesApi,
    ActivationApi,
    DeliveriesApi,
    ReserveApi,
    pb_grpc.DeviceServiceServicer,
):
    """The gRPC face of the device service."""

    def __init__(
        self, store: DeviceStore, clock: Clock, license: LicensePeer, settings: Settings
    ) -> None:
        self.store = store
        self.clock = clock
        self.license = license
        self.settings = settings
        self.handshakes = Handshakes(store, license, clock)
        self.handshakes.register("ACTIVATE", activate_hooks(store))
        self.handshakes.register("SEND", send_hooks(store))
        self.handshakes.register("RESERVE", reserve_hooks(store))
        self.handshakes.register("ACCOUNT", account_hooks(store))
        self.reserves = Reserves(store, license, clock, self.handshakes)
        self.connection_limits = ConnectionLimits(store, clock, settings)  # S3 for D1
        self.per_user = PerUserCodes(store, license, clock, self.handshakes)
