"""Proto ⇄ domain for the license service: requests to checked domain values, records
to answers. No store, no use case: ``api.py`` calls these around one use case."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from keyslot.license.v1 import license_service_pb2 as pb

from keyslot_server import formats
from keyslot_server.timeconv import to_duration, to_timestamp
from license_service import grants as g
from license_service import routing, terms
from license_service import validation as val
from license_service.codes import normalize_code
from license_service.errors import LicenseError
from license_service.lookups import ON_BEHALF_OF
from license_service.ops import IssueTerms
from license_service.products import PRODUCT_ID, Product
from license_service.support import SupportRequest
from license_service.terms import CodeRecord

# Any whole number of seconds up to 100 years (§2 terms): a 1-hour trial is valid.
# Grace follows the same range and may be 0.
MAX_DURATION = timedelta(days=36525)  # 100 years
MIN_DURATION = timedelta(seconds=1)
MAX_GRANT_HOLD = timedelta(days=3660)  # a reserve may wait for its take-over for years


@functools.cache  # a handful of names; every code in every answer converts six or more
def enum_value(enum_type: Any, value: str) -> Any:
    """A domain name ("SUBSCRIPTION") as the proto enum number."""
    prefix = enum_type.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return enum_type.Value(prefix + value)


def fingerprint(request: Message, *ignored: str) -> str:
    """The parameters of a request, without its request id (H1)."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("request_id", *ignored):
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


# --- answers --------------------------------------------------------------------------------


def code_pb(rec: CodeRecord, now: datetime) -> pb.Code:
    """A code as evaluated at ``now`` (status, phase, entitlements, expiry are derived)."""
    expire = terms.expire_at(rec, now)
    out = pb.Code(
        code=formats.display_code(rec.code),
        terms=pb.CodeTerms(
            product_id=rec.product_id,
            kind=enum_value(pb.CodeKind, rec.kind),
            coverage=enum_value(pb.Coverage, rec.coverage),
            unlimited=rec.unlimited,
            grace_period=to_duration(rec.grace),
            max_devices=rec.max_devices,
            slot_kind=enum_value(pb.SlotKind, rec.slot_kind),
            trial=rec.trial,
            free=rec.free,
            auto_renew=rec.auto_renew,
            purchase_channel=enum_value(pb.PurchaseChannel, rec.purchase_channel),
            provider_name=rec.provider_name,
            order_number=rec.order_number,
        ),
        status=enum_value(pb.CodeStatus, terms.status_at(rec, now)),
        phase=enum_value(pb.Phase, terms.phase_at(rec, now)),
        auto_renew=rec.auto_renew,
        prepaid_periods=rec.prepaid_periods,
        entitlements=[enum_value(pb.Entitlement, e) for e in terms.entitlements_at(rec, now)],
        cancel_at_period_end=rec.cancel_at_period_end,
        activation_count=rec.activation_count,
        console_managed=rec.console_managed,
        issue_time=to_timestamp(rec.issue_time),
    )
    if rec.duration is not None:
        out.terms.duration.CopyFrom(to_duration(rec.duration))
    for field, value in (
        ("first_activate_time", rec.first_activate_time),
        ("expire_time", expire),
        ("grace_end_time", terms.grace_end_at(rec, now)),
        ("pause_time", rec.pause_time),
    ):
        if value is not None:
            getattr(out, field).CopyFrom(to_timestamp(value))
    return out


def product_pb(product: Product) -> pb.Product:
    return pb.Product(
        product_id=product.product_id,
        display_name=product.display_name,
        console_managed=product.console_managed,
        released_regions=list(product.released_regions),
        min_app_version=product.min_app_version,
        max_app_version=product.max_app_version,
        create_time=to_timestamp(product.create_time),
    )


def grant_pb(grant: g.GrantRecord, rec: CodeRecord | None, now: datetime) -> pb.Grant:
    """A grant, with its code's details evaluated at ``now`` when the code is known."""
    out = pb.Grant(
        grant_id=grant.grant_id,
        code=formats.display_code(grant.code),
        purpose=enum_value(pb.GrantPurpose, grant.purpose),
        device_id=grant.device_id,
        state=enum_value(pb.GrantState, grant.state),
        expire_time=to_timestamp(grant.expire_time),
        abort_reason=grant.abort_reason,
        create_time=to_timestamp(grant.create_time),
    )
    if grant.end_time is not None:
        out.end_time.CopyFrom(to_timestamp(grant.end_time))
    if rec is not None:
        out.code_details.CopyFrom(code_pb(rec, now))
    return out


def route_response(route: str) -> pb.GetAutoRenewalRouteResponse:
    """Who disables automatic renewal (L8), with what to tell the customer."""
    return pb.GetAutoRenewalRouteResponse(
        route=enum_value(pb.AutoRenewalRoute, route), instructions=routing.INSTRUCTIONS[route]
    )


def support_request_pb(s: SupportRequest) -> pb.SupportRequest:
    return pb.SupportRequest(
        support_request_id=s.support_request_id,
        reason=s.reason,
        purchase_date=s.purchase_date,
        full_name=s.full_name,
        email=s.email,
        order_number=s.order_number,
        create_time=to_timestamp(s.create_time),
    )


# --- requests -------------------------------------------------------------------------------


def product_id(v: val.Violations, field: str, value: str) -> None:
    if not PRODUCT_ID.match(value):
        v.add(field, "must be 1-64 of a-z, 0-9, '-', '_'")


def app_version(v: val.Violations, field: str, value: str) -> None:
    """An app version (may be empty): dotted numbers."""
    if value:
        v.check(field, formats.app_version, value)


def new_product(p: pb.Product, now: datetime) -> Product:
    """The product a CreateProduct asks for, checked; ``now`` is its create time."""
    v = val.Violations()
    product_id(v, "product.product_id", p.product_id)
    val.text(v, "product.display_name", p.display_name, max_len=200, required=True)
    if len(p.released_regions) > 300:
        v.add("product.released_regions", "at most 300 regions")
    regions = [
        v.check(f"product.released_regions[{i}]", formats.region, r) or ""
        for i, r in enumerate(p.released_regions[:300])
    ]
    for field in ("min_app_version", "max_app_version"):
        app_version(v, f"product.{field}", getattr(p, field))
    v.raise_if_any()
    if (
        p.min_app_version
        and p.max_app_version
        and formats.compare_versions(p.min_app_version, p.max_app_version) >= 0
    ):
        raise LicenseError.invalid(
            "product.max_app_version", "must be greater than min_app_version"
        )
    return Product(
        product_id=p.product_id,
        display_name=p.display_name,
        console_managed=p.console_managed,
        released_regions=tuple(dict.fromkeys(regions)),
        min_app_version=p.min_app_version,
        max_app_version=p.max_app_version,
        create_time=now,
    )


def issue_terms(t: pb.CodeTerms) -> IssueTerms:
    """The terms of an IssueCodes call, checked field by field."""
    v = val.Violations()
    product_id(v, "terms.product_id", t.product_id)
    kind = val.enum(v, "terms.kind", t.kind, pb.CodeKind)
    coverage = val.enum(v, "terms.coverage", t.coverage, pb.Coverage)
    slot_kind = val.enum(v, "terms.slot_kind", t.slot_kind, pb.SlotKind)
    channel = val.enum(v, "terms.purchase_channel", t.purchase_channel, pb.PurchaseChannel)
    duration: timedelta | None = None
    if t.unlimited:
        if t.HasField("duration"):
            v.add("terms.duration", "must be unset for an unlimited code")
    elif not t.HasField("duration"):
        v.add("terms.duration", "is required unless unlimited")
    else:
        duration = val.term_length(v, "terms.duration", t.duration, MIN_DURATION, MAX_DURATION)
    grace: timedelta | None = timedelta(0)
    if t.HasField("grace_period"):
        grace = val.term_length(v, "terms.grace_period", t.grace_period, timedelta(0), MAX_DURATION)
    val.count(v, "terms.max_devices", t.max_devices, 1, 10000)
    if t.auto_renew and kind != terms.SUBSCRIPTION:
        v.add("terms.auto_renew", "only subscriptions renew automatically")
    val.text(v, "terms.provider_name", t.provider_name, max_len=200)
    val.order_number(v, "terms.order_number", t.order_number)
    v.raise_if_any()
    assert grace is not None
    return IssueTerms(
        product_id=t.product_id,
        kind=kind,
        coverage=coverage,
        duration=duration,
        grace=grace,
        max_devices=t.max_devices,
        slot_kind=slot_kind,
        trial=t.trial,
        free=t.free,
        auto_renew=t.auto_renew,
        purchase_channel=channel,
        provider_name=t.provider_name,
        order_number=t.order_number,
    )


def support_request(s: pb.SupportRequest, now: datetime) -> SupportRequest:
    """The support request a CreateSupportRequest files (L8), checked; the use case
    gives it its id."""
    v = val.Violations()
    val.text(v, "support_request.reason", s.reason, max_len=2000, required=True)
    val.past_date(v, "support_request.purchase_date", s.purchase_date, now.date())
    val.text(v, "support_request.full_name", s.full_name, max_len=200, required=True)
    val.email(v, "support_request.email", s.email)
    val.order_number(v, "support_request.order_number", s.order_number)
    v.raise_if_any()
    return SupportRequest(
        reason=s.reason,
        purchase_date=s.purchase_date,
        full_name=s.full_name,
        email=s.email,
        order_number=s.order_number,
        create_time=now,
    )


@dataclass(frozen=True)
class GrantRequest:
    """A PrepareGrant's parameters, checked; the deadline as the peer sent it."""

    code: str
    purpose: str
    device: g.DeviceContext
    caller: g.CallerContext
    deadline: datetime


def grant_request(request: pb.PrepareGrantRequest) -> GrantRequest:
    """The parameters of a PrepareGrant, checked field by field."""
    code = normalize_code(request.code)
    v = val.Violations()
    purpose = val.enum(v, "purpose", request.purpose, pb.GrantPurpose)
    d = request.device
    val.ascii_key(v, "device.device_id", d.device_id, max_len=val.MAX_ID, required=True)
    app_version(v, "device.app_version", d.app_version)
    region = (v.check("device.region", formats.region, d.region) or "") if d.region else ""
    current = normalize_code(d.current_code, "device.current_code") if d.current_code else ""
    channel = val.enum(v, "caller.channel", request.caller.channel, pb.CallerChannel)
    role = val.enum(v, "caller.role", request.caller.role, pb.ConsoleRole, allow_unset=True)
    val.request_id(v, request.request_id, required=True)
    deadline = None
    if not request.HasField("expire_time"):
        v.add("expire_time", "is required")
    else:
        deadline = val.timestamp(v, "expire_time", request.expire_time)
    if request.on_behalf_of and not ON_BEHALF_OF.fullmatch(request.on_behalf_of):
        v.add("on_behalf_of", "must be 1-128 printable ASCII characters")
    v.raise_if_any()
    assert deadline is not None
    return GrantRequest(
        code=code,
        purpose=purpose,
        device=g.DeviceContext(
            device_id=d.device_id,
            app_version=d.app_version,
            region=region or "",
            current_code=current,
        ),
        caller=g.CallerContext(channel=channel, role=role),
        deadline=deadline,
    )


def grant_hold(deadline: datetime, now: datetime) -> datetime:
    """How long a new grant is held, from the deadline the peer sent (H2)."""
    late = val.Violations()
    held = val.grant_deadline(late, "expire_time", deadline, now, MAX_GRANT_HOLD)
    late.raise_if_any()
    return held


def grant_id(v: val.Violations, value: str) -> None:
    val.ascii_key(v, "grant_id", value, max_len=val.MAX_ID, required=True)
