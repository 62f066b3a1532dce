"""LicenseService servicer: converts proto ⇄ domain, checks who may call, and delegates.

Idempotency by request id (H1) lives here because it stores the proto answer
(or the rich status of a refusal) to replay it byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.rpc import status_pb2
from keyslot.license.v1 import license_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc

from keyslot_server.auth import Principal, current_principal
from keyslot_server.budget import FailureBudget
from keyslot_server.clock import Clock
from keyslot_server.errors import Code
from keyslot_server.timeconv import to_duration, to_epoch_us, to_timestamp
from license_service import grants as g
from license_service import routing, terms
from license_service import validation as val
from license_service.codes import format_code, normalize_code
from license_service.errors import LicenseError, ReplayedError
from license_service.feed import CodeFeed, Watch
from license_service.ops import IssueTerms, LicenseOps, code_not_found
from license_service.products import (
    PRODUCT_ID,
    VERSION,
    Product,
    compare_versions,
    region_code,
)
from license_service.store import LicenseStore
from license_service.terms import CodeRecord

M = TypeVar("M", bound=Message)

# Any whole number of seconds up to 100 years (§2 terms): a 1-hour trial is valid.
# Grace follows the same range and may be 0.
MAX_DURATION = timedelta(days=36525)  # 100 years
MIN_DURATION = timedelta(seconds=1)
MAX_GRANT_HOLD = timedelta(days=3660)  # a reserve may wait for its take-over for years
# The end caller the peer names for a look-up (S3): printable ASCII, no blanks.
ON_BEHALF_OF = re.compile(r"[\x21-\x7e]{1,128}")


@functools.cache  # a handful of names; every code in every answer converts six or more
def _name(enum_type: Any, value: str) -> Any:
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


class LicenseApi(pb_grpc.LicenseServiceServicer):
    """The gRPC face of the license service."""

    def __init__(self, store: LicenseStore, clock: Clock, lookups: FailureBudget) -> None:
        self.store = store
        self.clock = clock
        self.ops = LicenseOps(store)
        # S3: failed code look-ups per caller, in the database (a restart forgives nothing).
        self.lookups = lookups

    # --- callers ---

    @staticmethod
    def _require(*kinds: str) -> Principal:
        principal = current_principal()
        if principal.kind not in kinds:
            raise LicenseError.denied(f"{principal.kind} callers may not do this")
        return principal

    @staticmethod
    def _key(principal: Principal) -> str:
        return f"{principal.kind}:{principal.name}"

    def _now(self) -> datetime:
        return self.clock.now()

    # --- S3: failed look-ups ------------------------------------------------------------------

    def _subject(self, principal: Principal, on_behalf_of: str = "") -> str | None:
        """Whose budget a look-up uses: the caller's own; for the peer, the end caller it
        names (``on_behalf_of``), or None for its own work, which is never limited."""
        if principal.kind != "peer":
            return self._key(principal)
        if not on_behalf_of:
            return None
        if not ON_BEHALF_OF.fullmatch(on_behalf_of):
            raise LicenseError.invalid("on_behalf_of", "must be 1-128 printable ASCII characters")
        return f"{self._key(principal)}/{on_behalf_of}"

    @staticmethod
    def _too_many(wait: timedelta) -> LicenseError:
        return LicenseError.rate_limited(  # type: ignore[return-value]
            "TOO_MANY_FAILED_LOOKUPS", "too many failed code look-ups; retry later", wait
        )

    def _check_budget(self, subject: str | None, now: datetime) -> None:
        """Refuses every look-up of a subject past its budget, before it is answered."""
        wait = self.lookups.retry_after(subject, now) if subject else None
        if wait is not None:
            raise self._too_many(wait)

    def _lookup_failed(self, subject: str | None, now: datetime, failures: int = 1) -> None:
        """Counts failed look-ups; refuses instead of answering them when they do not fit
        the budget (a batch of guesses, or guesses racing each other past it)."""
        wait = self.lookups.charge(subject, now, failures) if subject else None
        if wait is not None:
            raise self._too_many(wait)

    def _scope(self, principal: Principal) -> str | None:
        """Whose codes a caller sees: the peer all, a provider its own (S2)."""
        return None if principal.kind == "peer" else principal.name

    # --- H1: request ids ---

    def _idempotent(
        self,
        principal: Principal,
        method: str,
        request_id: str,
        request: Message,
        response_type: type[M],
        work: Callable[[], M],
        ignored: tuple[str, ...] = (),
    ) -> M:
        """Runs ``work`` once per request id: a retry gets the first answer, a first
        refusal included; the same id with other parameters is REQUEST_ID_REUSED."""
        if not request_id:
            return work()
        print_ = fingerprint(request, *ignored)
        who = self._key(principal)
        now = self._now()
        refusal: LicenseError | None = None
        with self.store.write():
            seen = self.store.find_request(who, method, request_id)
            if seen is not None:
                if seen["fingerprint"] != print_:
                    raise LicenseError(
                        "REQUEST_ID_REUSED",
                        "this request id was used with other parameters",
                        Code.ALREADY_EXISTS,
                        metadata={"requestId": request_id},
                    )
                if seen["status"] is not None:
                    raise ReplayedError(status_pb2.Status.FromString(seen["status"]))
                return response_type.FromString(seen["response"])
            try:
                response = work()
            except LicenseError as err:
                if err.code in (
                    Code.INVALID_ARGUMENT,
                    Code.RESOURCE_EXHAUSTED,
                ):
                    raise  # not an answer about the request's subject: nothing to replay
                self.store.save_request(
                    who, method, request_id, print_, now, status=err.to_status().SerializeToString()
                )
                refusal = err
            else:
                self.store.save_request(
                    who, method, request_id, print_, now, response=response.SerializeToString()
                )
        if refusal is not None:
            raise refusal
        return response

    # --- conversions ---

    def _code_pb(self, rec: CodeRecord, now: datetime) -> pb.Code:
        expire = terms.expire_at(rec, now)
        out = pb.Code(
            code=format_code(rec.code),
            terms=pb.CodeTerms(
                product_id=rec.product_id,
                kind=_name(pb.CodeKind, rec.kind),
                coverage=_name(pb.Coverage, rec.coverage),
                unlimited=rec.unlimited,
                grace_period=to_duration(rec.grace),
                max_devices=rec.max_devices,
                slot_kind=_name(pb.SlotKind, rec.slot_kind),
                trial=rec.trial,
                free=rec.free,
                auto_renew=rec.auto_renew,
                purchase_channel=_name(pb.PurchaseChannel, rec.purchase_channel),
                provider_name=rec.provider_name,
                order_number=rec.order_number,
            ),
            status=_name(pb.CodeStatus, terms.status_at(rec, now)),
            phase=_name(pb.Phase, terms.phase_at(rec, now)),
            auto_renew=rec.auto_renew,
            prepaid_periods=rec.prepaid_periods,
            entitlements=[_name(pb.Entitlement, e) for e in terms.entitlements_at(rec, now)],
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

    @staticmethod
    def _product_pb(product: Product) -> pb.Product:
        return pb.Product(
            product_id=product.product_id,
            display_name=product.display_name,
            console_managed=product.console_managed,
            released_regions=list(product.released_regions),
            min_app_version=product.min_app_version,
            max_app_version=product.max_app_version,
            create_time=to_timestamp(product.create_time),
        )

    def _grant_pb(self, grant: g.GrantRecord, rec: CodeRecord | None, now: datetime) -> pb.Grant:
        out = pb.Grant(
            grant_id=grant.grant_id,
            code=format_code(grant.code),
            purpose=_name(pb.GrantPurpose, grant.purpose),
            device_id=grant.device_id,
            state=_name(pb.GrantState, grant.state),
            expire_time=to_timestamp(grant.expire_time),
            abort_reason=grant.abort_reason,
            create_time=to_timestamp(grant.create_time),
        )
        if grant.end_time is not None:
            out.end_time.CopyFrom(to_timestamp(grant.end_time))
        if rec is not None:
            out.code_details.CopyFrom(self._code_pb(rec, now))
        return out

    # --- products ---

    def CreateProduct(self, request: pb.CreateProductRequest, context: Any) -> Any:
        self._require("provider")
        p = request.product
        v = val.Violations()
        if not PRODUCT_ID.match(p.product_id):
            v.add("product.product_id", "must be 1-64 of a-z, 0-9, '-', '_'")
        val.text(v, "product.display_name", p.display_name, max_len=200, required=True)
        regions = [region_code(r) or "" for r in p.released_regions]
        if len(regions) > 300:
            v.add("product.released_regions", "at most 300 regions")
        for i, region in enumerate(regions):
            if not region:
                v.add(f"product.released_regions[{i}]", "must be an ISO 3166-1 alpha-2 code")
        for field in ("min_app_version", "max_app_version"):
            value = getattr(p, field)
            if value and (len(value) > 64 or not VERSION.match(value)):
                v.add(f"product.{field}", "must be dotted numbers such as 10.2")
        v.raise_if_any()
        if (
            p.min_app_version
            and p.max_app_version
            and compare_versions(p.min_app_version, p.max_app_version) >= 0
        ):
            raise LicenseError.invalid(
                "product.max_app_version", "must be greater than min_app_version"
            )
        product = Product(
            product_id=p.product_id,
            display_name=p.display_name,
            console_managed=p.console_managed,
            released_regions=tuple(dict.fromkeys(regions)),
            min_app_version=p.min_app_version,
            max_app_version=p.max_app_version,
            create_time=self._now(),
        )
        return pb.CreateProductResponse(product=self._product_pb(self.ops.create_product(product)))

    def GetProduct(self, request: pb.GetProductRequest, context: Any) -> Any:
        if not PRODUCT_ID.match(request.product_id):
            raise LicenseError.invalid("product_id", "must be 1-64 of a-z, 0-9, '-', '_'")
        return pb.GetProductResponse(
            product=self._product_pb(self.ops.get_product(request.product_id))
        )

    def ListProducts(self, request: pb.ListProductsRequest, context: Any) -> Any:
        size = val.page_size(request.page_size)
        after = val.decode_page_token(request.page_token, str) or ""
        found = self.store.list_products(after, size + 1)
        page = found[:size]
        token = val.encode_page_token(page[-1].product_id) if len(found) > size else ""
        return pb.ListProductsResponse(
            products=[self._product_pb(p) for p in page], next_page_token=token
        )

    # --- codes ---

    def _issue_terms(self, t: pb.CodeTerms) -> IssueTerms:
        v = val.Violations()
        if not PRODUCT_ID.match(t.product_id):
            v.add("terms.product_id", "must be 1-64 of a-z, 0-9, '-', '_'")
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
            grace = val.term_length(
                v, "terms.grace_period", t.grace_period, timedelta(0), MAX_DURATION
            )
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

    def IssueCodes(self, request: pb.IssueCodesRequest, context: Any) -> Any:
        principal = self._require("provider")
        issue = self._issue_terms(request.terms)
        v = val.Violations()
        val.count(v, "count", request.count, 1, 1000)
        val.request_id(v, request.request_id, required=False)
        v.raise_if_any()

        def work() -> pb.IssueCodesResponse:
            now = self._now()
            records = self.ops.issue_codes(principal.name, issue, request.count, now)
            return pb.IssueCodesResponse(codes=[self._code_pb(r, now) for r in records])

        return self._idempotent(
            principal, "IssueCodes", request.request_id, request, pb.IssueCodesResponse, work
        )

    def _find(
        self, principal: Principal, text: str, field: str = "code", on_behalf_of: str = ""
    ) -> CodeRecord:
        """A code the caller may see, evaluated now; S3 counts the misses."""
        now = self._now()
        subject = self._subject(principal, on_behalf_of)
        self._check_budget(subject, now)
        code = normalize_code(text, field)
        rec = self.ops.read_code(code, self._scope(principal), now)
        if rec is None:
            self._lookup_failed(subject, now)
            raise code_not_found(code)
        return rec

    def GetCode(self, request: pb.GetCodeRequest, context: Any) -> Any:
        principal = self._require("provider", "peer")
        rec = self._find(principal, request.code, on_behalf_of=request.on_behalf_of)
        return pb.GetCodeResponse(code=self._code_pb(rec, self._now()))

    def BatchGetCodes(self, request: pb.BatchGetCodesRequest, context: Any) -> Any:
        principal = self._require("provider", "peer")
        if len(request.codes) > 1000:
            raise LicenseError.invalid("codes", "at most 1000 codes")
        now = self._now()
        subject = self._subject(principal, request.on_behalf_of)
        self._check_budget(subject, now)
        wanted = [normalize_code(c, f"codes[{i}]") for i, c in enumerate(request.codes)]
        found = self.ops.read_codes(wanted, self._scope(principal), now)
        # Each unknown code is one guess (the same code re-spelled is one): a batch
        # holding more than the budget leaves is refused whole, answering none.
        self._lookup_failed(subject, now, len({c for c in wanted if c not in found}))
        return pb.BatchGetCodesResponse(
            codes=[self._code_pb(found[c], now) for c in wanted if c in found]
        )

    def ListCodes(self, request: pb.ListCodesRequest, context: Any) -> Any:
        principal = self._require("provider")
        size = val.page_size(request.page_size)
        after = val.decode_page_token(request.page_token, int) or 0
        v = val.Violations()
        if request.product_id and not PRODUCT_ID.match(request.product_id):
            v.add("product_id", "must be 1-64 of a-z, 0-9, '-', '_'")
        status = val.enum(v, "status", request.status, pb.CodeStatus, allow_unset=True)
        v.raise_if_any()
        now = self._now()
        page, last = self.ops.list_codes(
            principal.name, after, size, request.product_id, status, now
        )
        return pb.ListCodesResponse(
            codes=[self._code_pb(r, now) for r in page],
            next_page_token=val.encode_page_token(last) if last is not None else "",
        )

    # --- lifecycle ---

    def _change(
        self,
        principal: Principal,
        text: str,
        change: Callable[[CodeRecord, datetime], CodeRecord],
    ) -> pb.Code:
        """A provider's lifecycle change to one of its codes, evaluated and stored now."""
        now = self._now()
        subject = self._subject(principal)
        self._check_budget(subject, now)
        code = normalize_code(text)
        try:
            rec = self.ops.change_code(code, principal.name, now, lambda r: change(r, now))
        except LicenseError as err:
            if err.reason == "CODE_NOT_FOUND":
                self._lookup_failed(subject, now)
            raise
        return self._code_pb(rec, now)

    def PauseSubscription(self, request: pb.PauseSubscriptionRequest, context: Any) -> Any:
        principal = self._require("provider")
        return pb.PauseSubscriptionResponse(code=self._change(principal, request.code, terms.pause))

    def ResumeSubscription(self, request: pb.ResumeSubscriptionRequest, context: Any) -> Any:
        principal = self._require("provider")
        return pb.ResumeSubscriptionResponse(
            code=self._change(principal, request.code, terms.resume)
        )

    def _periods_call(self, request: Any, method: str, response_type: Any, rule: Any) -> Any:
        principal = self._require("provider")
        normalize_code(request.code)
        v = val.Violations()
        val.count(v, "periods", request.periods, 1, 100)
        val.request_id(v, request.request_id, required=False)
        v.raise_if_any()

        def work() -> Any:
            code = self._change(
                principal, request.code, lambda r, now: rule(r, request.periods, now)
            )
            return response_type(code=code)

        return self._idempotent(principal, method, request.request_id, request, response_type, work)

    def RenewSubscription(self, request: pb.RenewSubscriptionRequest, context: Any) -> Any:
        return self._periods_call(
            request, "RenewSubscription", pb.RenewSubscriptionResponse, terms.renew
        )

    def RecordPrepayment(self, request: pb.RecordPrepaymentRequest, context: Any) -> Any:
        return self._periods_call(
            request, "RecordPrepayment", pb.RecordPrepaymentResponse, terms.record_prepayment
        )

    def CancelSubscription(self, request: pb.CancelSubscriptionRequest, context: Any) -> Any:
        principal = self._require("provider")
        return pb.CancelSubscriptionResponse(
            code=self._change(
                principal, request.code, lambda r, now: terms.cancel(r, request.immediately, now)
            )
        )

    def BlockCode(self, request: pb.BlockCodeRequest, context: Any) -> Any:
        principal = self._require("provider")
        v = val.Violations()
        val.text(v, "reason", request.reason, max_len=500)
        v.raise_if_any()
        return pb.BlockCodeResponse(
            code=self._change(
                principal, request.code, lambda r, now: terms.block(r, request.reason)
            )
        )

    def UnblockCode(self, request: pb.UnblockCodeRequest, context: Any) -> Any:
        principal = self._require("provider")
        return pb.UnblockCodeResponse(
            code=self._change(principal, request.code, lambda r, now: terms.unblock(r))
        )

    def SetAutoRenewal(self, request: pb.SetAutoRenewalRequest, context: Any) -> Any:
        principal = self._require("provider")
        answer: dict[str, str] = {}

        def change(rec: CodeRecord, now: datetime) -> CodeRecord:
            route = routing.route_for(rec.purchase_channel, rec.order_number)
            if route == routing.OWN_SUPPORT and routing.keyslot_owns(rec.purchase_channel):
                answer["route"] = routing.SELF_SERVICE
                return terms.set_auto_renew(rec, request.auto_renew, now)
            answer["route"] = route
            return rec  # someone else owns the renewal: only the route is answered

        code = self._change(principal, request.code, change)
        return pb.SetAutoRenewalResponse(
            code=code, route=_name(pb.AutoRenewalRoute, answer["route"])
        )

    # --- L8 routing and support ---

    def GetAutoRenewalRoute(self, request: pb.GetAutoRenewalRouteRequest, context: Any) -> Any:
        principal = current_principal()
        if request.code:
            if principal.kind not in ("provider", "peer"):
                raise LicenseError.denied("only providers and the peer look codes up")
            rec = self._find(principal, request.code)
            channel, order = rec.purchase_channel, rec.order_number
        else:
            v = val.Violations()
            channel = val.enum(v, "purchase_channel", request.purchase_channel, pb.PurchaseChannel)
            val.order_number(v, "order_number", request.order_number)
            v.raise_if_any()
            order = request.order_number
        route = routing.route_for(channel, order)
        return pb.GetAutoRenewalRouteResponse(
            route=_name(pb.AutoRenewalRoute, route), instructions=routing.INSTRUCTIONS[route]
        )

    def CreateSupportRequest(self, request: pb.CreateSupportRequestRequest, context: Any) -> Any:
        principal = self._require("provider", "portal", "console")
        s = request.support_request
        now = self._now()
        v = val.Violations()
        val.text(v, "support_request.reason", s.reason, max_len=2000, required=True)
        val.past_date(v, "support_request.purchase_date", s.purchase_date, now.date())
        val.text(v, "support_request.full_name", s.full_name, max_len=200, required=True)
        val.email(v, "support_request.email", s.email)
        val.order_number(v, "support_request.order_number", s.order_number)
        v.raise_if_any()
        stored = pb.SupportRequest(
            support_request_id="sr_" + secrets.token_hex(10),
            reason=s.reason,
            purchase_date=s.purchase_date,
            full_name=s.full_name,
            email=s.email,
            order_number=s.order_number,
            create_time=to_timestamp(now),
        )
        self.store.insert_support_request(
            {
                "support_request_id": stored.support_request_id,
                "principal": self._key(principal),
                "reason": s.reason,
                "purchase_date": s.purchase_date,
                "full_name": s.full_name,
                "email": s.email,
                "order_number": s.order_number,
                "create_us": to_epoch_us(now),
            }
        )
        return pb.CreateSupportRequestResponse(support_request=stored)

    # --- grants (H1-H3) ---

    def PrepareGrant(self, request: pb.PrepareGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        now = self._now()
        code = normalize_code(request.code)
        v = val.Violations()
        purpose = val.enum(v, "purpose", request.purpose, pb.GrantPurpose)
        d = request.device
        val.ascii_key(v, "device.device_id", d.device_id, max_len=val.MAX_ID, required=True)
        if d.app_version and (len(d.app_version) > 64 or not VERSION.match(d.app_version)):
            v.add("device.app_version", "must be dotted numbers such as 10.2")
        region = region_code(d.region) if d.region else ""
        if region is None:
            v.add("device.region", "must be an ISO 3166-1 alpha-2 code")
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
        subject = self._subject(principal, request.on_behalf_of)

        def work() -> pb.PrepareGrantResponse:
            # Checked only for a new request: a recovery retry after the deadline
            # must still get its first answer (H1, H4), not INVALID_ARGUMENT.
            late = val.Violations()
            held = val.grant_deadline(late, "expire_time", deadline, now, MAX_GRANT_HOLD)
            late.raise_if_any()
            # S3, likewise for a new request only, and under the write lock with its count.
            self._check_budget(subject, now)
            try:
                grant, rec = self.ops.prepare_grant(
                    code=code,
                    purpose=purpose,
                    device=g.DeviceContext(
                        device_id=d.device_id,
                        app_version=d.app_version,
                        region=region or "",
                        current_code=current,
                    ),
                    caller=g.CallerContext(channel=channel, role=role),
                    expire_time=held,
                    now=now,
                )
            except LicenseError as err:
                if err.reason == "CODE_NOT_FOUND":
                    self._lookup_failed(subject, now)
                raise
            return pb.PrepareGrantResponse(grant=self._grant_pb(grant, rec, now))

        # A retry may recompute its deadline, and recovery names no end caller:
        # it is still the same request (H1).
        return self._idempotent(
            principal,
            "PrepareGrant",
            request.request_id,
            request,
            pb.PrepareGrantResponse,
            work,
            ignored=("expire_time", "on_behalf_of"),
        )

    def _grant_id(self, v: val.Violations, grant_id: str) -> None:
        val.ascii_key(v, "grant_id", grant_id, max_len=val.MAX_ID, required=True)

    def CommitGrant(self, request: pb.CommitGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        v = val.Violations()
        self._grant_id(v, request.grant_id)
        val.request_id(v, request.request_id, required=True)
        if request.app_version and (
            len(request.app_version) > 64 or not VERSION.match(request.app_version)
        ):
            v.add("app_version", "must be dotted numbers such as 10.2")
        v.raise_if_any()

        def work() -> pb.CommitGrantResponse:
            now = self._now()
            grant, rec = self.ops.commit_grant(request.grant_id, request.app_version, now)
            return pb.CommitGrantResponse(grant=self._grant_pb(grant, rec, now))

        return self._idempotent(
            principal, "CommitGrant", request.request_id, request, pb.CommitGrantResponse, work
        )

    def AbortGrant(self, request: pb.AbortGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        v = val.Violations()
        self._grant_id(v, request.grant_id)
        val.request_id(v, request.request_id, required=True)
        val.text(v, "reason", request.reason, max_len=200)
        v.raise_if_any()

        def work() -> pb.AbortGrantResponse:
            now = self._now()
            grant, rec = self.ops.abort_grant(request.grant_id, request.reason, now)
            return pb.AbortGrantResponse(grant=self._grant_pb(grant, rec, now))

        return self._idempotent(
            principal, "AbortGrant", request.request_id, request, pb.AbortGrantResponse, work
        )

    def WatchCodeChanges(self, request_iterator: Any, context: Any) -> Any:
        self._require("peer")  # checked before the stream starts (see the interceptor)
        feed = self.store.feed
        watch = feed.open()
        context.add_callback(lambda: feed.remove(watch))
        threading.Thread(
            target=_read_acks, args=(request_iterator, watch), name="watch-acks", daemon=True
        ).start()
        return _watch_responses(watch, context, feed)

    def GetGrant(self, request: pb.GetGrantRequest, context: Any) -> Any:
        self._require("peer")
        v = val.Violations()
        self._grant_id(v, request.grant_id)
        v.raise_if_any()
        now = self._now()
        grant, rec = self.ops.get_grant(request.grant_id, now)
        return pb.GetGrantResponse(grant=self._grant_pb(grant, rec, now))


def _read_acks(requests: Any, watch: Watch) -> None:
    """Applies the watcher's acknowledgements until its side of the stream ends."""
    try:
        for request in requests:
            watch.ack(request.ack_sequence)
    except Exception:  # noqa: BLE001 - a broken stream only ends the watch
        pass
    watch.close()


def _watch_responses(watch: Watch, context: Any, feed: CodeFeed) -> Iterator[Any]:
    try:
        yield pb.WatchCodeChangesResponse(sequence=1)
        while context.is_active() and not watch.closed:
            batch = watch.next_batch(timeout=0.5)
            if batch is not None:
                codes = [format_code(code) for code in batch[1]]  # as in Code.code
                yield pb.WatchCodeChangesResponse(sequence=batch[0], codes=codes)
    finally:
        feed.remove(watch)
