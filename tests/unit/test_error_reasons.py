"""Every ErrorInfo reason the services can raise is in their proto's ErrorReason enum.

Clients in any language switch on ``ErrorInfo.reason``; the enum in the proto
is the list they read. The services' sources are scanned with ``ast`` for
string literals passed as the reason of ``LicenseError``/``DeviceError``
(the constructor and its ``refused``/``not_found`` classmethods) and as a
``reason=`` keyword (per-target ``Refusal`` messages of a send). The Python
client's reason -> exception map must cover every enum value.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from keyslot import errors
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ERROR_REASON_"
ERROR_CLASSES = {"LicenseError": "license", "DeviceError": "device"}
REASON_METHODS = {"refused", "not_found"}
# Reasons the shared constructors (invalid, invalid_many, denied) and the
# interceptor (UNAUTHENTICATED, INTERNAL) fill in themselves.
BUILT_IN = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "INTERNAL"}


def enum_reasons(module: object) -> set[str]:
    """ErrorReason names of a generated module, without prefix and UNSPECIFIED."""
    enum = module.DESCRIPTOR.enum_types_by_name["ErrorReason"]  # type: ignore[attr-defined]
    return {v.name[len(PREFIX) :] for v in enum.values} - {"UNSPECIFIED"}


LICENSE_REASONS = enum_reasons(lpb)
DEVICE_REASONS = enum_reasons(dpb)


@dataclass(frozen=True)
class Raised:
    """A reason literal found in a service's source."""

    reason: str
    where: str


def _error_class(func: ast.expr) -> str | None:
    """'LicenseError' for LicenseError(...), LicenseError.refused(...), errors.LicenseError(...)."""
    if isinstance(func, ast.Name) and func.id in ERROR_CLASSES:
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr in ERROR_CLASSES:
            return func.attr
        if func.attr in REASON_METHODS:
            return _error_class(func.value)
    return None


def scan_source(text: str, name: str) -> tuple[list[Raised], list[str]]:
    """Reason literals raised in one source file, and the calls whose reason is dynamic."""
    found: list[Raised] = []
    dynamic: list[str] = []
    for node in ast.walk(ast.parse(text, filename=name)):
        if not isinstance(node, ast.Call):
            continue
        where = f"{name}:{node.lineno}"
        for keyword in node.keywords:
            if keyword.arg == "reason" and isinstance(keyword.value, ast.Constant):
                value = keyword.value.value
                if isinstance(value, str) and value.isupper():
                    found.append(Raised(value, where))
        if _error_class(node.func) is None or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append(Raised(first.value, where))
        else:
            dynamic.append(where)
    return found, dynamic


def scan(folder: str) -> tuple[list[Raised], list[str]]:
    """Reason literals raised anywhere under ``folder``."""
    found: list[Raised] = []
    dynamic: list[str] = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        more, dyn = scan_source(path.read_text(), str(path.relative_to(ROOT)))
        found += more
        dynamic += dyn
    return found, dynamic


@pytest.mark.parametrize(
    ("folder", "reasons"),
    [("license_service", LICENSE_REASONS), ("device_service", DEVICE_REASONS)],
)
def test_h5_every_raised_reason_is_in_the_proto_enum(folder: str, reasons: set[str]) -> None:
    found, _dynamic = scan(folder)
    missing = sorted({f"{r.reason} ({r.where})" for r in found if r.reason not in reasons})
    assert not missing, f"{folder} raises reasons missing from its ErrorReason enum: {missing}"


def test_h5_scan_sees_the_service_errors() -> None:
    """Guards the scanner itself: it must recognise the call shapes the services use."""
    snippet = (
        "LicenseError.refused('CODE_BLOCKED', 'x')\n"
        "errors.DeviceError.not_found('DEVICE_NOT_FOUND', 'y')\n"
        "DeviceError('NO_FREE_SLOTS', 'z')\n"
        "dpb.Refusal(reason='DELIVERY_PENDING')\n"
        "LicenseError.invalid('code', 'bad')\n"
        "LicenseError.refused(reason_var, 'dynamic')\n"
    )
    found, dynamic = scan_source(snippet, "snippet.py")
    assert sorted(r.reason for r in found) == [
        "CODE_BLOCKED",
        "DELIVERY_PENDING",
        "DEVICE_NOT_FOUND",
        "NO_FREE_SLOTS",
    ]
    assert dynamic == ["snippet.py:6"]


def test_h5_device_enum_lists_relayed_license_refusals() -> None:
    """The device service relays the license side's rule refusals with the same reason."""
    relayed = {
        "CODE_NOT_FOUND",
        "CODE_EXPIRED",
        "CODE_BLOCKED",
        "CODE_PAUSED",
        "CODE_CANCELLED",
        "SUBSCRIPTION_ACTIVE",
        "EXPIRES_EARLIER",
        "REGION_UNAVAILABLE",
        "TRIAL_OR_FREE",
        "PER_USER_SERVICE",
        "VERSION_INCOMPATIBLE",
        "CONSOLE_ONLY",
        "LIMITED_WHILE_AUTO_RENEW",
        "AUTO_RENEW_WHILE_LIMITED",
        "SAME_AS_CURRENT",
        "GRANT_EXPIRED",
        "TOO_MANY_FAILED_LOOKUPS",
        "REQUEST_ID_REUSED",
    }
    assert relayed <= LICENSE_REASONS
    assert sorted(relayed - DEVICE_REASONS) == []


def test_client_maps_every_enum_reason_to_a_written_class() -> None:
    every = LICENSE_REASONS | DEVICE_REASONS
    assert set(errors.REASON_CLASSES) == every
    generated = sorted(r for r, c in errors.REASON_CLASSES.items() if c.GENERATED)
    assert not generated, f"write a named exception class in keyslot/errors.py for {generated}"
    for reason, cls in errors.REASON_CLASSES.items():
        assert issubclass(cls, errors.KeyslotError)
        if reason not in BUILT_IN:
            assert reason == cls.REASON
            assert errors.reason_class(reason) is cls


def test_client_reason_classes_fall_into_families() -> None:
    assert issubclass(errors.NoFreeSlots, errors.Refused)
    assert issubclass(errors.CodeBlocked, errors.CodeUnusable)
    assert issubclass(errors.CodeNotFound, errors.NotFound)
    assert issubclass(errors.TooManyFailedLookups, errors.RateLimited)
    assert errors.REASON_CLASSES["UNAUTHENTICATED"] is errors.Unauthenticated
    assert errors.REASON_CLASSES["INVALID_ARGUMENT"] is errors.InvalidArgument
