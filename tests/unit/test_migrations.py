"""Versioned schema migrations (keyslot_server.migrations) on both services' databases.

The fixtures are SQL dumps of databases made by the code of two releases
from before versioned migrations (tests/fixtures/dump_release.py): 235f001,
whose schema is version 1, and 93ee45e, the last release without them.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from device_service import store as device_store
from device_service.store import DeviceStore
from keyslot_server.budget import FailureBudget
from keyslot_server.db import Database
from keyslot_server.migrations import TABLE, Migration, SchemaTooNew, latest, migrate
from license_service import store as license_store
from license_service.store import LicenseStore
from tests.harness import ROOT, write_tokens_file

FIXTURES = ROOT / "tests" / "fixtures"
V1 = "235f001"  # version 1 of both schemas
LAST_UNVERSIONED = "93ee45e"  # the last release before schema_migrations
SERVICES = {
    "license": (license_store.MIGRATIONS, LicenseStore),
    "device": (device_store.MIGRATIONS, DeviceStore),
}
T = 1_800_000_000_000_000


def open_store(service: str, path: Path) -> Any:
    """The service's store on ``path``, built as the service does at start (with its budgets)."""
    store = SERVICES[service][1](str(path), synchronous="OFF")
    FailureBudget(store, 20, timedelta(minutes=10))
    return store


def load(service: str, release: str, path: Path) -> Path:
    """A database file made from a release's dump."""
    sql = (FIXTURES / f"{service}_{release}.sql").read_text(encoding="utf-8")
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(sql)
    return path


def _normal(sql: str | None) -> str | None:
    """DDL text without quoting and layout: a column added by ALTER TABLE reads the same as
    one created with its table."""
    if sql is None:
        return None
    text = re.sub(r"[\"\[\]]", "", sql)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*([(),])\s*", r"\1", text).strip()


def schema(path: Path) -> dict[str, str | None]:
    """Every table and index (sqlite_master) but the migrations' own table, normalized."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != ?", (TABLE,)
        ).fetchall()
    return {f"{kind} {name}": _normal(sql) for kind, name, sql in rows}


def rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as dicts in a stable order."""
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            t: sorted(
                (dict(r) for r in conn.execute(f'SELECT * FROM "{t}"')),  # noqa: S608
                key=repr,
            )
            for t in tables
        }


def recorded(path: Path) -> tuple[list[tuple[int, str]], int]:
    """schema_migrations (version, name) in order, and PRAGMA user_version."""
    with closing(sqlite3.connect(path)) as conn:
        versions = conn.execute(f"SELECT version, name FROM {TABLE} ORDER BY version").fetchall()  # noqa: S608
        return versions, conn.execute("PRAGMA user_version").fetchone()[0]


def fresh(service: str, tmp_path: Path) -> Path:
    path = tmp_path / f"fresh-{service}.db"
    open_store(service, path).close()
    return path


@pytest.fixture(params=list(SERVICES))
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- (a) a fresh database ------------------------------------------------------------------


def test_a_fresh_database_has_the_schema_the_last_release_created(
    service: str, tmp_path: Path
) -> None:
    """Same tables, columns and indexes as the create_schema of the release before migrations."""
    migrations = SERVICES[service][0]
    path = fresh(service, tmp_path)
    before = load(service, LAST_UNVERSIONED, tmp_path / "before.db")
    assert schema(path) == schema(before)
    assert recorded(path) == ([(m.version, m.name) for m in migrations], latest(migrations))


def test_the_device_columns_are_the_devices_table(tmp_path: Path) -> None:
    with closing(sqlite3.connect(fresh("device", tmp_path))) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(devices)")}
    assert columns == device_store.DEVICE_COLUMNS


# --- (b) a database of an older release upgrades in place ----------------------------------


def test_a_version_1_database_upgrades_in_place_keeping_every_row(
    service: str, tmp_path: Path
) -> None:
    path = load(service, V1, tmp_path / f"{service}.db")
    old = rows(path)
    migrations = SERVICES[service][0]
    database = Database(path)
    try:
        done = migrate(database, migrations)
    finally:
        database.close()
    # No schema_migrations yet: adopted, and every version is applied (1 finds its work done).
    assert done.adopted
    assert [m.version for m in done.applied] == [m.version for m in migrations]
    assert schema(path) == schema(fresh(service, tmp_path))
    new = rows(path)
    assert set(new) == set(old) | {TABLE}
    for table, before in old.items():
        after = new[table]
        assert len(after) == len(before) and before, table
        # The rows as they were, plus the new columns at their defaults.
        added = set(after[0]) - set(before[0])
        assert [{k: r[k] for k in before[0]} for r in after] == before, table
        if table == "handshakes":
            assert added == {"traceparent"}
            assert {r["traceparent"] for r in after} == {""}
        else:
            assert added == set(), table


def test_the_upgraded_device_database_serves_the_new_queries(tmp_path: Path) -> None:
    """What versions 2 and 3 added is used at once: the pending count names its index."""
    path = load("device", V1, tmp_path / "device.db")
    store = open_store("device", path)
    try:
        assert store.pending_deliveries() == 1  # INDEXED BY deliveries_pending
        assert store.held_slots() == 1
        row = store.one("SELECT traceparent FROM handshakes WHERE handshake_id = 'hs_1'")
        assert row == {"traceparent": ""}
    finally:
        store.close()


def test_the_upgraded_license_database_reads_its_codes(tmp_path: Path) -> None:
    path = load("license", V1, tmp_path / "license.db")
    store = open_store("license", path)
    try:
        code = store.one("SELECT code, seq FROM codes ORDER BY seq")
        assert code == {"code": "ABCDE-12345-FGHIJ-67890", "seq": 1}
        assert store.prepared_grants() == 1
        assert store.next_seq() == 3
    finally:
        store.close()


def test_the_last_release_before_migrations_is_adopted_unchanged(
    service: str, tmp_path: Path
) -> None:
    path = load(service, LAST_UNVERSIONED, tmp_path / f"{service}.db")
    old_schema, old_rows = schema(path), rows(path)
    open_store(service, path).close()
    assert schema(path) == old_schema
    assert rows(path) == old_rows | {TABLE: rows(path)[TABLE]}
    migrations = SERVICES[service][0]
    assert recorded(path) == ([(m.version, m.name) for m in migrations], latest(migrations))


# --- (c) idempotent -----------------------------------------------------------------------


def test_migrating_twice_changes_nothing(service: str, tmp_path: Path) -> None:
    migrations = SERVICES[service][0]
    path = load(service, V1, tmp_path / f"{service}.db")
    database = Database(path)
    try:
        migrate(database, migrations)
        first_schema, first_rows = schema(path), rows(path)
        again = migrate(database, migrations)
    finally:
        database.close()
    assert again.applied == () and not again.adopted
    assert again.version == latest(migrations)
    assert schema(path) == first_schema
    assert rows(path) == first_rows  # applied times included


# --- (d) a newer database is refused -------------------------------------------------------


def _from_the_future(service: str, tmp_path: Path) -> tuple[Path, int]:
    path = fresh(service, tmp_path)
    newer = latest(SERVICES[service][0]) + 1
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"INSERT INTO {TABLE} VALUES (?, 'a later release', 0)", (newer,))  # noqa: S608
    return path, newer


def test_a_database_of_a_later_release_is_refused(service: str, tmp_path: Path) -> None:
    path, newer = _from_the_future(service, tmp_path)
    before = schema(path), rows(path)
    known = latest(SERVICES[service][0])
    with pytest.raises(SchemaTooNew) as refused:
        SERVICES[service][1](str(path))
    assert str(refused.value) == (
        f"{path}: database schema version {newer} is newer than this release ({known}):"
        " upgrade keyslot"
    )
    assert (schema(path), rows(path)) == before


def test_the_migrate_command_refuses_it_in_one_line(service: str, tmp_path: Path) -> None:
    path, newer = _from_the_future(service, tmp_path)
    for extra in ([], ["--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", f"{service}_service.store", "--db", str(path), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"{service} database: {path}: database schema version {newer} is newer than"
            f" this release ({latest(SERVICES[service][0])}): upgrade keyslot"
        ]


def test_a_service_refuses_to_start_on_it_with_one_line(tmp_path: Path) -> None:
    """The service's start-up turns the refusal into its one-line configuration error, exit 2."""
    path, newer = _from_the_future("license", tmp_path)
    write_tokens_file(tmp_path / "tokens.json")
    result = subprocess.run(
        [sys.executable, "-m", "license_service", "--listen", "127.0.0.1:0", "--db", str(path)]
        + ["--tokens-file", "tokens.json"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "KEYSLOT_TOKENS_FILE": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"license service: {path}: database schema version {newer} is newer than this"
        " release (1): upgrade keyslot"
    ]


# --- (e) starts at the same time ------------------------------------------------------------


def _counted(migrations: tuple[Migration, ...], counts: dict[int, int]) -> tuple[Migration, ...]:
    """The same migrations, each counting its runs and lingering to widen the race."""
    lock = threading.Lock()

    def wrap(step: Migration) -> Callable[[sqlite_utils.Database], None]:
        def apply(db: sqlite_utils.Database) -> None:
            with lock:
                counts[step.version] = counts.get(step.version, 0) + 1
            time.sleep(0.02)
            step.apply(db)

        return apply

    return tuple(Migration(m.version, m.name, wrap(m)) for m in migrations)


def test_threads_starting_at_once_apply_each_version_once(tmp_path: Path) -> None:
    path = tmp_path / "device.db"
    counts: dict[int, int] = {}
    migrations = _counted(device_store.MIGRATIONS, counts)
    start = threading.Barrier(6)
    applied: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        database = Database(path)
        try:
            start.wait()
            applied.extend(m.version for m in migrate(database, migrations).applied)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counts == {1: 1, 2: 1, 3: 1}
    assert sorted(applied) == [1, 2, 3]
    assert recorded(path)[0] == [(m.version, m.name) for m in migrations]


def test_processes_starting_at_once_apply_each_version_once(tmp_path: Path) -> None:
    path = tmp_path / "device.db"
    command = [sys.executable, "-m", "device_service.store", "--db", str(path)]
    # The test holds the write lock while they start, so all find version 0 and then queue.
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")
        runs = [
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        time.sleep(1.5)  # their imports and first read, then each waits on the lock
        holder.execute("ROLLBACK")
        outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    lines = [line for out, _ in outputs for line in out.decode().splitlines()]
    assert sorted(line for line in lines if line.startswith("applied:")) == [
        f"applied: {m.version} {m.name}" for m in device_store.MIGRATIONS
    ]
    assert recorded(path) == ([(m.version, m.name) for m in device_store.MIGRATIONS], 3)


# --- the mechanism --------------------------------------------------------------------------


def _table(name: str) -> Callable[[sqlite_utils.Database], None]:
    return lambda db: db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY)")


def test_a_failing_version_leaves_no_trace_and_the_ones_before_stay(tmp_path: Path) -> None:
    def half_done(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)")
        raise RuntimeError("step 2 failed")

    database = Database(tmp_path / "x.db")
    try:
        with pytest.raises(RuntimeError, match="step 2 failed"):
            migrate(database, (Migration(1, "a", _table("a")), Migration(2, "b", half_done)))
        done = migrate(database, (Migration(1, "a", _table("a")), Migration(2, "b", _table("b"))))
    finally:
        database.close()
    assert [m.version for m in done.applied] == [2]  # 1 committed before 2 failed
    assert recorded(tmp_path / "x.db") == ([(1, "a"), (2, "b")], 2)


def test_a_version_that_breaks_a_foreign_key_is_rolled_back(tmp_path: Path) -> None:
    def dangling(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id))")
        db.execute("INSERT INTO child VALUES (1, 42)")

    database = Database(tmp_path / "x.db")
    try:
        with pytest.raises(RuntimeError, match="breaks foreign keys"):
            migrate(database, (Migration(1, "a", _table("a")), Migration(2, "child", dangling)))
    finally:
        database.close()
    assert recorded(tmp_path / "x.db") == ([(1, "a")], 1)
    assert "table child" not in schema(tmp_path / "x.db")


def test_a_row_that_dangled_before_does_not_stop_an_upgrade(tmp_path: Path) -> None:
    """Rows written with foreign keys off (a bulk load) are not a version's doing."""
    path = tmp_path / "x.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE TABLE a (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (id INTEGER PRIMARY KEY, a INTEGER REFERENCES a(id));"
            "INSERT INTO child VALUES (1, 42);"
        )
    database = Database(path)
    try:
        done = migrate(
            database, (Migration(1, "a", lambda db: None), Migration(2, "b", _table("b")))
        )
    finally:
        database.close()
    assert done.adopted and [m.version for m in done.applied] == [1, 2]


def test_versions_must_run_1_2_3_in_order(tmp_path: Path) -> None:
    database = Database(tmp_path / "x.db")
    try:
        with pytest.raises(ValueError, match="in order"):
            migrate(database, (Migration(1, "a", _table("a")), Migration(3, "c", _table("c"))))
    finally:
        database.close()


def test_applied_times_come_from_the_clock_given(tmp_path: Path) -> None:
    database = Database(tmp_path / "x.db")
    try:
        migrate(database, (Migration(1, "a", _table("a")),), now_us=lambda: T)
    finally:
        database.close()
    assert rows(tmp_path / "x.db")[TABLE] == [{"version": 1, "name": "a", "applied_us": T}]
