"""LicenseService servicer: checks who may call, converts proto ⇄ domain (``convert.py``)
and makes one call into the domain per RPC.

Request ids (H1) go through the request log, which stores the proto answer (or
the rich status of a refusal) to replay it byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from keyslot.license.v1 import license_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2_grpc as pb_grpc

from keyslot_server import formats
from keyslot_server.auth import Principal, caller_key, current_principal
from keyslot_server.clock import Clock
from license_service import convert, routing, terms
from license_service import validation as val
from license_service.codes import normalize_code
from license_service.convert import code_pb, fingerprint, grant_pb, product_pb
from license_service.errors import LicenseError
from license_service.feed import CodeFeed, watch_code_changes
from license_service.lookups import Change, CodeLookups
from license_service.ops import LicenseOps
from license_service.products import PRODUCT_ID
from license_service.request_log import RequestLog
from license_service.terms import CodeRecord


class LicenseApi(pb_grpc.LicenseServiceServicer):
    """The gRPC face of the license service."""

    def __init__(
        self,
        ops: LicenseOps,
        lookups: CodeLookups,
        requests: RequestLog,
        feed: CodeFeed,
        clock: Clock,
    ) -> None:
        self.ops = ops
        self.lookups = lookups  # S2 scope and S3 budget of code look-ups
        self.requests = requests  # H1
        self.feed = feed
        self.clock = clock

    @staticmethod
    def _require(*kinds: str) -> Principal:
        principal = current_principal()
        if principal.kind not in kinds:
            raise LicenseError.denied(f"{principal.kind} callers may not do this")
        return principal

    # --- products ---

    def CreateProduct(self, request: pb.CreateProductRequest, context: Any) -> Any:
        self._require("provider")
        product = convert.new_product(request.product, self.clock.now())
        return pb.CreateProductResponse(product=product_pb(self.ops.create_product(product)))

    def GetProduct(self, request: pb.GetProductRequest, context: Any) -> Any:
        if not PRODUCT_ID.match(request.product_id):
            raise LicenseError.invalid("product_id", "must be 1-64 of a-z, 0-9, '-', '_'")
        return pb.GetProductResponse(product=product_pb(self.ops.get_product(request.product_id)))

    def ListProducts(self, request: pb.ListProductsRequest, context: Any) -> Any:
        size, after = val.page(request.page_size, request.page_token, (str,), "products")
        page, last = self.ops.list_products(str(after[0]) if after else "", size)
        return pb.ListProductsResponse(
            products=[product_pb(p) for p in page],
            next_page_token=formats.encode_page_token((last,), "products") if last else "",
        )

    # --- codes ---

    def IssueCodes(self, request: pb.IssueCodesRequest, context: Any) -> Any:
        principal = self._require("provider")
        issue = convert.issue_terms(request.terms)
        v = val.Violations()
        val.count(v, "count", request.count, 1, 1000)
        val.request_id(v, request.request_id, required=False)
        v.raise_if_any()

        def work() -> pb.IssueCodesResponse:
            now = self.clock.now()
            records = self.ops.issue_codes(principal.name, issue, request.count, now)
            return pb.IssueCodesResponse(codes=[code_pb(r, now) for r in records])

        return self._once(principal, "IssueCodes", request, pb.IssueCodesResponse, work)

    def GetCode(self, request: pb.GetCodeRequest, context: Any) -> Any:
        principal = self._require("provider", "peer")
        now = self.clock.now()
        rec = self.lookups.find(principal, request.code, now, on_behalf_of=request.on_behalf_of)
        return pb.GetCodeResponse(code=code_pb(rec, now))

    def BatchGetCodes(self, request: pb.BatchGetCodesRequest, context: Any) -> Any:
        principal = self._require("provider", "peer")
        if len(request.codes) > 1000:
            raise LicenseError.invalid("codes", "at most 1000 codes")
        now = self.clock.now()
        found = self.lookups.find_many(principal, list(request.codes), now, request.on_behalf_of)
        return pb.BatchGetCodesResponse(codes=[code_pb(rec, now) for rec in found])

    def ListCodes(self, request: pb.ListCodesRequest, context: Any) -> Any:
        principal = self._require("provider")
        size, after = val.page(request.page_size, request.page_token, (int,), "codes")
        v = val.Violations()
        if request.product_id:
            convert.product_id(v, "product_id", request.product_id)
        status = val.enum(v, "status", request.status, pb.CodeStatus, allow_unset=True)
        v.raise_if_any()
        now = self.clock.now()
        page, last = self.ops.list_codes(
            principal.name, int(after[0]) if after else 0, size, request.product_id, status, now
        )
        return pb.ListCodesResponse(
            codes=[code_pb(r, now) for r in page],
            next_page_token=formats.encode_page_token((last,), "codes") if last is not None else "",
        )

    # --- lifecycle ---

    def _change(self, principal: Principal, text: str, change: Change) -> pb.Code:
        """A provider's lifecycle change to one of its codes, as the changed code."""
        now = self.clock.now()
        return code_pb(self.lookups.change(principal, text, now, change), now)

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

        def change(rec: CodeRecord, now: datetime) -> CodeRecord:
            return rule(rec, request.periods, now)

        def work() -> Any:
            return response_type(code=self._change(principal, request.code, change))

        return self._once(principal, method, request, response_type, work)

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
        now = self.clock.now()
        rec, route = self.lookups.set_auto_renewal(principal, request.code, request.auto_renew, now)
        return pb.SetAutoRenewalResponse(
            code=code_pb(rec, now), route=convert.enum_value(pb.AutoRenewalRoute, route)
        )

    # --- L8 routing and support ---

    def GetAutoRenewalRoute(self, request: pb.GetAutoRenewalRouteRequest, context: Any) -> Any:
        principal = current_principal()
        if request.code:
            if principal.kind not in ("provider", "peer"):
                raise LicenseError.denied("only providers and the peer look codes up")
            return convert.route_response(
                self.lookups.renewal_route(principal, request.code, self.clock.now())
            )
        v = val.Violations()
        channel = val.enum(v, "purchase_channel", request.purchase_channel, pb.PurchaseChannel)
        val.order_number(v, "order_number", request.order_number)
        v.raise_if_any()
        return convert.route_response(routing.route_for(channel, request.order_number))

    def CreateSupportRequest(self, request: pb.CreateSupportRequestRequest, context: Any) -> Any:
        principal = self._require("provider", "portal", "console")
        filing = convert.support_request(request.support_request, self.clock.now())
        filed = self.ops.file_support_request(caller_key(principal), filing)
        return pb.CreateSupportRequestResponse(support_request=convert.support_request_pb(filed))

    # --- grants (H1-H3) ---

    def PrepareGrant(self, request: pb.PrepareGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        now = self.clock.now()
        asked = convert.grant_request(request)

        def work() -> pb.PrepareGrantResponse:
            # Checked only for a new request: a recovery retry after the deadline
            # must still get its first answer (H1, H4), not INVALID_ARGUMENT.
            held = convert.grant_hold(asked.deadline, now)
            grant, rec = self.lookups.prepare_grant(
                principal,
                on_behalf_of=request.on_behalf_of,
                code=asked.code,
                purpose=asked.purpose,
                device=asked.device,
                caller=asked.caller,
                expire_time=held,
                now=now,
            )
            return pb.PrepareGrantResponse(grant=grant_pb(grant, rec, now))

        # A retry may recompute its deadline, and recovery names no end caller:
        # it is still the same request (H1).
        same = ("expire_time", "on_behalf_of")
        return self._once(principal, "PrepareGrant", request, pb.PrepareGrantResponse, work, same)

    def CommitGrant(self, request: pb.CommitGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        v = val.Violations()
        convert.grant_id(v, request.grant_id)
        val.request_id(v, request.request_id, required=True)
        convert.app_version(v, "app_version", request.app_version)
        v.raise_if_any()

        def work() -> pb.CommitGrantResponse:
            now = self.clock.now()
            grant, rec = self.ops.commit_grant(request.grant_id, request.app_version, now)
            return pb.CommitGrantResponse(grant=grant_pb(grant, rec, now))

        return self._once(principal, "CommitGrant", request, pb.CommitGrantResponse, work)

    def AbortGrant(self, request: pb.AbortGrantRequest, context: Any) -> Any:
        principal = self._require("peer")
        v = val.Violations()
        convert.grant_id(v, request.grant_id)
        val.request_id(v, request.request_id, required=True)
        val.text(v, "reason", request.reason, max_len=200)
        v.raise_if_any()

        def work() -> pb.AbortGrantResponse:
            now = self.clock.now()
            grant, rec = self.ops.abort_grant(request.grant_id, request.reason, now)
            return pb.AbortGrantResponse(grant=grant_pb(grant, rec, now))

        return self._once(principal, "AbortGrant", request, pb.AbortGrantResponse, work)

    def WatchCodeChanges(self, request_iterator: Any, context: Any) -> Any:
        self._require("peer")  # checked before the stream starts (see the interceptor)
        return watch_code_changes(self.feed, request_iterator, context)

    def GetGrant(self, request: pb.GetGrantRequest, context: Any) -> Any:
        self._require("peer")
        v = val.Violations()
        convert.grant_id(v, request.grant_id)
        v.raise_if_any()
        now = self.clock.now()
        grant, rec = self.ops.get_grant(request.grant_id, now)
        return pb.GetGrantResponse(grant=grant_pb(grant, rec, now))

    # --- H1: request ids ---

    def _once(
        self,
        principal: Principal,
        method: str,
        request: Any,
        response_type: Any,
        work: Callable[[], Any],
        ignored: tuple[str, ...] = (),
    ) -> Any:
        """``work()`` once per request id of the caller (H1): a retry gets the first answer.
        ``ignored`` fields may differ between a request and its retries."""
        rid = request.request_id
        print_ = fingerprint(request, *ignored) if rid else ""
        return self.requests.run(caller_key(principal), method, rid, print_, response_type, work)
