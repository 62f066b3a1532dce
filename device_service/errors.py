"""DeviceError: the device service's one error type (domain device.keyslot)."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb

from keyslot_server.errors import Code, ServiceError, reasons_of

DOMAIN = "device.keyslot"


class DeviceError(ServiceError):
    """A refusal of the device service; its reason is an ErrorReason name."""

    DOMAIN = DOMAIN
    REASONS = reasons_of(pb.ErrorReason.DESCRIPTOR)

    # The license service's own reason when this error relays one (see license_client).
    license_reason: str = ""

    @property
    def transient(self) -> bool:
        """The outcome is unknown (license unreachable): retry, do not record as an answer."""
        return self.reason in ("LICENSE_SERVICE_UNAVAILABLE", "INTERNAL")

    @property
    def final(self) -> bool:
        """The request's answer, recorded for its request id (H1): neither transient nor
        a rate limit (S3), after which the same request may pass once the window moved."""
        return not self.transient and self.code != Code.RESOURCE_EXHAUSTED
