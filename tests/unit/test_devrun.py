"""`make run` (keyslot_server.devrun): a second one stops before starting anything."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyslot_server import devrun


def _free_address() -> str:
    """A loopback address nothing listens on (the kernel's pick, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def listening() -> Iterator[str]:
    """An address this test listens on, as a running keyslot would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def dev_ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """devrun on free ports (not 50051-50053, which a real `make run` may hold), in tmp_path."""
    monkeypatch.chdir(tmp_path)  # var/ is relative to the working directory
    for name in ("LICENSE", "DEVICE", "LICENSE_PEER"):
        monkeypatch.setattr(devrun, name, _free_address())
    # main() installs handlers for Ctrl-C; pytest keeps its own.
    monkeypatch.setattr(signal, "signal", lambda *_: None)


def test_taken_names_only_the_addresses_in_use(listening: str) -> None:
    free = _free_address()
    assert devrun.taken({"busy": listening, "free": free}) == ["busy"]


@pytest.mark.usefixtures("dev_ports")
def test_a_second_run_stops_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, listening: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devrun, "DEVICE", listening)

    def no_start(*_: object, **__: object) -> None:
        raise AssertionError("devrun started a service")

    monkeypatch.setattr(subprocess, "Popen", no_start)
    assert devrun.main() == 1
    out, err = capsys.readouterr()
    assert "keyslot is running" not in out
    [line] = err.splitlines()
    assert listening in line and "device service" in line
    assert "another keyslot is probably running" in line
    assert not Path("var").exists()  # no certificates or tokens made either


@pytest.mark.usefixtures("dev_ports")
def test_a_service_that_exits_at_start_is_named_with_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_popen = subprocess.Popen

    def fake(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # The license service fails at once; the device service would run on.
        code = "raise SystemExit(3)" if "license_service" in args else "import time; time.sleep(60)"
        return real_popen([sys.executable, "-c", code], **kwargs)

    monkeypatch.setattr(subprocess, "Popen", fake)
    assert devrun.main() == 3
    out, err = capsys.readouterr()
    assert "keyslot is running" not in out
    assert "the license service exited at start with code 3" in err


class FakeCluster:
    """A cluster that only records what a run asked of it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.databases: list[str] = []
        self.stopped = False

    def create_database(self, name: str) -> str:
        self.databases.append(name)
        return f"postgresql://keyslot:s3cret@127.0.0.1:5999/{name}?sslmode=disable"

    def stop(self) -> None:
        self.stopped = True


def test_the_engine_is_sqlite_unless_postgres_is_asked_for() -> None:
    assert devrun.parse_args([]).engine == "sqlite"
    assert devrun.parse_args(["--engine", "postgres"]).engine == "postgres"
    with pytest.raises(SystemExit):
        devrun.parse_args(["--engine", "mysql"])


def test_a_postgres_run_gets_two_databases_and_prints_no_password(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path)
    databases = devrun.postgres_databases(cluster)
    assert cluster.databases == ["keyslot_license", "keyslot_device"]
    assert set(databases) == {"license", "device"}
    lines = devrun.database_lines(databases)
    assert len(lines) == 2 and all("s3cret" not in line for line in lines)
    assert "keyslot_license?sslmode=disable" in lines[0] and ":***@" in lines[0]
    assert devrun.sqlite_databases() == {"license": "var/license.db", "device": "var/device.db"}


def test_the_cluster_goes_where_the_server_user_can_reach_not_under_var(tmp_path: Path) -> None:
    assert not devrun.PG_PARENT.resolve().is_relative_to(devrun.VAR.resolve())
    started: list[Path] = []

    def fake_start(directory: str, *, durable: bool) -> FakeCluster:
        assert durable  # a local run commits as a deployment does
        started.append(Path(directory))
        return FakeCluster(Path(directory))

    fallback = tmp_path / "tmp"
    fallback.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(devrun.pgcluster.Cluster, "start", fake_start)
        mp.setattr(tempfile, "tempdir", str(fallback))
        cluster = devrun.start_cluster(tmp_path)
        assert started == [cluster.directory] and cluster.directory.parent == tmp_path
        # Without /var/tmp, the system's temp dir.
        assert devrun.start_cluster(tmp_path / "missing").directory.parent == fallback


def test_a_failed_cluster_start_leaves_no_directory_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_server(directory: str, *, durable: bool) -> None:
        raise devrun.pgcluster.MissingBinaries("PostgreSQL server binaries not found")

    monkeypatch.setattr(devrun.pgcluster.Cluster, "start", no_server)
    with pytest.raises(devrun.pgcluster.MissingBinaries):
        devrun.start_cluster(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("dev_ports")
def test_a_postgres_run_passes_the_urls_and_removes_the_cluster_when_the_services_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = FakeCluster(tmp_path / "pg")
    monkeypatch.setattr(devrun, "start_cluster", lambda: cluster)
    real_popen = subprocess.Popen
    started: list[list[str]] = []

    def fake(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(args)
        return real_popen([sys.executable, "-c", "raise SystemExit(3)"], **kwargs)

    monkeypatch.setattr(subprocess, "Popen", fake)
    assert devrun.main(["--engine", "postgres"]) == 3
    dbs = [args[args.index("--db") + 1] for args in started]
    assert [db.split("?")[0].rsplit("/", 1)[1] for db in dbs] == cluster.databases
    assert cluster.stopped
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err
    assert f"stopping PostgreSQL and removing {cluster.directory}" in out


@pytest.mark.usefixtures("dev_ports")
def test_a_postgres_run_without_a_server_says_why_in_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_server() -> None:
        raise devrun.pgcluster.MissingBinaries("PostgreSQL server binaries not found: install it")

    monkeypatch.setattr(devrun, "start_cluster", no_server)
    monkeypatch.setattr(subprocess, "Popen", lambda *_, **__: pytest.fail("a service started"))
    assert devrun.main(["--engine", "postgres"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == "cannot start PostgreSQL: PostgreSQL server binaries not found: install it"
