"""S3 for connection codes (D1): unknown codes are limited per client address and overall.

ConnectDevice has no caller identity to count against: the bearer is the
connection code being guessed. So its failures are counted per client
address (an IPv6 client by its /64) and, so that many addresses together gain
nothing either, against one budget for everyone. Past either budget every
attempt is refused TOO_MANY_FAILED_LOOKUPS, a right code included: answering
right codes while refusing wrong ones would still tell a guesser which is
which. The counts are rows of the shared failure budget (keyslot_server.budget)
in the device service's database, so a restart forgives nothing.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from device_service.errors import DeviceError
from device_service.settings import Settings
from device_service.store import DeviceStore
from keyslot_server.auth import hash_token
from keyslot_server.budget import FailureBudget, client_address
from keyslot_server.clock import Clock
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.retention import Prune

EVERYONE = "everyone"


class ConnectionLimits:
    """The two connection-code budgets of one device service."""

    def __init__(
        self, store: DeviceStore, clock: Clock, settings: Settings, observer: Observer = NOBODY
    ) -> None:
        self.store = store
        self.clock = clock
        self.observer = observer  # told of every refusal past a budget
        window = timedelta(seconds=settings.connection_code_window)
        self.address = FailureBudget(store, settings.connection_code_budget, window)
        self.everyone = FailureBudget(store, settings.connection_code_global_budget, window)

    def _subjects(self, peer: str) -> list[tuple[FailureBudget, str, str]]:
        return [
            (self.address, "address", f"address:{client_address(peer)}"),
            (self.everyone, EVERYONE, EVERYONE),
        ]

    def check(self, peer: str, compact: str) -> None:
        """Refuses the attempt past either budget; counts it (and refuses it
        CONNECTION_CODE_NOT_FOUND) when the code is unknown. ``peer`` is gRPC's
        ``context.peer()``, ``compact`` the normalised code."""
        now = self.clock.now()
        subjects = self._subjects(peer)
        for budget, by, subject in subjects:
            wait = budget.retry_after(subject, now)
            if wait is not None:
                self.observer.lookup_refused("connection_code", by)
                raise _too_many(wait, by)
        # Read again under ConnectDevice's write; a known code writes nothing here.
        if self.store.connection_code(hash_token(compact)) is not None:
            return
        charged = self.store.count_failures(
            [partial(budget.charge, subject, now) for budget, _, subject in subjects]
        )
        waits = [(wait, by) for wait, (_, by, _) in zip(charged, subjects, strict=True)]
        late = [(wait, by) for wait, by in waits if wait is not None]
        if late:  # guesses racing each other past a budget learn nothing
            wait, by = max(late)
            self.observer.lookup_refused("connection_code", by)
            raise _too_many(wait, by)
        raise DeviceError.not_found("CONNECTION_CODE_NOT_FOUND", "no such connection code")

    def prune_rule(self) -> Prune:
        """Both budgets share the table and the window: one rule prunes them."""
        return self.address.prune_rule()


def _too_many(wait: timedelta, by: str) -> DeviceError:
    whose = "from this address" if by == "address" else "from all clients"
    return DeviceError.rate_limited(  # type: ignore[return-value]
        "TOO_MANY_FAILED_LOOKUPS",
        f"too many unknown connection codes {whose}; retry later",
        wait,
        limitedBy=by,
    )
