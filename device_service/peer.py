"""What the device service needs from the license service, without gRPC.

The domain (Handshakes, Reserves, PerUserCodes, the servicers) is written
against ``LicensePeer``; server.py builds the gRPC one
(``license_client.GrpcLicensePeer``), the unit tests an in-memory fake
(``tests/unit/fakes.py``). Both report failures the same way, with the
constructors below: a refusal of the license service is a DeviceError with
the same reason when a device caller may read it (INTERNAL otherwise), and
``license_reason`` always keeps the license service's own reason
(GRANT_COMMITTED, GRANT_NOT_FOUND, ...) for the handshake; an unreachable
license service is LICENSE_SERVICE_UNAVAILABLE, whose outcome is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from keyslot.fields import FieldViolation
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service.errors import DeviceError
from keyslot_server.errors import Code

# Reasons the device service never relays: the peer's own authentication, a fault.
HIDDEN = ("INTERNAL", "UNAUTHENTICATED", "PERMISSION_DENIED")


class LicensePeer(Protocol):
    """The license service's calls the device service's use cases make.

    Every call raises DeviceError: ``refused`` for an answer, ``unavailable``
    when no answer came (the call may or may not have taken effect).
    """

    def get_code(self, code: str, on_behalf_of: str = "") -> lpb.Code:
        """One code (CODE_NOT_FOUND if unknown). ``on_behalf_of`` names the end caller
        who typed it (S3): that look-up counts on its budget and is never cached."""
        ...

    def batch_get_codes(self, codes: list[str]) -> list[lpb.Code]:
        """The codes found, in the order asked; unknown ones are left out."""
        ...

    def get_product(self, product_id: str) -> lpb.Product:
        """A product: its regions and app-version range (D5, D11)."""
        ...

    # The handshake (§5): each mutating call carries a request id, so a repeat is
    # the same request and gets the first answer (H1).
    def prepare_grant(self, request: lpb.PrepareGrantRequest) -> lpb.Grant:
        """Step 1: checks the code for the purpose and device, holds it until
        ``request.expire_time`` (H2); the grant carries the code's details."""
        ...

    def commit_grant(self, grant_id: str, request_id: str, app_version: str = "") -> lpb.Grant:
        """Step 2: re-checks the code (H3) and activates it (L1); GRANT_EXPIRED
        after the grant's deadline, GRANT_ABORTED after an abort."""
        ...

    def abort_grant(self, grant_id: str, request_id: str, reason: str) -> lpb.Grant:
        """Abandons a PREPARED grant (an aborted one stays so); GRANT_COMMITTED after
        a commit, GRANT_NOT_FOUND for an unknown grant."""
        ...

    def get_grant(self, grant_id: str) -> lpb.Grant:
        """A grant as the license side holds it now."""
        ...


def unavailable() -> DeviceError:
    """No answer from the license service: retry (``DeviceError.transient``)."""
    return DeviceError(
        "LICENSE_SERVICE_UNAVAILABLE",
        "the license service did not answer in time; retry",
        Code.UNAVAILABLE,
    )


def refused(
    reason: str,
    message: str,
    code: Code,
    *,
    metadata: Mapping[str, str] | None = None,
    violations: list[FieldViolation] | None = None,
    retry_delay: timedelta | None = None,
) -> DeviceError:
    """A refusal of the license service as the device service's callers see it."""
    if reason in DeviceError.REASONS and reason not in HIDDEN:
        relayed = DeviceError(
            reason,
            message or reason,
            code,
            field=violations[0].field if violations else None,
            metadata=metadata,
            violations=violations,
            retry_delay=retry_delay,  # S3: when the caller may look up again
        )
    else:
        relayed = DeviceError("INTERNAL", "internal error", Code.INTERNAL)
    # Readable by the handshake even when a device caller never sees it.
    relayed.license_reason = reason
    return relayed
