"""Fixtures: both services as real processes with temp databases (tests/harness.py).

The engine the services run on is ``$KEYSLOT_TEST_ENGINE`` (tests/pg.py):
``sqlite`` by default, or ``postgres``, where the pairs get their databases
in one throwaway cluster per session, removed at its end. Tests marked
``sqlite_only`` (they look at the SQLite file itself) skip on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from tests import pg
from tests.harness import Services

if TYPE_CHECKING:
    from keyslot_server.pgcluster import Cluster

# Why the PostgreSQL tier skipped (locally only: under CI=true it fails), for the summary.
_pg_skipped: list[str] = []
SQLITE_ONLY = "sqlite_only: looks at the SQLite file itself, which PostgreSQL has not"


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
def pg_cluster() -> Cluster:
    """The session's throwaway PostgreSQL cluster (fsync off), the one the services use too.

    Its directory is in memory when there is room, else under the system temp
    dir; not under pytest's (0700 for root, which the postgres user the server
    runs as cannot search). Without the server binaries the PostgreSQL tests
    skip, and say so at the end of the run; under CI=true they fail instead.
    """
    from keyslot_server.pgcluster import MissingBinaries  # psycopg: 0.1 s

    try:
        return pg.cluster()
    except MissingBinaries as err:
        _no_postgres(err)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A URL of a fresh database of its own, copied from the cluster's template, dropped after."""
    name, url = pg.new_database("test")
    try:
        yield url
    finally:
        pg.drop_database(name)


def _no_postgres(err: Exception) -> NoReturn:
    if os.environ.get("CI") == "true":  # never a silent skip in CI
        message = f"PostgreSQL tier cannot run under CI=true: {err}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    _pg_skipped.append(str(err))
    pytest.skip(f"PostgreSQL tier skipped: {err}")


def pytest_configure() -> None:
    try:
        pg.engine()
    except ValueError as err:  # a misspelt engine: one line, not a traceback
        raise pytest.UsageError(str(err)) from None


def pytest_report_header() -> str:
    return f"engine: {pg.engine()} (${pg.ENGINE_VARIABLE})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (the log scans) run after all others, on their logs.

    On PostgreSQL the ``sqlite_only`` tests skip; and every test does when
    the machine has no PostgreSQL server (under CI=true the run stops instead).
    """
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
    if pg.engine() != "postgres":
        return
    from keyslot_server.pgcluster import MissingBinaries, find_bindir

    try:
        find_bindir()
    except MissingBinaries as err:
        if os.environ.get("CI") == "true":
            pytest.exit(f"PostgreSQL tier cannot run under CI=true: {err}", returncode=1)
        _pg_skipped.append(str(err))
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL tier skipped: {err}"))
        return
    for item in items:
        if item.get_closest_marker("sqlite_only") is not None:
            item.add_marker(pytest.mark.skip(reason=SQLITE_ONLY))


def pytest_sessionfinish() -> None:
    """The cluster goes with the session (every pair was stopped before this runs)."""
    pg.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A line naming the engine and what ran on it; a skipped PostgreSQL tier is said too."""
    stats = terminalreporter.stats
    counts = [
        f"{len(stats[kind])} {kind}" for kind in ("failed", "error", "skipped") if stats.get(kind)
    ]
    passed = len(stats.get("passed", []))
    line = ", ".join([f"{passed} passed", *counts])
    terminalreporter.write_line(f"engine {pg.engine()}: {line}", bold=True)
    if _pg_skipped:
        terminalreporter.write_line(f"PostgreSQL tier SKIPPED: {_pg_skipped[0]}", red=True)
