"""DeviceService servicer: composes the per-area mixins (proto <-> domain only).

Each area is a mixin over ``ApiBase`` (api_accounts, api_devices,
api_activation, api_deliveries, api_reserve) delegating to its use-case
object; server.py builds those (the composition root) and hands them in.
"""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2_grpc as pb_grpc

from device_service.access import Access
from device_service.accounts import Accounts
from device_service.activation import Activation
from device_service.api_accounts import AccountsApi
from device_service.api_activation import ActivationApi
from device_service.api_deliveries import DeliveriesApi
from device_service.api_devices import DevicesApi
from device_service.api_reserve import ReserveApi
from device_service.deliveries import Deliveries
from device_service.devices import Devices
from device_service.license_keys import LicenseKeys


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
        self,
        *,
        access: Access,
        accounts: Accounts,
        devices: Devices,
        activation: Activation,
        deliveries: Deliveries,
        license_keys: LicenseKeys,
    ) -> None:
        self.access = access
        self.accounts = accounts
        self.devices = devices
        self.activation = activation
        self.deliveries = deliveries
        self.license_keys = license_keys
