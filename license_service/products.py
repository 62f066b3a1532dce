"""Products: regions and compatible app versions (D5 REGION_UNAVAILABLE, VERSION_INCOMPATIBLE).

The version and region formats and comparisons are both services' (keyslot_server.formats).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from keyslot_server import formats

# \Z, not $: "$" also matches before a trailing newline.
PRODUCT_ID = re.compile(r"^[a-z0-9_-]{1,64}\Z")


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
    return formats.version_in_range(app_version, product.min_app_version, product.max_app_version)


def released_in(product: Product, region: str) -> bool:
    """Whether the product is released in ``region`` (empty list = everywhere)."""
    return formats.released_in(product.released_regions, region)
