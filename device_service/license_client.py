"""The device service's calls to the license service over gRPC (``peer.LicensePeer``).

Every call carries the peer token and a deadline; with TLS material the link is
mutual TLS (S5): the license service's certificate is verified against the
configured CA and the device service presents its client certificate. A refusal of the license
service is relayed as a DeviceError with the same reason (so a blocked code
reads CODE_BLOCKED at either service); an unreachable license service is
LICENSE_SERVICE_UNAVAILABLE.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import grpc
from keyslot.errors import from_rpc_error
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from device_service import peer
from device_service.code_cache import CodeCache
from device_service.errors import DeviceError
from keyslot_server import otel, trace
from keyslot_server.clock import Clock, SystemClock
from keyslot_server.errors import Code
from keyslot_server.observe import NOBODY, Observer

BATCH_LIMIT = 1000  # codes per BatchGetCodes call (the contract's limit)

# gRPC's reconnect back-off of the calls' channel (doc/connection-backoff.md).
CALL_CHANNEL_OPTIONS = [
    # A refused connect is retried 100 ms later (default 1 s): a restart heals at once.
    ("grpc.initial_reconnect_backoff_ms", 100),
    # At most 1 s (+ fixed 20 % jitter) between attempts (default 120 s: 24 s late), so < 2 s.
    ("grpc.max_reconnect_backoff_ms", 1000),
    # One attempt times out after 2 s (default 20 s): a SYN lost to a vanished host is re-sent.
    ("grpc.min_reconnect_backoff_ms", 2000),
]


class GrpcLicensePeer:
    """The LicensePeer (device_service.peer) over a channel, authenticated as the peer."""

    def __init__(
        self,
        address: str,
        token: str,
        deadline: float,
        clock: Clock | None = None,
        cache_size: int = 0,
        cache_max_age: float = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        observer: Observer = NOBODY,
    ) -> None:
        self.address = address
        self.deadline = deadline
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._credentials = credentials
        self.channel = self._open(CALL_CHANNEL_OPTIONS, traced=True)
        self.stub = lpb_grpc.LicenseServiceStub(self.channel)
        # Codes kept between changes (see code_cache); size 0 reads every time.
        self._watch_channel: grpc.Channel | None = None
        self.codes = CodeCache(
            self._watch, clock or SystemClock(), cache_size, cache_max_age, observer
        )
        self.codes.start()
        # Products never change once created (there is no update RPC): kept once read.
        self._products: dict[str, lpb.Product] = {}

    def _watch(self, requests: Any) -> Any:
        """Opens WatchCodeChanges on a channel of its own: its reconnect attempts
        while the license service is away must not put the calls' channel into
        back-off."""
        if self._watch_channel is None:
            self._watch_channel = self._open(
                [
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000),
                ]
            )
        stub = lpb_grpc.LicenseServiceStub(self._watch_channel)
        return stub.WatchCodeChanges(requests, metadata=self._metadata)

    def _open(self, options: list[tuple[str, Any]], traced: bool = False) -> grpc.Channel:
        """A channel to the license service; ``traced``: with OpenTelemetry's client
        span per call when tracing is on (the calls; not the hours-long watch)."""
        if self._credentials is None:
            channel = grpc.insecure_channel(self.address, options=options)
        else:
            channel = grpc.secure_channel(self.address, self._credentials, options=options)
        return otel.traced_channel(channel) if traced else channel

    def reconnect(self, credentials: grpc.ChannelCredentials | None) -> None:
        """New channels with new TLS material (SIGHUP after a certificate rotation).

        Calls in flight finish on the old channel, closed once their deadline has
        passed; the code watch re-opens on the new material when its stream ends."""
        self._credentials = credentials
        old = [self.channel]
        self.channel = self._open(CALL_CHANNEL_OPTIONS, traced=True)
        self.stub = lpb_grpc.LicenseServiceStub(self.channel)
        if self._watch_channel is not None:
            old.append(self._watch_channel)
            self._watch_channel = None
        closer = threading.Timer(self.deadline + 1.0, lambda: [c.close() for c in old])
        closer.daemon = True
        closer.start()

    def call(self, method: str, request: Any) -> Any:
        """Calls ``method`` with the peer token, the deadline and a child of the bound
        trace (``traceparent``; with tracing on, the channel sends it); relays refusals."""
        rpc = getattr(self.stub, method)
        metadata = self._metadata
        traceparent = trace.outgoing()  # the license side logs this call in the same trace
        if traceparent:
            metadata = (*metadata, (trace.HEADER, traceparent))
        try:
            return rpc(request, timeout=self.deadline, metadata=metadata)
        except grpc.RpcError as err:
            raise relay(err) from None

    # Shorthands for the calls the device service makes most.
    def get_code(self, code: str, on_behalf_of: str = "") -> lpb.Code:
        """One code; CODE_NOT_FOUND (and the other refusals) as the license service says.

        ``on_behalf_of`` names the end caller who typed the code (S3): the look-up
        then skips the cache, so a caller past its failed look-up budget is refused
        by the license service rather than answered from a kept code.
        """
        if on_behalf_of:
            request = lpb.GetCodeRequest(code=code, on_behalf_of=on_behalf_of)
            return self.call("GetCode", request).code
        return self.codes.get_many([code], self._get_one)[0]

    def batch_get_codes(self, codes: list[str]) -> list[lpb.Code]:
        """The codes found, in the order asked (canonical forms hit the cache)."""
        if not codes:
            return []
        return self.codes.get_many(codes, self._batch_get)

    def _get_one(self, codes: list[str]) -> list[lpb.Code]:
        return [self.call("GetCode", lpb.GetCodeRequest(code=codes[0])).code]

    def _batch_get(self, codes: list[str]) -> list[lpb.Code]:
        # BatchGetCodes takes at most BATCH_LIMIT codes: a longer list (the
        # sweeper's due take-overs after a mass expiry) goes in several calls
        # rather than being refused as a whole on every pass.
        found: list[lpb.Code] = []
        for start in range(0, len(codes), BATCH_LIMIT):
            request = lpb.BatchGetCodesRequest(codes=codes[start : start + BATCH_LIMIT])
            found += self.call("BatchGetCodes", request).codes
        return found

    def get_product(self, product_id: str) -> lpb.Product:
        """A product (its regions and app-version range), read once."""
        product = self._products.get(product_id)
        if product is None:
            request = lpb.GetProductRequest(product_id=product_id)
            product = self._products[product_id] = self.call("GetProduct", request).product
        return product

    # The grant RPCs of the handshake (H1: every one carries a request id).
    def prepare_grant(self, request: lpb.PrepareGrantRequest) -> lpb.Grant:
        return self.call("PrepareGrant", request).grant

    def commit_grant(self, grant_id: str, request_id: str, app_version: str = "") -> lpb.Grant:
        request = lpb.CommitGrantRequest(
            grant_id=grant_id, request_id=request_id, app_version=app_version
        )
        return self.call("CommitGrant", request).grant

    def abort_grant(self, grant_id: str, request_id: str, reason: str) -> lpb.Grant:
        request = lpb.AbortGrantRequest(grant_id=grant_id, request_id=request_id, reason=reason)
        return self.call("AbortGrant", request).grant

    def get_grant(self, grant_id: str) -> lpb.Grant:
        return self.call("GetGrant", lpb.GetGrantRequest(grant_id=grant_id)).grant

    def close(self) -> None:
        self.codes.stop()
        if self._watch_channel is not None:
            self._watch_channel.close()
        self.channel.close()


def relay(err: grpc.RpcError) -> DeviceError:
    """A license-side error as the DeviceError a device-service caller sees (see peer)."""
    code = err.code()  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return peer.unavailable()
    seen = from_rpc_error(err)  # the rich status, decoded as every client decodes it
    return peer.refused(
        seen.reason,
        seen.message,
        Code[seen.code.name],
        metadata=seen.metadata,
        violations=seen.field_violations,
        retry_delay=None if seen.retry_delay is None else timedelta(seconds=seen.retry_delay),
    )
