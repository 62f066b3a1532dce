"""Fixtures: both services as real processes with temp databases (tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One pair of services shared by the session; tests use their own data."""
    svc = Services(Path(tmp_path_factory.mktemp("keyslot")))
    try:
        yield svc.start()
    finally:
        svc.stop()


@pytest.fixture
def fresh_services(tmp_path: Path) -> Iterator[Services]:
    """A private pair of services, for tests that stop, kill or restart them."""
    svc = Services(tmp_path / "svc")
    try:
        yield svc.start()
    finally:
        svc.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (the log scans) run after all others, on their logs."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
