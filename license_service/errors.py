"""LicenseError: the license service's one error type (domain license.keyslot)."""

from __future__ import annotations

from google.rpc import error_details_pb2, status_pb2
from keyslot.license.v1 import license_service_pb2 as pb

from keyslot_server.errors import Code, ServiceError, reasons_of

DOMAIN = "license.keyslot"


class LicenseError(ServiceError):
    """A refusal of the license service; its reason is an ErrorReason name."""

    DOMAIN = DOMAIN
    REASONS = reasons_of(pb.ErrorReason.DESCRIPTOR)


class ReplayedError(LicenseError):
    """A first refusal replayed identically for a retried request id (H1)."""

    def __init__(self, status: status_pb2.Status) -> None:
        reason = "INTERNAL"
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
        code = status.code if status.code in Code._value2member_map_ else Code.UNKNOWN
        super().__init__(reason, status.message, Code(code))
        self._status = status

    def to_status(self) -> status_pb2.Status:
        return self._status
