"""The device service's license client: what it sends, without a server."""

from __future__ import annotations

from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service.license_client import BATCH_LIMIT, GrpcLicensePeer


def test_d9_a_long_code_list_is_read_in_calls_the_license_service_accepts() -> None:
    # An address nothing listens on: the channel connects only when used,
    # and the call is replaced below, so no request leaves the process.
    peer = GrpcLicensePeer("127.0.0.1:9", "token", deadline=1.0, cache_size=0)
    sent: list[int] = []

    def call(method: str, request: Any) -> Any:
        assert method == "BatchGetCodes"
        sent.append(len(request.codes))
        return lpb.BatchGetCodesResponse(codes=[lpb.Code(code=c) for c in request.codes])

    peer.call = call  # type: ignore[method-assign]
    codes = [f"CODE{i:05d}" for i in range(2 * BATCH_LIMIT + 1)]
    try:
        found = peer.batch_get_codes(codes)
    finally:
        peer.close()
    assert sent == [BATCH_LIMIT, BATCH_LIMIT, 1]
    assert [c.code for c in found] == codes
