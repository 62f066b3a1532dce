"""The license service's SQLite store: schema and transactions (sqlite-utils)."""

from __future__ import annotations

import sys
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from keyslot_server import migrations
from keyslot_server.budget import create_table as create_failure_table
from keyslot_server.db import Database, unit
from keyslot_server.migrations import Migration, migrate
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.requests import create_table as create_request_table
from keyslot_server.retention import HISTORY, Prune, request_log_rule
from keyslot_server.timeconv import from_epoch_us, to_epoch_us
from license_service import pg_schema
from license_service.feed import CodeFeed
from license_service.grants import GrantRecord
from license_service.products import Product
from license_service.support import SupportRequest
from license_service.terms import CodeRecord, expire_at

# record field -> stored column (epoch microseconds)
_CODE_TIMES = {
    "issue_time": "issue_us",
    "pause_time": "pause_us",
    "cancel_time": "cancel_us",
    "first_activate_time": "first_activate_us",
    "term_start": "term_start_us",
}
_CODE_SPANS = ("duration", "grace", "paused_total")
_CODE_FIELDS = fields(CodeRecord)
PRODUCT_CACHE_SIZE = 10_000  # a catalogue, not a fleet
# A final grant is kept at least this long: the device side's recovery may ask for it (H4).
GRANT_HISTORY = timedelta(days=7)
_CODE_BOOLS = ("trial", "free", "auto_renew", "blocked", "cancel_at_period_end")


def _us(span: timedelta | None) -> int | None:
    return None if span is None else span // timedelta(microseconds=1)


def _span(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(microseconds=value)


def code_to_row(rec: CodeRecord, now: datetime) -> dict[str, Any]:
    """The stored row of a code; expire_us is an index helper for the sweeper only."""
    # A shallow copy: asdict() deep-copies every value, and showed in the profile.
    row = {f.name: getattr(rec, f.name) for f in _CODE_FIELDS}
    row.pop("console_managed")
    for name, column in _CODE_TIMES.items():
        row[column] = to_epoch_us(row.pop(name))
    for name in _CODE_SPANS:
        row[name + "_us"] = _us(row.pop(name))
    for name in _CODE_BOOLS:
        row[name] = int(row[name])
    row["expire_us"] = to_epoch_us(expire_at(rec, now))
    return row


def row_to_code(row: dict[str, Any]) -> CodeRecord:
    """The record of a stored row (joined with its product's console_managed)."""
    values = dict(row)
    values.pop("expire_us", None)
    for name, column in _CODE_TIMES.items():
        values[name] = from_epoch_us(values.pop(column))
    for name in _CODE_SPANS:
        values[name] = _span(values.pop(name + "_us"))
    for name in (*_CODE_BOOLS, "console_managed"):
        values[name] = bool(values.get(name))
    return CodeRecord(**values)


def row_to_product(row: dict[str, Any]) -> Product:
    regions = row["released_regions"] or ""
    return Product(
        product_id=row["product_id"],
        display_name=row["display_name"],
        console_managed=bool(row["console_managed"]),
        released_regions=tuple(r for r in regions.split(",") if r),
        min_app_version=row["min_app_version"] or "",
        max_app_version=row["max_app_version"] or "",
        create_time=from_epoch_us(row["create_us"]),
    )


def row_to_grant(row: dict[str, Any]) -> GrantRecord:
    return GrantRecord(
        grant_id=row["grant_id"],
        code=row["code"],
        purpose=row["purpose"],
        device_id=row["device_id"],
        app_version=row["app_version"] or "",
        region=row["region"] or "",
        state=row["state"],
        expire_time=from_epoch_us(row["expire_us"]),  # type: ignore[arg-type]
        create_time=from_epoch_us(row["create_us"]),  # type: ignore[arg-type]
        end_time=from_epoch_us(row["end_us"]),
        abort_reason=row["abort_reason"] or "",
    )


def grant_to_row(grant: GrantRecord) -> dict[str, Any]:
    return {
        "grant_id": grant.grant_id,
        "code": grant.code,
        "purpose": grant.purpose,
        "device_id": grant.device_id,
        "app_version": grant.app_version,
        "region": grant.region,
        "state": grant.state,
        "expire_us": to_epoch_us(grant.expire_time),
        "create_us": to_epoch_us(grant.create_time),
        "end_us": to_epoch_us(grant.end_time),
        "abort_reason": grant.abort_reason,
    }


# When a code's grace ends (L3, L5: none after a cancel at period end), from the stored expiry.
_GRACE_END = "expire_us + CASE WHEN cancel_at_period_end <> 0 THEN 0 ELSE COALESCE(grace_us, 0) END"

_CODE_SELECT = (
    "SELECT c.*, COALESCE(p.console_managed, 0) AS console_managed FROM codes c "
    "LEFT JOIN products p ON p.product_id = c.product_id"
)


# --- schema: versioned migrations (keyslot_server.migrations) ------------------------------
# Each version is history: never edit a released one; a change is a new version at the end.
# Version 1 predates the migrations table: on a database of a release before it, every
# statement finds its work done (IF NOT EXISTS).


def _v1_baseline(db: sqlite_utils.Database) -> None:
    """The schema as it stood at 235f001 (the end of the service-layer work)."""
    db["products"].create(
        {
            "product_id": str,
            "display_name": str,
            "console_managed": int,
            "released_regions": str,
            "min_app_version": str,
            "max_app_version": str,
            "create_us": int,
        },
        pk="product_id",
        not_null={"display_name", "create_us"},
        if_not_exists=True,
    )
    db["codes"].create(
        {
            "code": str,
            "seq": int,
            "provider": str,
            "product_id": str,
            "kind": str,
            "coverage": str,
            "duration_us": int,
            "grace_us": int,
            "max_devices": int,
            "slot_kind": str,
            "trial": int,
            "free": int,
            "auto_renew": int,
            "purchase_channel": str,
            "provider_name": str,
            "order_number": str,
            "issue_us": int,
            "blocked": int,
            "block_reason": str,
            "pause_us": int,
            "paused_total_us": int,
            "cancel_us": int,
            "cancel_at_period_end": int,
            "first_activate_us": int,
            "term_start_us": int,
            "periods": int,
            "prepaid_periods": int,
            "auto_renewals_applied": int,
            "activation_count": int,
            "expire_us": int,
        },
        pk="code",
        not_null={"seq", "provider", "product_id", "kind", "issue_us"},
        foreign_keys=[("product_id", "products", "product_id")],
        if_not_exists=True,
    )
    db["codes"].create_index(["seq"], unique=True, if_not_exists=True)
    db["codes"].create_index(["provider", "seq"], if_not_exists=True)
    db["codes"].create_index(["provider", "product_id", "seq"], if_not_exists=True)
    db["codes"].create_index(["auto_renew", "prepaid_periods", "expire_us"], if_not_exists=True)
    db["grants"].create(
        {
            "grant_id": str,
            "code": str,
            "purpose": str,
            "device_id": str,
            "app_version": str,
            "region": str,
            "state": str,
            "expire_us": int,
            "create_us": int,
            "end_us": int,
            "abort_reason": str,
        },
        pk="grant_id",
        not_null={"code", "purpose", "device_id", "state", "expire_us", "create_us"},
        foreign_keys=[("code", "codes", "code")],
        if_not_exists=True,
    )
    db["grants"].create_index(["state", "expire_us"], if_not_exists=True)
    db["grants"].create_index(["code"], if_not_exists=True)
    db["activations"].create(
        {"grant_id": str, "code": str, "device_id": str, "activate_us": int},
        pk="grant_id",
        not_null={"code", "device_id", "activate_us"},
        foreign_keys=[("code", "codes", "code")],
        if_not_exists=True,
    )
    db["activations"].create_index(["code"], if_not_exists=True)
    create_request_table(db, "requests")  # H1 (keyslot_server.requests)
    db["support_requests"].create(
        {
            "support_request_id": str,
            "principal": str,
            "reason": str,
            "purchase_date": str,
            "full_name": str,
            "email": str,
            "order_number": str,
            "create_us": int,
        },
        pk="support_request_id",
        not_null={"reason", "purchase_date", "full_name", "email", "create_us"},
        if_not_exists=True,
    )
    create_failure_table(db)  # S3 (keyslot_server.budget)
    # Retention: the indexes that make each prune a search, never a scan of the table.
    for statement in (
        "CREATE INDEX IF NOT EXISTS grants_ended ON grants(end_us)"
        " WHERE state IN ('COMMITTED', 'ABORTED')",
        "CREATE INDEX IF NOT EXISTS activations_time ON activations(activate_us)",
        "CREATE INDEX IF NOT EXISTS support_requests_create ON support_requests(create_us)",
    ):
        db.execute(statement)


# The license database's schema, version by version (README "Upgrades").
MIGRATIONS = (Migration(1, "baseline: the schema of 235f001", _v1_baseline, pg_schema.BASELINE),)


class LicenseStore(Database):
    """Products, codes, grants, request ids and support requests in one SQLite file."""

    def __init__(
        self,
        path: str,
        synchronous: str = "FULL",
        feed: CodeFeed | None = None,
        observer: Observer = NOBODY,
        units: int = 1,
    ) -> None:
        super().__init__(path, synchronous, observer, units=units)
        migrate(self, MIGRATIONS)  # creates or upgrades the schema; refuses a newer one
        # Told of every committed code change, for the watchers' caches.
        self.feed = feed or CodeFeed()
        # Products are never changed once created (there is no update or delete),
        # so one read is exact forever; prepare and commit each need the product.
        self._products: dict[str, Product] = {}

    # --- products -------------------------------------------------------------------------

    @unit
    def insert_product(self, product: Product) -> bool:
        """Stores a new product; False when the id is taken."""
        with self.write() as db:
            if self.one("SELECT 1 FROM products WHERE product_id = ?", (product.product_id,)):
                return False
            db["products"].insert(
                {
                    "product_id": product.product_id,
                    "display_name": product.display_name,
                    "console_managed": int(product.console_managed),
                    "released_regions": ",".join(product.released_regions),
                    "min_app_version": product.min_app_version,
                    "max_app_version": product.max_app_version,
                    "create_us": to_epoch_us(product.create_time),
                }
            )
            return True

    def get_product(self, product_id: str) -> Product | None:
        product = self._products.get(product_id)
        if product is None:
            row = self.one("SELECT * FROM products WHERE product_id = ?", (product_id,))
            if row is None:
                return None  # a miss is not kept: the product may be created next
            product = row_to_product(row)
            if len(self._products) < PRODUCT_CACHE_SIZE:
                self._products[product_id] = product
        return product

    def list_products(self, after: str, limit: int) -> list[Product]:
        rows = self.query(
            "SELECT * FROM products WHERE product_id > ? ORDER BY product_id LIMIT ?",
            (after, limit),
        )
        return [row_to_product(r) for r in rows]

    # --- codes ----------------------------------------------------------------------------

    def next_seq(self) -> int:
        row = self.one("SELECT COALESCE(MAX(seq), 0) AS seq FROM codes")
        return int(row["seq"]) + 1 if row else 1

    def code_exists(self, code: str) -> bool:
        return self.one("SELECT 1 FROM codes WHERE code = ?", (code,)) is not None

    @unit
    def insert_codes(self, records: list[CodeRecord], now: datetime) -> None:
        """Inserts codes; call inside ``write()`` so a batch is atomic."""
        with self.write() as db:
            db["codes"].insert_all([code_to_row(r, now) for r in records])

    def get_code(self, code: str, provider: str | None = None) -> CodeRecord | None:
        """A code; with ``provider`` only if that provider issued it (S2)."""
        if provider is None:
            row = self.one(_CODE_SELECT + " WHERE c.code = ?", (code,))
        else:
            row = self.one(_CODE_SELECT + " WHERE c.code = ? AND c.provider = ?", (code, provider))
        return row_to_code(row) if row else None

    def get_codes(self, codes: list[str], provider: str | None = None) -> dict[str, CodeRecord]:
        found: dict[str, CodeRecord] = {}
        unique = list(dict.fromkeys(codes))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            sql = _CODE_SELECT + f" WHERE c.code IN ({marks})"
            params: list[Any] = list(chunk)
            if provider is not None:
                sql += " AND c.provider = ?"
                params.append(provider)
            for row in self.query(sql, tuple(params)):
                rec = row_to_code(row)
                found[rec.code] = rec
        return found

    def list_codes(
        self, provider: str, after_seq: int, limit: int, product_id: str = ""
    ) -> list[CodeRecord]:
        sql = _CODE_SELECT + " WHERE c.provider = ? AND c.seq > ?"
        params: list[Any] = [provider, after_seq]
        if product_id:
            sql += " AND c.product_id = ?"
            params.append(product_id)
        sql += " ORDER BY c.seq LIMIT ?"
        params.append(limit)
        return [row_to_code(r) for r in self.query(sql, tuple(params))]

    @unit
    def save_code(self, rec: CodeRecord, now: datetime) -> None:
        """Writes a changed code; call inside ``write()``. Watchers hear of it on commit."""
        with self.write() as db:
            db["codes"].update(rec.code, code_to_row(rec, now))
            code = rec.code
            self.on_commit(lambda: self.feed.publish([code]))

    def renewal_candidates(self, now: datetime, limit: int = 500) -> list[str]:
        """Codes whose automatic renewal may be due (L4); the rule itself decides."""
        rows = self.query(
            "SELECT code FROM codes WHERE auto_renew = 1 AND prepaid_periods > 0 "
            "AND expire_us IS NOT NULL AND expire_us <= ? AND blocked = 0 AND pause_us IS NULL "
            "AND cancel_us IS NULL AND cancel_at_period_end = 0 LIMIT ?",
            (to_epoch_us(now), limit),
        )
        return [r["code"] for r in rows]

    # --- grants ---------------------------------------------------------------------------

    @unit
    def insert_grant(self, grant: GrantRecord) -> None:
        with self.write() as db:
            db["grants"].insert(grant_to_row(grant))

    def get_grant(self, grant_id: str) -> GrantRecord | None:
        row = self.one("SELECT * FROM grants WHERE grant_id = ?", (grant_id,))
        return row_to_grant(row) if row else None

    @unit
    def save_grant(self, grant: GrantRecord) -> None:
        with self.write() as db:
            db["grants"].update(grant.grant_id, grant_to_row(grant))

    @unit
    def record_activation(self, grant: GrantRecord, now: datetime) -> None:
        with self.write() as db:
            db["activations"].insert(
                {
                    "grant_id": grant.grant_id,
                    "code": grant.code,
                    "device_id": grant.device_id,
                    "activate_us": to_epoch_us(now),
                }
            )

    def overdue_grants(self, now: datetime, limit: int = 500) -> list[str]:
        """PREPARED grants past their deadline (H2)."""
        rows = self.query(
            "SELECT grant_id FROM grants WHERE state = 'PREPARED' AND expire_us <= ? LIMIT ?",
            (to_epoch_us(now), limit),
        )
        return [r["grant_id"] for r in rows]

    # --- counts for the metrics ---------------------------------------------------------------

    def codes_by_phase(self, now: datetime) -> dict[str, int]:
        """How many codes are in each phase (L2) at ``now``, from the stored expiry.

        One pass over the codes in one statement (no index can count a phase
        derived from time; the metrics read it once a minute). A paused code
        counts in the phase it was paused in (its clock stands still); a renewal
        the sweeper has not applied yet (L4) counts as GRACE until its next pass.
        """
        at = "COALESCE(pause_us, :now)"
        row = self.one(
            "SELECT COUNT(*) AS codes, COUNT(first_activate_us) AS activated,"
            f" SUM(CASE WHEN expire_us <= {at} AND {_GRACE_END} > {at} THEN 1 ELSE 0 END) AS grace,"
            f" SUM(CASE WHEN {_GRACE_END} <= {at} THEN 1 ELSE 0 END) AS expired FROM codes",
            {"now": to_epoch_us(now)},
        )
        assert row is not None
        grace, expired = row["grace"] or 0, row["expired"] or 0
        return {
            "NOT_ACTIVATED": row["codes"] - row["activated"],
            "ACTIVE": row["activated"] - grace - expired,
            "GRACE": grace,
            "EXPIRED": expired,
        }

    def prepared_grants(self) -> int:
        """Grants waiting for their commit or abort (H2), by the grants' state index."""
        row = self.one("SELECT COUNT(*) AS n FROM grants WHERE state = 'PREPARED'")
        return int(row["n"]) if row else 0

    # --- support requests (L8) ------------------------------------------------------------

    @unit
    def insert_support_request(self, principal: str, request: SupportRequest) -> None:
        with self.write() as db:
            db["support_requests"].insert(
                {
                    "support_request_id": request.support_request_id,
                    "principal": principal,
                    "reason": request.reason,
                    "purchase_date": request.purchase_date,
                    "full_name": request.full_name,
                    "email": request.email,
                    "order_number": request.order_number,
                    "create_us": to_epoch_us(request.create_time),
                }
            )

    # --- retention (what history is kept, and for how long) ------------------------------

    def retention_rules(self, retention: timedelta) -> tuple[Prune, ...]:
        """What the sweeper prunes (README "Retention"); codes and products never go.

        ``retention`` (at least 24 h, H1) applies to the request log; a final
        grant is kept at least ``GRANT_HISTORY``, so a device service that was
        cut off for days still finds its grants when it recovers (H4).
        """
        return (
            # H1: a retry within ``retention`` gets its first answer byte for byte.
            request_log_rule("requests", retention),
            # H2 decides on PREPARED grants; a final one is history once no retry
            # or recovery of the device service can still ask for it.
            Prune(
                "final grants",
                "grants",
                "end_us",
                max(retention, GRANT_HISTORY),
                index="grants_ended",
                scope="state IN ('COMMITTED', 'ABORTED')",
            ),
            # L1: the activation that started a code's term is never pruned (of
            # several in the same microsecond, the first written).
            Prune(
                "activations",
                "activations",
                "activate_us",
                max(retention, HISTORY),
                index="activations_time",
                guard="activate_us > (SELECT c.first_activate_us FROM codes c"
                " WHERE c.code = activations.code)"
                " OR rowid > (SELECT MIN(e.rowid) FROM activations e"
                " WHERE e.code = activations.code AND e.activate_us = activations.activate_us)",
            ),
            # L8: a support request carries a name and an e-mail address; it goes
            # once support had it for the history period.
            Prune(
                "support requests",
                "support_requests",
                "create_us",
                max(retention, HISTORY),
                index="support_requests_create",
            ),
        )


if __name__ == "__main__":  # python -m license_service.store [--db FILE] [--dry-run]
    sys.exit(migrations.main("license", MIGRATIONS))
