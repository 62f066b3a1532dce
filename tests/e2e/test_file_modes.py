"""S6: the services' databases (codes in clear) are 0600 files in a 0700 directory.

Both services start on databases in a directory that does not exist yet, so
the services create it, the files and SQLite's -wal/-shm companions
themselves; the test process keeps its own umask (0o022 here), so the modes
come from the services. On PostgreSQL the server owns its files: only the
services' umask is checked there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyslot.device.v1 import device_service_pb2 as dpb

from tests.e2e.device_support import issue, new_account
from tests.harness import Services


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def services_in_new_dir(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Services, Path]]:
    old = os.umask(0o022)  # what a shell usually has: new files 0644 unless the service says
    workdir = tmp_path_factory.mktemp("modes") / "svc"
    svc = Services(workdir)
    data = workdir / "data"
    if svc.engine == "sqlite":
        svc.license.set_arg("--db", str(data / "license.db"))
        svc.device.set_arg("--db", str(data / "device.db"))
    try:
        yield svc.start(), data
    finally:
        svc.stop()
        os.umask(old)


@pytest.mark.sqlite_only
def test_s6_database_files_are_0600_in_a_0700_directory(
    services_in_new_dir: tuple[Services, Path],
) -> None:
    services, data = services_in_new_dir
    # Writes on both services, so each database has its WAL.
    new_account(services)
    issue(services)
    services.device_as("portal").ListOutbox(dpb.ListOutboxRequest())
    files = sorted(p for p in data.iterdir())
    names = {p.name for p in files}
    assert {"license.db", "device.db", "license.db-wal", "device.db-wal"} <= names
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert mode(data) == 0o700


def test_s6_services_run_with_an_owner_only_umask(
    services_in_new_dir: tuple[Services, Path],
) -> None:
    services, _data = services_in_new_dir
    for proc in (services.license, services.device):
        assert proc.popen is not None
        status = Path(f"/proc/{proc.popen.pid}/status")
        if not status.exists():
            pytest.skip("no /proc on this system")
        umask = [line for line in status.read_text().splitlines() if line.startswith("Umask:")]
        if not umask:
            pytest.skip("this kernel does not show a process's umask")
        # Any file the service creates later (a key, a journal) is its owner's only.
        assert umask[0].split()[1] == "0077", proc.name
