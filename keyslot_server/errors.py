"""One error type per service and its translation into the gRPC rich error model.

A service raises ``ServiceError`` subclasses (LicenseError, DeviceError) from
anywhere below the servicer; the interceptor in ``keyslot_server.server``
turns them into a ``google.rpc.Status`` with exactly one ``ErrorInfo`` (and a
``BadRequest`` for INVALID_ARGUMENT). No RPC repeats try/except.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from keyslot.fields import FieldViolation

_LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
# gRPC drops a call whose trailers pass its metadata limit (8-16 KiB) with RESOURCE_EXHAUSTED
# and no rich status: a refusal names at most this many fields, in this many characters each.
MAX_VIOLATIONS = 10
MAX_DESCRIPTION = 100


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


class Code(enum.IntEnum):
    """Status codes (google.rpc.Code, the numbers gRPC uses): the domain raises with
    these, so it never imports gRPC; the interceptor hands the number to gRPC."""

    OK = code_pb2.OK
    CANCELLED = code_pb2.CANCELLED
    UNKNOWN = code_pb2.UNKNOWN
    INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
    DEADLINE_EXCEEDED = code_pb2.DEADLINE_EXCEEDED
    NOT_FOUND = code_pb2.NOT_FOUND
    ALREADY_EXISTS = code_pb2.ALREADY_EXISTS
    PERMISSION_DENIED = code_pb2.PERMISSION_DENIED
    RESOURCE_EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
    FAILED_PRECONDITION = code_pb2.FAILED_PRECONDITION
    ABORTED = code_pb2.ABORTED
    OUT_OF_RANGE = code_pb2.OUT_OF_RANGE
    UNIMPLEMENTED = code_pb2.UNIMPLEMENTED
    INTERNAL = code_pb2.INTERNAL
    UNAVAILABLE = code_pb2.UNAVAILABLE
    DATA_LOSS = code_pb2.DATA_LOSS
    UNAUTHENTICATED = code_pb2.UNAUTHENTICATED


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
        code: Code = Code.FAILED_PRECONDITION,
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
        self.code = Code(code)
        self.field = field
        self.metadata = meta
        self.violations = list(violations or [])
        # RESOURCE_EXHAUSTED (S3) tells the caller when to retry: google.rpc.RetryInfo.
        self.retry_delay = retry_delay
        if field and not self.violations and code == Code.INVALID_ARGUMENT:
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
            Code.INVALID_ARGUMENT,
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
            Code.INVALID_ARGUMENT,
            field=first.field,
            metadata={"field": first.field},
            violations=violations,
        )

    @classmethod
    def not_found(cls, reason: str, message: str, **metadata: str) -> ServiceError:
        """NOT_FOUND with a reason such as CODE_NOT_FOUND."""
        return cls(reason, message, Code.NOT_FOUND, metadata=metadata)

    @classmethod
    def refused(cls, reason: str, message: str, **metadata: str) -> ServiceError:
        """FAILED_PRECONDITION: a rule refusal (H5)."""
        return cls(reason, message, Code.FAILED_PRECONDITION, metadata=metadata)

    @classmethod
    def denied(cls, message: str = "the caller may not do this", **metadata: str) -> ServiceError:
        """PERMISSION_DENIED (S2)."""
        return cls("PERMISSION_DENIED", message, Code.PERMISSION_DENIED, metadata=metadata)

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
            Code.RESOURCE_EXHAUSTED,
            metadata={"retryAfterSeconds": str(seconds), **metadata},
            retry_delay=timedelta(seconds=seconds),
        )

    @classmethod
    def replayed(cls, status: status_pb2.Status) -> ServiceError:
        """A stored refusal answered again byte for byte (H1): ``to_status`` is ``status``."""
        info = error_details_pb2.ErrorInfo()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                detail.Unpack(info)
        code = status.code if status.code in Code._value2member_map_ else Code.UNKNOWN
        err = cls.__new__(cls)
        Exception.__init__(err, status.message)
        err.reason, err.message, err.code = info.reason or "INTERNAL", status.message, Code(code)
        err.field, err.metadata, err.violations, err.retry_delay = (
            None,
            dict(info.metadata),
            [],
            None,
        )
        err._status = status
        return err

    _status: status_pb2.Status | None = None  # set on a replayed refusal

    def to_status(self) -> status_pb2.Status:
        """The rich status: exactly one ErrorInfo, plus BadRequest when invalid."""
        if self._status is not None:
            return self._status
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
        return status_pb2.Status(code=int(self.code), message=self.message, details=details)


def internal_status(domain: str) -> status_pb2.Status:
    """INTERNAL with no detail of what went wrong inside."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=domain)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error", details=[_pack(info)]
    )


def unavailable_status(domain: str) -> status_pb2.Status:
    """UNAVAILABLE: the database could not finish the call now; retrying is safe with a
    request id (H1). No detail of the database is given to the caller."""
    info = error_details_pb2.ErrorInfo(reason="UNAVAILABLE", domain=domain)
    return status_pb2.Status(
        code=code_pb2.UNAVAILABLE,
        message="the database is unavailable: retry",
        details=[_pack(info)],
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
