"""L7: what the app may do, from a code's status, phase and coverage."""

from __future__ import annotations

PROTECTION = "PROTECTION"
SCANS = "SCANS"
DATABASE_UPDATES = "DATABASE_UPDATES"
CLOUD_REPUTATION = "CLOUD_REPUTATION"

FULL = (PROTECTION, SCANS, DATABASE_UPDATES, CLOUD_REPUTATION)
LAPSED_UPDATES_ONLY = (PROTECTION, SCANS)  # coverage UPDATES: only updates stop
NOTHING: tuple[str, ...] = ()


def entitlements_for(status: str, phase: str, coverage: str) -> tuple[str, ...]:
    """The L7 table. Status wins over phase: BLOCKED/CANCELLED grant nothing; PAUSED
    counts as lapsed. A never-activated code is entitled in full: its term starts
    with the activation that uses it (L1)."""
    if status in ("BLOCKED", "CANCELLED"):
        return NOTHING
    lapsed = status == "PAUSED" or phase == "EXPIRED"
    if not lapsed:
        return FULL  # ACTIVE, GRACE (L3: grace keeps full functionality), NOT_ACTIVATED
    return LAPSED_UPDATES_ONLY if coverage == "UPDATES" else NOTHING
