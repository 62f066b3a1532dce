"""H1 for the license service: the shared request log (keyslot_server.requests) over
the license store's ``requests`` table.

A mutating call that carries a request id runs once: a retry gets the first
answer byte for byte, a first refusal included (stored as its full rich
status), and the same id with other parameters is REQUEST_ID_REUSED. The
answer is stored in the transaction that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from keyslot_server import requests
from keyslot_server.clock import Clock
from keyslot_server.timeconv import to_epoch_us
from license_service.errors import LicenseError
from license_service.store import LicenseStore

M = TypeVar("M", bound=Message)


class RequestLog:
    """Runs a call once per (caller, method, request id)."""

    def __init__(self, store: LicenseStore, clock: Clock) -> None:
        self.log = requests.RequestLog(
            store, "requests", LicenseError, lambda: int(to_epoch_us(clock.now()) or 0)
        )

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
        key = requests.Key(caller, method, request_id)
        return self.log.run(key, fingerprint, response_type, work)
