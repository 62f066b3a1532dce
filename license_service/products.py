"""Products: regions and compatible app versions (D5 REGION_UNAVAILABLE, VERSION_INCOMPATIBLE).

The comparison rules themselves are shared with the device service (keyslot_server.compat).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from keyslot_server.compat import compare_versions as compare_versions  # re-exported
from keyslot_server.compat import released_in as compat_released_in
from keyslot_server.compat import version_in_range

# \Z, not $: "$" also matches before a trailing newline.
PRODUCT_ID = re.compile(r"^[a-z0-9_-]{1,64}\Z")
REGION = re.compile(r"^[A-Z]{2}\Z")
VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,7}\Z")


def region_code(text: str) -> str | None:
    """An ISO 3166-1 alpha-2 region, upper-cased; None if ``text`` is not one.

    ASCII only: upper() maps some other letters to ASCII (the ligature U+FB01 to "FI").
    """
    upper = text.upper()
    return upper if text.isascii() and REGION.match(upper) else None


@dataclass(frozen=True)
class Product:
    """A product that codes are issued for."""

    product_id: str
    display_name: str
    console_managed: bool = False
    released_regions: tuple[str, ...] = field(default_factory=tuple)
    min_app_version: str = ""
    max_app_version: str = ""
    create_time: datetime | None = None


def version_compatible(product: Product, app_version: str) -> bool:
    """Whether ``app_version`` is in [min_app_version, max_app_version)."""
    return version_in_range(app_version, product.min_app_version, product.max_app_version)


def released_in(product: Product, region: str) -> bool:
    """Whether the product is released in ``region`` (empty list = everywhere)."""
    return compat_released_in(product.released_regions, region)
