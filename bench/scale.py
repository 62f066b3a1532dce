"""Scenario 6 (placeholder while the stores' schemas land)."""

from __future__ import annotations

from typing import Any


def run_scale(bench: Any) -> None:
    raise RuntimeError("scale scenario not written yet")
