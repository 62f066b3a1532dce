"""keyslot_server.pgcluster: finding the server, the settings asked, a database per test."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from keyslot_server import pgcluster
from keyslot_server.pgcluster import Cluster, MissingBinaries, find_bindir, unreachable_part
from tests import pg
from tests.harness import Services


def _fake_server(bindir: Path) -> Path:
    bindir.mkdir(parents=True)
    for name in pgcluster.SERVER_PROGRAMS:
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    return bindir


def test_the_newest_major_version_is_found_and_missing_binaries_say_what_to_install(
    tmp_path: Path,
) -> None:
    root = tmp_path / "postgresql"
    _fake_server(root / "9" / "bin")
    newest = _fake_server(root / "16" / "bin")
    (root / "17" / "bin").mkdir(parents=True)  # a client-only install: no server
    empty = {"PATH": str(tmp_path / "nothing")}
    assert find_bindir(empty, root) == newest
    assert find_bindir({**empty, "KEYSLOT_PG_BINDIR": str(root / "9" / "bin")}, root) == (
        root / "9" / "bin"
    )
    with pytest.raises(MissingBinaries, match="apt-get install postgresql-15"):
        find_bindir(empty, tmp_path / "none")


def test_durable_keeps_fsync_on_and_a_test_cluster_turns_it_off(tmp_path: Path) -> None:
    durable = pgcluster.settings(5432, tmp_path, durable=True, max_connections=50)
    fast = pgcluster.settings(5432, tmp_path, durable=False, max_connections=50)
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        assert (durable[name], fast[name]) == ("on", "off")
    assert durable["listen_addresses"] == "'127.0.0.1'"


def test_a_parent_the_server_user_cannot_search_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "cluster").mkdir(parents=True)
    me, group = os.getuid(), os.getgid()
    closed.chmod(0o600)  # not searchable even by its owner
    assert unreachable_part(closed / "cluster", me, [group]) == closed
    closed.chmod(0o700)
    assert unreachable_part(closed / "cluster", me, [group]) is None


def test_the_cluster_runs_with_the_settings_asked(pg_cluster: Cluster, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in (
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "listen_addresses",
                "max_connections",
            )
        }
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    assert shown == {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "listen_addresses": "127.0.0.1",
        # Room for a connection per gRPC worker of every pair of services alive at once.
        "max_connections": str(pg.MAX_CONNECTIONS),
    }
    assert user == pgcluster.ROLE
    # The URL names the passfile and holds no password; the passfile is ours alone.
    assert "passfile=" in pg_url and pg_url.startswith(f"postgresql://{pgcluster.ROLE}@127.0.0.1:")
    assert stat.S_IMODE(pg_cluster.passfile.stat().st_mode) == 0o600


def test_each_test_database_is_its_own(pg_cluster: Cluster, pg_url: str) -> None:
    other = pg_cluster.create_database("test_isolation_other")
    try:
        with psycopg.connect(pg_url) as mine, psycopg.connect(other) as theirs:
            for conn in (mine, theirs):
                conn.execute("CREATE TABLE slot (code TEXT PRIMARY KEY, device TEXT NOT NULL)")
            mine.execute("INSERT INTO slot VALUES ('C-1', 'mine')")
            mine.commit()
            theirs.execute("INSERT INTO slot VALUES ('C-1', 'theirs')")  # the same key: no clash
            theirs.commit()
            assert mine.execute("SELECT device FROM slot").fetchall() == [("mine",)]
            assert theirs.execute("SELECT device FROM slot").fetchall() == [("theirs",)]
    finally:
        pg_cluster.drop_database("test_isolation_other")


def test_a_new_database_starts_from_the_template_not_from_another_test(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_a_test_cluster_goes_to_memory_only_when_there_is_room(tmp_path: Path) -> None:
    assert pgcluster.scratch_parent(tmp_path, min_free=0) == tmp_path
    elsewhere = pgcluster.scratch_parent(tmp_path, min_free=1 << 60)
    assert elsewhere != tmp_path and elsewhere.is_dir()


def test_the_test_engine_is_sqlite_unless_named_and_a_misspelt_one_is_refused() -> None:
    assert pg.engine({}) == "sqlite"
    assert pg.engine({pg.ENGINE_VARIABLE: "postgres"}) == "postgres"
    with pytest.raises(ValueError, match="KEYSLOT_TEST_ENGINE=postgresql: expected one of"):
        pg.engine({pg.ENGINE_VARIABLE: "postgresql"})


def test_services_on_postgres_get_two_fresh_databases_in_the_fixtures_cluster(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    svc = Services(tmp_path / "svc", tls=False, engine="postgres")
    assert pg.cluster() is pg_cluster  # one cluster for the services and the fixtures
    assert svc.engine == "postgres"
    names = [url.split("?")[0].rsplit("/", 1)[1] for url in (svc.license_db, svc.device_db)]
    assert names[0].startswith(f"license_{os.getpid()}_")
    assert names[1].startswith(f"device_{os.getpid()}_")
    assert svc.license_db == pg_cluster.url(names[0])
    with svc.read("device") as db:  # fresh from the template: no table yet
        assert db.tables() == []
        assert db.rows("SELECT ? AS one, '%' AS percent", (1,)) == [{"one": 1, "percent": "%"}]
    svc.stop()  # never started: stop() drops its databases all the same
    with psycopg.connect(pg_cluster.url("postgres")) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
        assert left.fetchall() == []
    with pytest.raises(RuntimeError, match="make a new one"):
        svc.start()


def test_services_on_sqlite_keep_their_files_in_the_work_directory(tmp_path: Path) -> None:
    svc = Services(tmp_path / "svc", tls=False, engine="sqlite")
    assert (svc.license_db, svc.device_db) == (
        str(tmp_path / "svc" / "license.db"),
        str(tmp_path / "svc" / "device.db"),
    )
