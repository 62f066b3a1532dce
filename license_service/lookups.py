"""Use cases that look a caller's code up: what the caller may see (S2) and how many
unknown codes it may ask for before it is refused (S3).

Failed look-ups are counted per caller; for the peer, per end caller it names
(``on_behalf_of``). Its own work (naming no one) is never limited. The budget
lives in the database, so a restart forgives nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from keyslot_server.auth import Principal, caller_key
from keyslot_server.budget import FailureBudget
from keyslot_server.observe import NOBODY, Observer
from license_service import grants as g
from license_service import routing, terms
from license_service.codes import normalize_code
from license_service.errors import LicenseError
from license_service.ops import LicenseOps, code_not_found
from license_service.terms import CodeRecord

# The end caller the peer names for a look-up (S3): printable ASCII, no blanks.
ON_BEHALF_OF = re.compile(r"[\x21-\x7e]{1,128}")

Change = Callable[[CodeRecord, datetime], CodeRecord]


def scope(principal: Principal) -> str | None:
    """Whose codes a caller sees: the peer all, a provider its own (S2)."""
    return None if principal.kind == "peer" else principal.name


def _too_many(wait: timedelta) -> LicenseError:
    return LicenseError.rate_limited(  # type: ignore[return-value]
        "TOO_MANY_FAILED_LOOKUPS", "too many failed code look-ups; retry later", wait
    )


class CodeLookups:
    """Code look-ups and changes by callers who could be guessing codes."""

    def __init__(self, ops: LicenseOps, budget: FailureBudget, observer: Observer = NOBODY) -> None:
        self.ops = ops
        self.budget = budget
        self.observer = observer  # told of every refusal past the budget

    # --- S3: failed look-ups ------------------------------------------------------------------

    def subject(self, principal: Principal, on_behalf_of: str = "") -> str | None:
        """Whose budget a look-up uses: the caller's own; for the peer, the end caller it
        names (``on_behalf_of``), or None for its own work, which is never limited."""
        if principal.kind != "peer":
            return caller_key(principal)
        if not on_behalf_of:
            return None
        if not ON_BEHALF_OF.fullmatch(on_behalf_of):
            raise LicenseError.invalid("on_behalf_of", "must be 1-128 printable ASCII characters")
        return f"{caller_key(principal)}/{on_behalf_of}"

    def check_budget(self, subject: str | None, now: datetime) -> None:
        """Refuses every look-up of a subject past its budget, before it is answered."""
        wait = self.budget.retry_after(subject, now) if subject else None
        if wait is not None:
            self.observer.lookup_refused("code", "caller")
            raise _too_many(wait)

    def lookup_failed(self, subject: str | None, now: datetime, failures: int = 1) -> None:
        """Counts failed look-ups; refuses instead of answering them when they do not fit
        the budget (a batch of guesses, or guesses racing each other past it)."""
        wait = self.budget.charge(subject, now, failures) if subject else None
        if wait is not None:
            self.observer.lookup_refused("code", "caller")
            raise _too_many(wait)

    # --- codes ----------------------------------------------------------------------------------

    def find(
        self,
        principal: Principal,
        text: str,
        now: datetime,
        *,
        field: str = "code",
        on_behalf_of: str = "",
    ) -> CodeRecord:
        """A code the caller may see, evaluated at ``now``; S3 counts the misses."""
        subject = self.subject(principal, on_behalf_of)
        self.check_budget(subject, now)
        code = normalize_code(text, field)
        rec = self.ops.read_code(code, scope(principal), now)
        if rec is None:
            self.lookup_failed(subject, now)
            raise code_not_found(code)
        return rec

    def find_many(
        self, principal: Principal, texts: list[str], now: datetime, on_behalf_of: str = ""
    ) -> list[CodeRecord]:
        """The codes the caller may see among ``texts``, in their order, evaluated at ``now``."""
        subject = self.subject(principal, on_behalf_of)
        self.check_budget(subject, now)
        wanted = [normalize_code(c, f"codes[{i}]") for i, c in enumerate(texts)]
        found = self.ops.read_codes(wanted, scope(principal), now)
        # Each unknown code is one guess (the same code re-spelled is one): a batch
        # holding more than the budget leaves is refused whole, answering none.
        self.lookup_failed(subject, now, len({c for c in wanted if c not in found}))
        return [found[c] for c in wanted if c in found]

    def change(self, principal: Principal, text: str, now: datetime, change: Change) -> CodeRecord:
        """A provider's lifecycle change to one of its codes, evaluated and stored at ``now``."""
        subject = self.subject(principal)
        self.check_budget(subject, now)
        code = normalize_code(text)
        try:
            return self.ops.change_code(code, principal.name, now, lambda r: change(r, now))
        except LicenseError as err:
            if err.reason == "CODE_NOT_FOUND":
                self.lookup_failed(subject, now)
            raise

    def set_auto_renewal(
        self, principal: Principal, text: str, auto_renew: bool, now: datetime
    ) -> tuple[CodeRecord, str]:
        """Changes automatic renewal where keyslot owns it (L8); the code and the route."""
        answer: dict[str, str] = {}

        def change(rec: CodeRecord, now: datetime) -> CodeRecord:
            route = routing.route_for(rec.purchase_channel, rec.order_number)
            if route == routing.OWN_SUPPORT and routing.keyslot_owns(rec.purchase_channel):
                answer["route"] = routing.SELF_SERVICE
                return terms.set_auto_renew(rec, auto_renew, now)
            answer["route"] = route
            return rec  # someone else owns the renewal: only the route is answered

        rec = self.change(principal, text, now, change)
        return rec, answer["route"]

    def renewal_route(self, principal: Principal, text: str, now: datetime) -> str:
        """Who disables a code's automatic renewal (L8)."""
        rec = self.find(principal, text, now)
        return routing.route_for(rec.purchase_channel, rec.order_number)

    # --- grants (H1-H3) -------------------------------------------------------------------------

    def prepare_grant(
        self,
        principal: Principal,
        *,
        on_behalf_of: str,
        code: str,
        purpose: str,
        device: g.DeviceContext,
        caller: g.CallerContext,
        expire_time: datetime,
        now: datetime,
    ) -> tuple[g.GrantRecord, CodeRecord]:
        """A PREPARED grant; S3 counts an unknown code against the end caller."""
        subject = self.subject(principal, on_behalf_of)
        # Checked under the request log's write lock, together with the count.
        self.check_budget(subject, now)
        try:
            return self.ops.prepare_grant(
                code=code,
                purpose=purpose,
                device=device,
                caller=caller,
                expire_time=expire_time,
                now=now,
            )
        except LicenseError as err:
            if err.reason == "CODE_NOT_FOUND":
                self.lookup_failed(subject, now)
            raise
