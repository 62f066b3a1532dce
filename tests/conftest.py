"""Fixtures: both services as real processes with temp databases (tests/harness.py)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import Services

if TYPE_CHECKING:
    from keyslot_server.pgcluster import Cluster

# Why the PostgreSQL tier skipped (locally only: under CI=true it fails), for the summary.
_pg_skipped: list[str] = []
_pg_databases = itertools.count(1)


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the session (fsync off), stopped and removed at the end.

    Its directory is in memory when there is room, else under the system temp
    dir; not under pytest's (0700 for root, which the postgres user the server
    runs as cannot search). Without the server binaries the PostgreSQL tests
    skip, and say so at the end of the run; under CI=true they fail instead.
    """
    from keyslot_server.pgcluster import Cluster, MissingBinaries, scratch_parent  # psycopg: 0.1 s

    directory = tempfile.mkdtemp(prefix="keyslot-pg-", dir=scratch_parent())
    try:
        cluster = Cluster.start(directory, durable=False)
    except MissingBinaries as err:
        shutil.rmtree(directory, ignore_errors=True)
        if os.environ.get("CI") == "true":  # never a silent skip in CI
            message = f"PostgreSQL tier cannot run under CI=true: {err}"
            raise pytest.fail.Exception(message, pytrace=False) from None
        _pg_skipped.append(str(err))
        pytest.skip(f"PostgreSQL tier skipped: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A URL of a fresh database of its own, copied from the cluster's template, dropped after."""
    name = f"test_{next(_pg_databases)}"
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A skipped PostgreSQL tier is said at the end of the run, not only as an ``s``."""
    if _pg_skipped:
        terminalreporter.write_line(f"PostgreSQL tier SKIPPED: {_pg_skipped[0]}", red=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (the log scans) run after all others, on their logs."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
