"""The license service's SQLite store: schema and transactions (sqlite-utils)."""

from __future__ import annotations

from keyslot.runtime.db import Database


class LicenseStore(Database):
    """Products, codes, grants and support requests in one SQLite file."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        super().__init__(path, synchronous)
        self.create_schema()

    def create_schema(self) -> None:
        """Creates missing tables and indexes; safe on every start."""
        db = self.db
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
