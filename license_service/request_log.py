"""H1: idempotency by request id, over the license store's request log.

A mutating call that carries a request id runs once: a retry gets the first
answer byte for byte, a first refusal included (stored as its full rich
status), and the same id with other parameters is REQUEST_ID_REUSED. The
answer is stored in the transaction that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message
from google.rpc import status_pb2

from keyslot_server.clock import Clock
from keyslot_server.errors import Code
from license_service.errors import LicenseError, ReplayedError
from license_service.store import LicenseStore

M = TypeVar("M", bound=Message)

# Not answers about the request's subject: nothing to replay, a retry is judged afresh.
_NOT_STORED = (Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED)


class RequestLog:
    """Runs a call once per (caller, method, request id)."""

    def __init__(self, store: LicenseStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def run(
        self,
        caller: str,
        method: str,
        request_id: str,
        fingerprint: str,
        response_type: type[M],
        work: Callable[[], M],
    ) -> M:
        """``work()``'s answer, or the first answer to ``request_id``; without an id,
        just ``work()``. ``fingerprint`` names the parameters (request id excluded)."""
        if not request_id:
            return work()
        now = self.clock.now()
        refusal: LicenseError | None = None
        with self.store.write():
            seen = self.store.find_request(caller, method, request_id)
            if seen is not None:
                if seen["fingerprint"] != fingerprint:
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
                if err.code in _NOT_STORED:
                    raise
                status = err.to_status().SerializeToString()
                self.store.save_request(caller, method, request_id, fingerprint, now, status=status)
                refusal = err  # raised after the commit, so the refusal is stored
            else:
                response_bytes = response.SerializeToString()
                self.store.save_request(
                    caller, method, request_id, fingerprint, now, response=response_bytes
                )
        if refusal is not None:
            raise refusal
        return response
