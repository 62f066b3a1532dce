"""The servers under test, as real processes (like tests/harness.py).

Each binds 127.0.0.1:0 and prints "serving on port N"; the bench reads it,
waits for health SERVING, and can stop and restart a service on the same
port and database (the scale step bulk-loads with the services stopped).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.harness import DEVICE_SERVICE, LICENSE_SERVICE, Proc

TOKENS = {
    "provider": "bench-provider-token-0001",
    "portal": "bench-portal-token-00001",
    "console": "bench-console-token-0001",
    "peer": "bench-peer-token-0000001",
}


def write_tokens(path: Path) -> None:
    entries = [
        {"token": TOKENS["provider"], "kind": "provider", "name": "shop"},
        {"token": TOKENS["portal"], "kind": "portal", "name": "portal"},
        {"token": TOKENS["console"], "kind": "console", "name": "console"},
        {"token": TOKENS["peer"], "kind": "peer", "name": "peer"},
    ]
    path.write_text(json.dumps({"tokens": entries}))


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MB, from /proc (no psutil)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MB
    return values.get("VmHWM", 0.0), values.get("VmRSS", 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rpartition(")")[2].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Servers:
    """The echo server and both services, in ``workdir``."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tokens_file = workdir / "tokens.json"
        write_tokens(self.tokens_file)
        env = dict(os.environ)
        env.update(
            {
                "KEYSLOT_TOKENS_FILE": str(self.tokens_file),
                "KEYSLOT_LICENSE_LOG_CALLS": "0",
                "KEYSLOT_DEVICE_LOG_CALLS": "0",
                "KEYSLOT_LICENSE_WORKERS": str(workers),
                "KEYSLOT_DEVICE_WORKERS": str(workers),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("KEYSLOT_TEST_CLOCK_FILE", None)
        self.license_db = workdir / "license.db"
        self.device_db = workdir / "device.db"
        self.echo = Proc(
            "echo", "bench.echo", ["--workers", str(workers)], workdir / "echo.log", env=env
        )
        self.floor = Proc(
            "floor",
            "bench.echo",
            ["--workers", str(workers), "--keyslot"],
            workdir / "floor.log",
            env=env,
        )
        self.license = Proc(
            "license",
            "license_service",
            ["--db", str(self.license_db)],
            workdir / "license.log",
            env=env,
        )
        self.device = Proc(
            "device",
            "device_service",
            ["--db", str(self.device_db)],
            workdir / "device.log",
            env=env,
        )

    def start_echo(self) -> None:
        self.echo.start("bench.Echo")
        self.floor.start("bench.Echo")

    def start_services(self) -> None:
        self.license.start(LICENSE_SERVICE)
        args = [a for a in self.device.args if not a.startswith("--license-address")]
        self.device.args = [*args, f"--license-address={self.license.address}"]
        self.device.start(DEVICE_SERVICE)

    def stop_services(self) -> None:
        for proc in (self.device, self.license):
            stop(proc)

    def stop_all(self) -> None:
        self.stop_services()
        stop(self.echo)
        stop(self.floor)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running server."""
        return {
            proc.name: cpu_seconds(proc.popen.pid)
            for proc in (self.echo, self.floor, self.license, self.device)
            if proc.running() and proc.popen is not None
        }

    def rss(self) -> dict[str, tuple[float, float]]:
        """Peak and current RSS (MB) of each running service."""
        out = {}
        for proc in (self.license, self.device):
            if proc.running() and proc.popen is not None:
                out[proc.name] = peak_rss_mb(proc.popen.pid)
        return out


def stop(proc: Proc) -> None:
    if proc.running():
        try:
            proc.terminate()
        except subprocess.TimeoutExpired:
            proc.kill()
