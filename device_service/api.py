"""DeviceService servicer: converts proto ⇄ domain and delegates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc
from keyslot.runtime.clock import Clock

from device_service.license_client import LicensePeer
from device_service.store import DeviceStore

if TYPE_CHECKING:
    from device_service.server import Settings


class DeviceApi(pb_grpc.DeviceServiceServicer):
    """The gRPC face of the device service."""

    def __init__(
        self, store: DeviceStore, clock: Clock, license: LicensePeer, settings: Settings
    ) -> None:
        self.store = store
        self.clock = clock
        self.license = license
        self.settings = settings
