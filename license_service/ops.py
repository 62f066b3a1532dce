"""License operations: domain rules applied inside store transactions.

Each method takes plain values and returns domain records; ``api.py`` converts
proto messages to and from them (``convert.py``). The look-ups a caller could
guess with (S2, S3) go through ``lookups.py``; request ids (H1) through
``request_log.py``. Every write re-evaluates the code at ``now``
first (``apply_due_renewals``) so automatic renewals due before a change are
applied exactly once, whoever comes first: the sweeper, a read or a write (L4).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from keyslot_server.db import unit
from keyslot_server.errors import Code
from license_service import grants as g
from license_service import terms
from license_service.codes import generate_code
from license_service.errors import LicenseError
from license_service.products import Product
from license_service.store import LicenseStore
from license_service.support import SupportRequest
from license_service.terms import CodeRecord

log = logging.getLogger("keyslot.license")


def code_not_found(code: str) -> LicenseError:
    """NOT_FOUND for a code that does not exist or is not the caller's (S2: same answer)."""
    return LicenseError("CODE_NOT_FOUND", "no such code", Code.NOT_FOUND)


@dataclass
class IssueTerms:
    """The terms of an IssueCodes call, validated."""

    product_id: str
    kind: str
    coverage: str
    duration: timedelta | None
    grace: timedelta
    max_devices: int
    slot_kind: str
    trial: bool
    free: bool
    auto_renew: bool
    purchase_channel: str
    provider_name: str
    order_number: str


class LicenseOps:
    """The license service's use cases over one store."""

    def __init__(self, store: LicenseStore) -> None:
        self.store = store

    # --- products -------------------------------------------------------------------------

    def create_product(self, product: Product) -> Product:
        if not self.store.insert_product(product):
            raise LicenseError(
                "PRODUCT_EXISTS",
                f"product {product.product_id!r} exists",
                code=Code.ALREADY_EXISTS,
                metadata={"productId": product.product_id},
            )
        return product

    def list_products(self, after: str, page_size: int) -> tuple[list[Product], str | None]:
        """One page of products by id after ``after``; the last id when more follow."""
        found = self.store.list_products(after, page_size + 1)
        page = found[:page_size]
        return page, (page[-1].product_id if len(found) > page_size else None)

    def get_product(self, product_id: str) -> Product:
        product = self.store.get_product(product_id)
        if product is None:
            raise LicenseError.not_found(
                "PRODUCT_NOT_FOUND", "no such product", productId=product_id
            )
        return product

    # --- codes ----------------------------------------------------------------------------

    @unit
    def issue_codes(
        self, provider: str, issue: IssueTerms, count: int, now: datetime
    ) -> list[CodeRecord]:
        """Issues ``count`` codes with one set of terms, atomically."""
        with self.store.write():
            product = self.get_product(issue.product_id)
            seq = self.store.next_seq()
            fresh: list[CodeRecord] = []
            taken: set[str] = set()
            while len(fresh) < count:
                code = generate_code()
                if code in taken or self.store.code_exists(code):
                    continue  # ~2**-100 per code; cheap to be certain
                taken.add(code)
                fresh.append(
                    CodeRecord(
                        code=code,
                        provider=provider,
                        seq=seq + len(fresh),
                        console_managed=product.console_managed,
                        issue_time=now,
                        **vars(issue),
                    )
                )
            self.store.insert_codes(fresh, now)
        return fresh

    def read_code(self, code: str, provider: str | None, now: datetime) -> CodeRecord | None:
        """A code evaluated at ``now`` (renewals due applied in memory; the sweeper or
        the next write stores the same result)."""
        rec = self.store.get_code(code, provider)
        return terms.apply_due_renewals(rec, now) if rec else None

    def read_codes(
        self, codes: list[str], provider: str | None, now: datetime
    ) -> dict[str, CodeRecord]:
        found = self.store.get_codes(codes, provider)
        return {k: terms.apply_due_renewals(v, now) for k, v in found.items()}

    def list_codes(
        self,
        provider: str,
        after_seq: int,
        page_size: int,
        product_id: str,
        status: str,
        now: datetime,
    ) -> tuple[list[CodeRecord], int | None]:
        """One page of the provider's codes in issue order; the last seq when more follow."""
        page: list[CodeRecord] = []
        cursor = after_seq
        while True:
            batch = self.store.list_codes(provider, cursor, max(page_size, 200), product_id)
            for rec in batch:
                rec = terms.apply_due_renewals(rec, now)
                cursor = rec.seq
                if status and terms.status_at(rec, now) != status:
                    continue  # status is derived at now, so it is filtered here (L2)
                page.append(rec)
                if len(page) == page_size:
                    more = self.store.list_codes(provider, cursor, 1, product_id)
                    return page, (cursor if more else None)
            if len(batch) < max(page_size, 200):
                return page, None

    def _load_for_write(self, code: str, provider: str | None, now: datetime) -> CodeRecord:
        """Inside a write: the code with renewals due applied and stored."""
        rec = self.store.get_code(code, provider)
        if rec is None:
            raise code_not_found(code)
        renewed = terms.apply_due_renewals(rec, now)
        if renewed != rec:
            self.store.save_code(renewed, now)
        return renewed

    @unit
    def change_code(
        self,
        code: str,
        provider: str,
        now: datetime,
        change: Callable[[CodeRecord], CodeRecord],
    ) -> CodeRecord:
        """Applies a lifecycle change in one transaction; a refusal changes nothing."""
        with self.store.write():
            rec = self._load_for_write(code, provider, now)
            changed = change(rec)
            self.store.save_code(changed, now)
        return changed

    @unit
    def apply_renewals(self, code: str, now: datetime) -> bool:
        """Sweeper: stores the automatic renewals due for one code (L4); True if any."""
        with self.store.write():
            before = self.store.get_code(code)
            if before is None:
                return False
            after = self._load_for_write(code, None, now)
        return after != before

    # --- support requests (L8) ----------------------------------------------------------------

    def file_support_request(self, caller: str, request: SupportRequest) -> SupportRequest:
        """Stores a support request from ``caller``; returns it with its new id."""
        filed = replace(request, support_request_id="sr_" + secrets.token_hex(10))
        self.store.insert_support_request(caller, filed)
        return filed

    # --- grants (H1-H3) ---------------------------------------------------------------------

    @unit
    def prepare_grant(
        self,
        *,
        code: str,
        purpose: str,
        device: g.DeviceContext,
        caller: g.CallerContext,
        expire_time: datetime,
        now: datetime,
    ) -> tuple[g.GrantRecord, CodeRecord]:
        """Checks the code for the purpose and device and stores a PREPARED grant."""
        with self.store.write():
            rec = self._load_for_write(code, None, now)
            product = self.get_product(rec.product_id)
            current = None
            if device.current_code and device.current_code != code:
                current = self.read_code(device.current_code, None, now)
            g.check_prepare(
                rec=rec,
                product=product,
                purpose=purpose,
                device=device,
                caller=caller,
                current=current,
                now=now,
            )
            grant = g.GrantRecord(
                grant_id="gr_" + secrets.token_hex(12),
                code=code,
                purpose=purpose,
                device_id=device.device_id,
                app_version=device.app_version,
                region=device.region,
                state=g.PREPARED,
                expire_time=expire_time,
                create_time=now,
            )
            self.store.insert_grant(grant)
        return grant, rec

    def _grant(self, grant_id: str) -> g.GrantRecord:
        grant = self.store.get_grant(grant_id)
        if grant is None:
            raise LicenseError.not_found("GRANT_NOT_FOUND", "no such grant", grantId=grant_id)
        return grant

    @unit
    def commit_grant(
        self, grant_id: str, app_version: str, now: datetime
    ) -> tuple[g.GrantRecord, CodeRecord]:
        """Re-checks the code (H3) and makes the activation real (L1).

        Must run inside the caller's write transaction when a refusal has to be
        stored with what it changed (an expired grant is marked ABORTED).
        """
        with self.store.write():
            grant = self._grant(grant_id)
            if grant.state == g.COMMITTED:
                return grant, self._load_for_write(grant.code, None, now)
            if grant.state == g.ABORTED:
                raise g.closed_refusal(grant)
            if now >= grant.expire_time:
                grant = g.expire_grant(grant, now)
                self.store.save_grant(grant)
                raise g.closed_refusal(grant)
            rec = self._load_for_write(grant.code, None, now)
            g.check_commit(rec, self.get_product(rec.product_id), grant, app_version, now)
            rec = terms.activate(rec, now)
            self.store.save_code(rec, now)
            grant = replace(grant, state=g.COMMITTED, end_time=now)
            self.store.save_grant(grant)
            self.store.record_activation(grant, now)
        return grant, rec

    @unit
    def abort_grant(
        self, grant_id: str, reason: str, now: datetime
    ) -> tuple[g.GrantRecord, CodeRecord | None]:
        with self.store.write():
            grant = self._grant(grant_id)
            aborted = g.abort_grant(grant, reason, now)
            if aborted != grant:
                self.store.save_grant(aborted)
        return aborted, self.read_code(grant.code, None, now)

    def get_grant(self, grant_id: str, now: datetime) -> tuple[g.GrantRecord, CodeRecord | None]:
        grant = self._grant(grant_id)
        return grant, self.read_code(grant.code, None, now)

    def expire_overdue_grants(self, now: datetime) -> int:
        """H2 sweeper: aborts PREPARED grants past their deadline."""
        return sum(self._expire_grant(grant_id, now) for grant_id in self.store.overdue_grants(now))

    @unit
    def _expire_grant(self, grant_id: str, now: datetime) -> bool:
        """Aborts one grant if it is still PREPARED and past its deadline (H2)."""
        grant = self.store.get_grant(grant_id)
        if grant and grant.state == g.PREPARED and now >= grant.expire_time:
            self.store.save_grant(g.expire_grant(grant, now))
            return True
        return False

    def sweep(self, now: datetime) -> dict[str, int]:
        """One pass of time-driven work: grant deadlines and renewals; how many of each.

        Old request ids and other history go in the sweeper's retention pass.
        """
        expired = self.expire_overdue_grants(now)
        renewed = sum(self.apply_renewals(c, now) for c in self.store.renewal_candidates(now))
        if expired or renewed:
            log.info("sweep: %d grants expired, %d codes renewed", expired, renewed)
        return {"grants_expired": expired, "codes_renewed": renewed}
