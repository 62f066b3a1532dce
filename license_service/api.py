"""LicenseService servicer: converts proto ⇄ domain and delegates."""

from __future__ import annotations

from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc
from keyslot.runtime.clock import Clock

from license_service.store import LicenseStore


class LicenseApi(pb_grpc.LicenseServiceServicer):
    """The gRPC face of the license service."""

    def __init__(self, store: LicenseStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
