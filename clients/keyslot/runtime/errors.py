"""One error type per service and its translation into the gRPC rich error model.

A service raises ``ServiceError`` subclasses (LicenseError, DeviceError) from
anywhere below the servicer; the interceptor in ``keyslot.runtime.server``
turns them into a ``google.rpc.Status`` with exactly one ``ErrorInfo`` (and a
``BadRequest`` for INVALID_ARGUMENT). No RPC repeats try/except.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

_LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
# gRPC drops a call whose trailers pass its metadata limit (8-16 KiB) with RESOURCE_EXHAUSTED
# and no rich status: a refusal names at most this many fields, in this many characters each.
MAX_VIOLATIONS = 10
MAX_DESCRIPTION = 100


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its path ("terms.max_devices")."""

    field: str
    description: str


class ServiceError(Exception):
    """A refusal with a stable reason. Subclasses set DOMAIN and REASONS.

    ``reason`` must be a value of the service's ErrorReason enum (without the
    ``ERROR_REASON_`` prefix), so every reason a client can see is in the proto.
    """

    DOMAIN: ClassVar[str] = ""
    # Names (without prefix) of the service's ErrorReason enum values.
    REASONS: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        reason: str,
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        *,
        field: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
        retry_delay: timedelta | None = None,
    ) -> None:
        if self.REASONS and reason not in self.REASONS:
            raise ValueError(f"reason {reason!r} is not in {type(self).__name__}.REASONS")
        meta = dict(metadata or {})
        for key in meta:
            if not _LOWER_CAMEL.match(key):
                raise ValueError(f"ErrorInfo metadata key {key!r} is not lowerCamelCase")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.field = field
        self.metadata = meta
        self.violations = list(violations or [])
        # RESOURCE_EXHAUSTED (S3) tells the caller when to retry: google.rpc.RetryInfo.
        self.retry_delay = retry_delay
        if field and not self.violations and code == grpc.StatusCode.INVALID_ARGUMENT:
            self.violations = [FieldViolation(field, message)]
        self.violations = [
            FieldViolation(_clip(v.field), _clip(v.description))
            for v in self.violations[:MAX_VIOLATIONS]
        ]

    # Constructors for the common families keep call sites short.
    @classmethod
    def invalid(cls, field: str, description: str) -> ServiceError:
        """INVALID_ARGUMENT naming the field (S4)."""
        return cls(
            "INVALID_ARGUMENT",
            _clip(f"{field}: {description}"),
            grpc.StatusCode.INVALID_ARGUMENT,
            field=field,
            metadata={"field": field},
        )

    @classmethod
    def invalid_many(cls, violations: list[FieldViolation]) -> ServiceError:
        """INVALID_ARGUMENT naming several fields at once."""
        first = violations[0]
        message = "; ".join(_clip(f"{v.field}: {v.description}") for v in violations[:3])
        if len(violations) > 3:
            message += f"; and {len(violations) - 3} more"
        return cls(
            "INVALID_ARGUMENT",
            message,
            grpc.StatusCode.INVALID_ARGUMENT,
            field=first.field,
            metadata={"field": first.field},
            violations=violations,
        )

    @classmethod
    def not_found(cls, reason: str, message: str, **metadata: str) -> ServiceError:
        """NOT_FOUND with a reason such as CODE_NOT_FOUND."""
        return cls(reason, message, grpc.StatusCode.NOT_FOUND, metadata=metadata)

    @classmethod
    def refused(cls, reason: str, message: str, **metadata: str) -> ServiceError:
        """FAILED_PRECONDITION: a rule refusal (H5)."""
        return cls(reason, message, grpc.StatusCode.FAILED_PRECONDITION, metadata=metadata)

    @classmethod
    def denied(cls, message: str = "the caller may not do this", **metadata: str) -> ServiceError:
        """PERMISSION_DENIED (S2)."""
        return cls(
            "PERMISSION_DENIED", message, grpc.StatusCode.PERMISSION_DENIED, metadata=metadata
        )

    @classmethod
    def rate_limited(
        cls, reason: str, message: str, retry_after: timedelta, **metadata: str
    ) -> ServiceError:
        """RESOURCE_EXHAUSTED with when to retry (S3): a RetryInfo and ``retryAfterSeconds``,
        both in whole seconds, rounded up so a retry at that time is let through."""
        seconds = max(1, math.ceil(retry_after.total_seconds()))
        return cls(
            reason,
            message,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            metadata={"retryAfterSeconds": str(seconds), **metadata},
            retry_delay=timedelta(seconds=seconds),
        )

    def to_status(self) -> status_pb2.Status:
        """The rich status: exactly one ErrorInfo, plus BadRequest when invalid."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=self.DOMAIN, metadata=self.metadata
        )
        details = [_pack(info)]
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            details.append(_pack(bad))
        if self.retry_delay is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromTimedelta(self.retry_delay)
            details.append(_pack(retry))
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=details)


def internal_status(domain: str) -> status_pb2.Status:
    """INTERNAL with no detail of what went wrong inside."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=domain)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error", details=[_pack(info)]
    )


def unauthenticated_status(domain: str, message: str) -> status_pb2.Status:
    """UNAUTHENTICATED with its ErrorInfo (S1)."""
    info = error_details_pb2.ErrorInfo(reason="UNAUTHENTICATED", domain=domain)
    return status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message, details=[_pack(info)])


def reasons_of(enum_descriptor) -> frozenset[str]:  # type: ignore[no-untyped-def]
    """The reason strings of a generated ErrorReason enum (prefix removed)."""
    prefix = "ERROR_REASON_"
    return frozenset(
        v.name[len(prefix) :] for v in enum_descriptor.values if v.name != prefix + "UNSPECIFIED"
    )


def _pack(message) -> any_pb2.Any:  # type: ignore[no-untyped-def]
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass
class ErrorInfoView:
    """The parts of a rich status a caller switches on (used by tests and clients)."""

    code: grpc.StatusCode
    reason: str
    domain: str
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    message: str = ""
