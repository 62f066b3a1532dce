"""`make run` (keyslot_server.devrun): a second one stops before starting anything."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
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
