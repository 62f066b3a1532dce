"""FieldViolation: one bad field of a request (google.rpc.BadRequest), for the client
and the services alike. Kept apart from keyslot.errors so that pure server rules can
name fields without importing gRPC."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its path ("terms.max_devices")."""

    field: str
    description: str
