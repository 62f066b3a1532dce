"""Typed exceptions for keyslot clients, parsed from the gRPC rich error model.

Every refusal of a keyslot service carries a status code and exactly one
``google.rpc.ErrorInfo`` whose ``reason`` is an ``ErrorReason`` name of the
service's proto (without the ``ERROR_REASON_`` prefix). ``from_rpc_error``
turns a failed call into the ``KeyslotError`` subclass of that reason, so
callers write ``except NoFreeSlots:`` or, for a whole family,
``except CodeUnusable:``.

The reason -> class map (``REASON_CLASSES``) is built from both protos'
``ErrorReason`` enums at import time: every enum value has a class, and a
reason added to a proto later still gets one (under its status family)
until a named class is written for it.

A TLS handshake that fails reaches the client as a bare UNAVAILABLE whose
details hold the transport's words; ``from_rpc_error`` recognises them and
raises a ``TlsFailure`` instead (still an ``Unavailable``, same exit code):
``UntrustedServer`` when the server's certificate does not verify against
the trusted CA or does not name the address, ``ServerWithoutTls`` when a TLS
client reached a plaintext server. A plaintext client talking to a TLS
server only sees "Socket closed" and stays a plain ``Unavailable``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from keyslot.device.v1 import device_service_pb2 as _dpb
from keyslot.fields import FieldViolation
from keyslot.license.v1 import license_service_pb2 as _lpb

__all__ = [
    "FieldViolation",
    "KeyslotError",
    "ServerWithoutTls",
    "TlsFailure",
    "TlsFileError",
    "UntrustedServer",
    "REASON_CLASSES",
    "EXIT_CODES",
    "from_refusal",
    "from_rpc_error",
    "reason_class",
    "all_reasons",
    "tls_failure_class",
]


class KeyslotError(Exception):
    """A failed keyslot call: status code, ErrorInfo reason/domain/metadata, bad fields.

    ``exit_code`` is the ``keyslot`` CLI's exit status for the error's family.
    """

    exit_code: ClassVar[int] = 1
    #: The ErrorReason name this class stands for ("" for a family base class).
    REASON: ClassVar[str] = ""
    #: True for a class made at import for a reason newer than this module.
    GENERATED: ClassVar[bool] = False
    #: The address the failed call went to, when the typed client knows it.
    target: str = ""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        message: str = "",
    ) -> None:
        super().__init__(message or reason or code.name)
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations or [])
        self.message = message
        #: Seconds to wait before retrying, from google.rpc.RetryInfo (S3), if sent.
        self.retry_delay: float | None = None
        #: How many google.rpc.ErrorInfo details came (keyslot sends exactly one, H5).
        self.error_infos = 0

    def __str__(self) -> str:
        head = f"{self.code.name}"
        if self.reason:
            head += f" {self.reason}"
        return f"{head}: {self.message}" if self.message else head

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"domain={self.domain!r}, metadata={self.metadata!r}, message={self.message!r})"
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (the CLI prints it with --json)."""
        return {
            "code": self.code.name,
            "reason": self.reason,
            "domain": self.domain,
            "metadata": self.metadata,
            "fieldViolations": [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ],
            "message": self.message,
            "retryDelaySeconds": self.retry_delay,
            "error": type(self).__name__,
        }


# --- families by status code -------------------------------------------------


class InvalidArgument(KeyslotError):
    """INVALID_ARGUMENT: a field is missing, malformed or out of range (S4)."""

    exit_code = 3


class NotFound(KeyslotError):
    """NOT_FOUND: the thing does not exist or is not the caller's."""

    exit_code = 4


class AlreadyExists(KeyslotError):
    """ALREADY_EXISTS: a duplicate, or a request id reused with other parameters."""

    exit_code = 5


class Unauthenticated(KeyslotError):
    """UNAUTHENTICATED: no or an unknown bearer token (S1)."""

    exit_code = 6


class PermissionDenied(KeyslotError):
    """PERMISSION_DENIED: the caller may not do this (S2)."""

    exit_code = 7


class Refused(KeyslotError):
    """FAILED_PRECONDITION: a rule refused the request (H5)."""

    exit_code = 8


class CodeUnusable(Refused):
    """The code's status or phase forbids it: expired, blocked, paused, cancelled."""

    exit_code = 9


class SlotsAndDeliveries(Refused):
    """Slots (D3) and deliveries (D4-D7) refuse: no free slot, pending, not pending..."""

    exit_code = 10


class CodeDoesNotFit(Refused):
    """The code does not fit the device or its current code (D5, D8, L6)."""

    exit_code = 11


class ReserveRefused(Refused):
    """The reserve-code flow refuses (D8-D10)."""

    exit_code = 12


class RateLimited(KeyslotError):
    """RESOURCE_EXHAUSTED: too many failed look-ups (S3) or mails (D2); back off."""

    exit_code = 13


class Unavailable(KeyslotError):
    """UNAVAILABLE: the service (or the one behind it) could not be reached."""

    exit_code = 14


# What gRPC says when the certificate verified but names another host.
_WRONG_NAME = "Hostname Verification Check failed"
# OpenSSL's words after the verify failure, up to the next ": " of gRPC's wrapping.
_VERIFY_REASON = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")


def _verify_reason(details: str) -> str:
    found = _VERIFY_REASON.search(details)
    return found.group(1).strip() if found else ""


class TlsFailure(Unavailable):
    """UNAVAILABLE because the TLS handshake failed: retrying will not help.

    ``message`` says in plain words what went wrong; ``transport`` keeps the
    details gRPC gave.
    """

    #: Substrings of gRPC's details that mean this failure (subclasses are tried first).
    MARKERS: ClassVar[tuple[str, ...]] = (
        "Tls handshake failed",
        "Failed to create security handshaker",
    )
    #: gRPC's own details of the failed handshake.
    transport: str = ""

    @classmethod
    def explain(cls, details: str) -> str:
        """The plain-words message for these transport details."""
        return "the TLS handshake with the server failed (check --ca, --cert and --key)"

    def to_dict(self) -> dict[str, object]:
        """The JSON view, with the transport's own details and the address."""
        return {**super().to_dict(), "transport": self.transport, "target": self.target}


class UntrustedServer(TlsFailure):
    """The server's TLS certificate did not verify against the trusted CA, or does not
    name the address dialled."""

    MARKERS = ("CERTIFICATE_VERIFY_FAILED", _WRONG_NAME)

    @classmethod
    def explain(cls, details: str) -> str:
        """Says which check failed: the hostname, or the chain (with OpenSSL's reason)."""
        if _WRONG_NAME in details:
            return (
                "the server's TLS certificate does not name the address dialled "
                "(connect by a name the certificate holds)"
            )
        why = _verify_reason(details)
        because = f" ({why})" if why else ""
        return f"the server's TLS certificate is not trusted{because} (check --ca / KEYSLOT_CA)"

    @property
    def wrong_name(self) -> bool:
        """True when the chain may be fine but the certificate does not name the address."""
        return _WRONG_NAME in self.transport

    @property
    def verify_reason(self) -> str:
        """OpenSSL's reason the chain did not verify ("unable to get local issuer
        certificate", "certificate has expired"), or ""."""
        return _verify_reason(self.transport)


class ServerWithoutTls(TlsFailure):
    """A TLS client reached a server that speaks plaintext."""

    MARKERS = ("WRONG_VERSION_NUMBER",)

    @classmethod
    def explain(cls, details: str) -> str:
        """The fix: TLS on the server, or plaintext on the client."""
        return (
            "the server does not speak TLS: it runs in plaintext "
            "(connect with --plaintext / KEYSLOT_PLAINTEXT=1, loopback only)"
        )


class TlsFileError(ValueError):
    """A CA, certificate or key file for TLS that is missing, unreadable, not PEM or
    encrypted, a key that is not the certificate's, or a certificate without its key.

    Raised on the client side by ``keyslot.client.tls_credentials`` before any
    connection; the message names the file and the problem.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DeadlineExceeded(KeyslotError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline."""

    exit_code = 14


class Unimplemented(KeyslotError):
    """UNIMPLEMENTED: the server does not offer this method (yet)."""

    exit_code = 15


class Internal(KeyslotError):
    """INTERNAL or an unexpected status: nothing more is disclosed."""

    exit_code = 1


# --- one class per ErrorReason ----------------------------------------------
# General reasons share the family class of their status code.


class CodeNotFound(NotFound):
    """CODE_NOT_FOUND."""


class ProductNotFound(NotFound):
    """PRODUCT_NOT_FOUND."""


class GrantNotFound(NotFound):
    """GRANT_NOT_FOUND."""


class AccountNotFound(NotFound):
    """ACCOUNT_NOT_FOUND."""


class DeviceNotFound(NotFound):
    """DEVICE_NOT_FOUND."""


class SubscriptionNotFound(NotFound):
    """SUBSCRIPTION_NOT_FOUND."""


class DeliveryNotFound(NotFound):
    """DELIVERY_NOT_FOUND."""


class ConnectionCodeNotFound(NotFound):
    """CONNECTION_CODE_NOT_FOUND."""


class ProductExists(AlreadyExists):
    """PRODUCT_EXISTS."""


class SubscriptionExists(AlreadyExists):
    """SUBSCRIPTION_EXISTS."""


class RequestIdReused(AlreadyExists):
    """REQUEST_ID_REUSED: same request id, different parameters (H1)."""


class TooManyFailedLookups(RateLimited):
    """TOO_MANY_FAILED_LOOKUPS (S3)."""


class TooManyMessages(RateLimited):
    """TOO_MANY_MESSAGES: download-link mails past the account's or address's limit (D2)."""


class LicenseServiceUnavailable(Unavailable):
    """LICENSE_SERVICE_UNAVAILABLE: the device service could not reach it."""


class CodeExpired(CodeUnusable):
    """CODE_EXPIRED: past its grace period."""


class CodeBlocked(CodeUnusable):
    """CODE_BLOCKED."""


class CodePaused(CodeUnusable):
    """CODE_PAUSED."""


class CodeCancelled(CodeUnusable):
    """CODE_CANCELLED."""


class NoFreeSlots(SlotsAndDeliveries):
    """NO_FREE_SLOTS: every slot under max devices is taken (D3, D5)."""


class DeliveryPending(SlotsAndDeliveries):
    """DELIVERY_PENDING: another delivery to the device is pending (D5)."""


class DeliveryNotPending(SlotsAndDeliveries):
    """DELIVERY_NOT_PENDING (D6, D7)."""


class DeliveryExpired(SlotsAndDeliveries):
    """DELIVERY_EXPIRED (D4)."""


class DeviceNotConnected(SlotsAndDeliveries):
    """DEVICE_NOT_CONNECTED: the target is not connected to the account (D5)."""


class ExpiresEarlier(CodeDoesNotFit):
    """EXPIRES_EARLIER (D5, D8)."""


class RegionUnavailable(CodeDoesNotFit):
    """REGION_UNAVAILABLE (D5)."""


class TrialOrFree(CodeDoesNotFit):
    """TRIAL_OR_FREE (D5, D8)."""


class PerUserService(CodeDoesNotFit):
    """PER_USER_SERVICE (D5)."""


class VersionIncompatible(CodeDoesNotFit):
    """VERSION_INCOMPATIBLE (D5, D9)."""


class ConsoleOnly(CodeDoesNotFit):
    """CONSOLE_ONLY (D5)."""


class LimitedWhileAutoRenew(CodeDoesNotFit):
    """LIMITED_WHILE_AUTO_RENEW (D5)."""


class AutoRenewWhileLimited(CodeDoesNotFit):
    """AUTO_RENEW_WHILE_LIMITED (D5)."""


class SubscriptionActive(CodeDoesNotFit):
    """SUBSCRIPTION_ACTIVE: the device's subscription term has not ended (L6)."""


class SameAsCurrent(CodeDoesNotFit):
    """SAME_AS_CURRENT (D8)."""


class ReserveAlreadySet(ReserveRefused):
    """RESERVE_ALREADY_SET (D8)."""


class NoCurrentLicense(ReserveRefused):
    """NO_CURRENT_LICENSE (D8)."""


class NoReserve(ReserveRefused):
    """NO_RESERVE (D10)."""


class ReserveNotFailed(ReserveRefused):
    """RESERVE_NOT_FAILED (D10)."""


class CurrentNotBlocked(ReserveRefused):
    """CURRENT_NOT_BLOCKED (D10)."""


class NotASubscription(Refused):
    """NOT_A_SUBSCRIPTION."""


class AlreadyPaused(Refused):
    """ALREADY_PAUSED."""


class NotPaused(Refused):
    """NOT_PAUSED."""


class NotBlocked(Refused):
    """NOT_BLOCKED."""


class AlreadyBlocked(Refused):
    """ALREADY_BLOCKED."""


class AlreadyCancelled(Refused):
    """ALREADY_CANCELLED."""


class UnlimitedTerm(Refused):
    """UNLIMITED_TERM: an unlimited code has no term to renew."""


class GrantExpired(Refused):
    """GRANT_EXPIRED: the grant passed its deadline (H2)."""


class GrantAborted(Refused):
    """GRANT_ABORTED."""


class GrantCommitted(Refused):
    """GRANT_COMMITTED."""


class ConnectionCodeUsed(Refused):
    """CONNECTION_CODE_USED (D1)."""


class ConnectionCodeExpired(Refused):
    """CONNECTION_CODE_EXPIRED (D1)."""


class NotAConsoleAccount(Refused):
    """NOT_A_CONSOLE_ACCOUNT."""


# Reasons named like their status family use the family class itself.
_FAMILY_REASONS: dict[str, type[KeyslotError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "INTERNAL": Internal,
}

# The status family of a status code, for unknown reasons and bare statuses.
STATUS_CLASSES: Mapping[grpc.StatusCode, type[KeyslotError]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.FAILED_PRECONDITION: Refused,
        grpc.StatusCode.ABORTED: Refused,
        grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
        grpc.StatusCode.INTERNAL: Internal,
        grpc.StatusCode.UNKNOWN: Internal,
    }
)

_PREFIX = "ERROR_REASON_"


def all_reasons() -> frozenset[str]:
    """Every ErrorReason name of both protos, without prefix and UNSPECIFIED."""
    names: set[str] = set()
    for file in (_lpb.DESCRIPTOR, _dpb.DESCRIPTOR):
        enum = file.enum_types_by_name["ErrorReason"]
        names.update(v.name[len(_PREFIX) :] for v in enum.values)
    names.discard("UNSPECIFIED")
    return frozenset(names)


def _camel(reason: str) -> str:
    return "".join(part.capitalize() for part in reason.split("_"))


def _build_reason_classes() -> dict[str, type[KeyslotError]]:
    """Maps every enum reason to its class: a named class above, else a generated one."""
    mapping: dict[str, type[KeyslotError]] = {}
    module = globals()
    for reason in sorted(all_reasons()):
        found = _FAMILY_REASONS.get(reason) or module.get(_camel(reason))
        if isinstance(found, type) and issubclass(found, KeyslotError):
            cls = found
        else:
            # A reason newer than this module: still typed, under the base class.
            cls = type(
                _camel(reason), (KeyslotError,), {"__doc__": f"{reason}.", "GENERATED": True}
            )
            cls.__module__ = __name__
            module[cls.__name__] = cls
        if cls not in _FAMILY_REASONS.values():
            cls.REASON = reason
        mapping[reason] = cls
    return mapping


#: Every ErrorReason name of both protos -> its exception class.
REASON_CLASSES: Mapping[str, type[KeyslotError]] = MappingProxyType(_build_reason_classes())

#: CLI exit status per family (documented in ``keyslot --help``).
EXIT_CODES: Mapping[str, int] = MappingProxyType(
    {
        "ok": 0,
        "internal / unknown error": Internal.exit_code,
        "usage error (bad flags, no token)": 2,
        "INVALID_ARGUMENT": InvalidArgument.exit_code,
        "NOT_FOUND (*_NOT_FOUND)": NotFound.exit_code,
        "ALREADY_EXISTS (*_EXISTS, REQUEST_ID_REUSED)": AlreadyExists.exit_code,
        "UNAUTHENTICATED": Unauthenticated.exit_code,
        "PERMISSION_DENIED": PermissionDenied.exit_code,
        "other FAILED_PRECONDITION refusals": Refused.exit_code,
        "code unusable: CODE_EXPIRED/BLOCKED/PAUSED/CANCELLED": CodeUnusable.exit_code,
        "slots and deliveries: NO_FREE_SLOTS, DELIVERY_*, DEVICE_NOT_CONNECTED": (
            SlotsAndDeliveries.exit_code
        ),
        "code does not fit: EXPIRES_EARLIER, REGION_*, VERSION_*, TRIAL_OR_FREE, ...": (
            CodeDoesNotFit.exit_code
        ),
        "reserve: RESERVE_*, NO_RESERVE, NO_CURRENT_LICENSE, CURRENT_NOT_BLOCKED": (
            ReserveRefused.exit_code
        ),
        "RESOURCE_EXHAUSTED (TOO_MANY_FAILED_LOOKUPS, TOO_MANY_MESSAGES)": RateLimited.exit_code,
        "UNAVAILABLE / DEADLINE_EXCEEDED": Unavailable.exit_code,
        "UNIMPLEMENTED": Unimplemented.exit_code,
    }
)


def reason_class(reason: str, code: grpc.StatusCode | None = None) -> type[KeyslotError]:
    """The class for a reason; unknown reasons fall back to the status family."""
    cls = REASON_CLASSES.get(reason)
    if cls is not None:
        return cls
    if code is not None:
        return STATUS_CLASSES.get(code, Internal)
    return KeyslotError


def from_refusal(
    reason: str, message: str = "", metadata: Mapping[str, str] | None = None
) -> KeyslotError:
    """The exception for a per-target refusal of SendSubscription (a ``Refusal``)."""
    code = grpc.StatusCode.FAILED_PRECONDITION
    return reason_class(reason, code)(code, reason, "device.keyslot", metadata, None, message)


_WS = re.compile(r"\s+")
# Most specific first: a verify failure also says "Tls handshake failed".
_TLS_FAILURES: tuple[type[TlsFailure], ...] = (UntrustedServer, ServerWithoutTls, TlsFailure)


def tls_failure_class(details: str) -> type[TlsFailure] | None:
    """The TlsFailure class whose markers gRPC's UNAVAILABLE details contain, if any."""
    for cls in _TLS_FAILURES:
        if any(marker in details for marker in cls.MARKERS):
            return cls
    return None


def from_rpc_error(err: grpc.RpcError) -> KeyslotError:
    """Parses a failed call's rich status into the matching KeyslotError subclass.

    Works on statuses without details too (UNAVAILABLE from the transport,
    DEADLINE_EXCEEDED, UNIMPLEMENTED): the class then follows the status code,
    except for a failed TLS handshake, which becomes a ``TlsFailure`` subclass.
    """
    code: grpc.StatusCode = getattr(err, "code", lambda: grpc.StatusCode.UNKNOWN)()
    details = getattr(err, "details", lambda: "")() or ""
    reason, domain, metadata = "", "", {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    infos = 0
    message = details
    try:
        status = rpc_status.from_call(err)
    except ValueError:
        status = None  # mismatched status details: keep what the call says
    if status is not None:
        message = status.message or details
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                infos += 1
                if not reason:  # keyslot sends exactly one; the first wins
                    reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    cls = reason_class(reason, code) if reason else STATUS_CLASSES.get(code, Internal)
    message = _WS.sub(" ", message).strip()
    # Only a bare transport status: a service's UNAVAILABLE carries an ErrorInfo reason.
    tls = tls_failure_class(message) if code == grpc.StatusCode.UNAVAILABLE and not reason else None
    if tls is not None:
        failure = tls(code, "", "", {}, [], tls.explain(message))
        failure.transport = message
        error: KeyslotError = failure
    else:
        error = cls(code, reason, domain, metadata, violations, message)
    error.retry_delay = retry_delay
    error.error_infos = infos
    error.__cause__ = err
    return error
