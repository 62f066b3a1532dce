"""The device service's SQLite store: schema and transactions (sqlite-utils)."""

from __future__ import annotations

from keyslot.runtime.auth import Principal
from keyslot.runtime.db import Database


class DeviceStore(Database):
    """Accounts, devices, slots, deliveries and reserves in one SQLite file."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        super().__init__(path, synchronous)
        self.create_schema()

    def create_schema(self) -> None:
        """Creates missing tables and indexes; safe on every start."""
        db = self.db
        db["accounts"].create(
            {"account_id": str, "display_name": str, "kind": int, "create_us": int},
            pk="account_id",
            not_null={"display_name", "kind", "create_us"},
            if_not_exists=True,
        )

    def resolve_credential(self, token: str) -> Principal | None:
        """Account, member and device credentials issued by this service (by hash)."""
        return None
