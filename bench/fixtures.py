"""Bench data set up through the services' real RPCs (scenarios 2-5)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from bench.load import error_key, open_channel

PRODUCT = "bench"
APP_VERSION = "10.0.0"
REGION = "FI"
DAY = 86400


class Unavailable(Exception):
    """A set-up RPC failed: the scenario is reported as not available."""


@dataclass
class Device:
    device_id: str
    credential: str
    account_id: str


class Api:
    """Channels to both services and the set-up calls the scenarios need.

    ``tokens`` are the bench's callers' tokens by kind (Servers.tokens); the
    channels trust ``ca`` (TLS), or are plaintext when it is None."""

    def __init__(
        self, license_address: str, device_address: str, tokens: dict[str, str], ca: bytes | None
    ) -> None:
        self.tokens = tokens
        self._channels = [open_channel(license_address, ca), open_channel(device_address, ca)]
        self.license = lpb_grpc.LicenseServiceStub(self._channels[0])
        self.device = dpb_grpc.DeviceServiceStub(self._channels[1])

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def call(self, stub: Any, method: str, request: Any, token: str | None) -> Any:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            return getattr(stub, method)(request, timeout=30, metadata=metadata)
        except grpc.RpcError as err:
            raise Unavailable(f"{method}: {error_key(err)}") from None

    def lic(self, method: str, request: Any, token: str | None = None) -> Any:
        """A LicenseService call; as the provider unless ``token`` is given."""
        return self.call(self.license, method, request, token or self.tokens["provider"])

    def dev(self, method: str, request: Any, token: str | None = None) -> Any:
        """A DeviceService call; as the portal unless ``token`` is given."""
        return self.call(self.device, method, request, token or self.tokens["portal"])

    # ------------------------------------------------------------ license side

    def product(self) -> None:
        """The bench product: released everywhere, any app version."""
        try:
            self.lic(
                "CreateProduct",
                lpb.CreateProductRequest(
                    product=lpb.Product(product_id=PRODUCT, display_name="Bench product")
                ),
            )
        except Unavailable as exc:
            if "PRODUCT_EXISTS" not in str(exc):
                raise

    def issue(
        self, count: int, *, days: float = 365, hours: int = 0, max_devices: int = 1
    ) -> list[str]:
        """Issues ``count`` fixed-term LICENSE codes (not auto-renewing: no L6 refusals)."""
        codes: list[str] = []
        while len(codes) < count:
            n = min(1000, count - len(codes))
            terms = lpb.CodeTerms(
                product_id=PRODUCT,
                kind=lpb.CODE_KIND_LICENSE,
                coverage=lpb.COVERAGE_UPDATES,
                duration=Duration(seconds=int(days * DAY) + hours * 3600),
                grace_period=Duration(seconds=30 * DAY),
                max_devices=max_devices,
                slot_kind=lpb.SLOT_KIND_PER_DEVICE,
                purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
                provider_name="shop",
            )
            reply = self.lic(
                "IssueCodes",
                lpb.IssueCodesRequest(terms=terms, count=n, request_id=uuid.uuid4().hex),
            )
            codes += [c.code for c in reply.codes]
        return codes

    # ------------------------------------------------------------ device side

    def account(self) -> tuple[str, str]:
        reply = self.dev(
            "CreateAccount",
            dpb.CreateAccountRequest(
                account=dpb.Account(display_name="bench account", kind=dpb.ACCOUNT_KIND_PERSONAL)
            ),
        )
        return reply.account.account_id, reply.account_credential

    def connect(self, account_id: str, count: int, parallel: int = 8) -> list[Device]:
        """Connects ``count`` devices to the account (connection code + ConnectDevice each)."""

        def one(i: int) -> Device:
            code = self.dev(
                "CreateConnectionCode", dpb.CreateConnectionCodeRequest(account_id=account_id)
            ).connection_code
            request = dpb.ConnectDeviceRequest(
                connection_code=code,
                platform=dpb.PLATFORM_LINUX,
                app_version=APP_VERSION,
                region=REGION,
                display_name=f"bench device {i}",
            )
            # The app has no credential yet: the connection code is its bearer token.
            reply = self.dev("ConnectDevice", request, token=code)
            return Device(reply.device.device_id, reply.device_credential, account_id)

        return self.parallel(one, range(count), parallel)

    def add_subscriptions(self, account_id: str, codes: list[str], parallel: int = 8) -> None:
        def one(code: str) -> None:
            self.dev(
                "AddSubscription", dpb.AddSubscriptionRequest(account_id=account_id, code=code)
            )

        self.parallel(one, codes, parallel)

    def activate(self, device: Device, code: str) -> Any:
        return self.dev(
            "ActivateDevice",
            dpb.ActivateDeviceRequest(code=code, request_id=uuid.uuid4().hex),
            token=device.credential,
        )

    def check_in(self, device: Device) -> Any:
        return self.dev("CheckIn", dpb.CheckInRequest(), token=device.credential)

    @staticmethod
    def parallel(fn: Any, items: Any, workers: int) -> list[Any]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))
