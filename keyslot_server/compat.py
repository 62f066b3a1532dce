"""Which app versions and regions a product fits: one rule for both services.

The license service checks a device against a code's product when it grants
the code (D5 REGION_UNAVAILABLE, VERSION_INCOMPATIBLE); the device service
checks each device that starts using a per-user code through its account
(D11). Versions are dotted numbers compared numerically ("10.2" < "10.10");
missing trailing parts count as 0 ("10" == "10.0").
"""

from __future__ import annotations

from collections.abc import Collection


def parse_version(text: str) -> tuple[int, ...]:
    """Dotted numbers as a tuple of ints (the text is already validated)."""
    return tuple(int(part) for part in text.split("."))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1."""
    pa, pb = parse_version(a), parse_version(b)
    width = max(len(pa), len(pb))
    pa, pb = pa + (0,) * (width - len(pa)), pb + (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def version_in_range(version: str, minimum: str, maximum: str) -> bool:
    """Whether ``version`` is in [minimum, maximum); an empty bound is open."""
    if minimum and compare_versions(version, minimum) < 0:
        return False
    return not (maximum and compare_versions(version, maximum) >= 0)


def released_in(regions: Collection[str], region: str) -> bool:
    """Whether a product released in ``regions`` (empty = everywhere) is in ``region``."""
    return not regions or region.upper() in regions
