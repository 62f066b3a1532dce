"""LicenseError: the license service's one error type (domain license.keyslot)."""

from __future__ import annotations

from keyslot.license.v1 import license_service_pb2 as pb

from keyslot_server.errors import ServiceError, reasons_of

DOMAIN = "license.keyslot"


class LicenseError(ServiceError):
    """A refusal of the license service; its reason is an ErrorReason name."""

    DOMAIN = DOMAIN
    REASONS = reasons_of(pb.ErrorReason.DESCRIPTOR)
