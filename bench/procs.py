"""The servers under test, as real processes (like tests/harness.py).

Each binds 127.0.0.1:0 and prints "serving on port N"; the bench reads it,
waits for health SERVING, and can stop and restart a service on the same
port and database (the scale step bulk-loads with the services stopped).

By default everything serves TLS as `make run` does (S5): a development CA
made in the work directory, both services and both echo servers with the same
server certificate, the device service on the license service's mutual-TLS
peer port with its client certificate. ``Servers(tls=False)`` runs all of it
plaintext on loopback, to measure what TLS costs. The tokens file holds
hashes only (S6); the tokens the bench calls with are in the credentials file.

The services start on SQLite files in the work directory; ``use_engine``
points them (stopped) at other databases, such as a PostgreSQL cluster's
URLs, with log files of their own. The echo servers, tokens and
certificates stay: one ceiling for both engines.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.engines import SQLITE
from keyslot_server import tokens
from keyslot_server.tls import dev_pki
from tests.harness import DEVICE_SERVICE, LICENSE_SERVICE, Proc

# The bench's callers: (credential key, kind, name), one token each.
CALLERS = (
    ("provider", "provider", "shop"),
    ("portal", "portal", "portal"),
    ("console", "console", "console"),
    ("peer", "peer", "device-service"),
)


def create_tokens(tokens_file: Path, credentials_file: Path) -> dict[str, str]:
    """New tokens for CALLERS: hashes in ``tokens_file``, tokens in ``credentials_file``
    (the device service reads its peer token there); returns {key: token}."""
    issued = {}
    for key, kind, name in CALLERS:
        token, _ = tokens.create(tokens_file, kind, name)
        tokens.save_credential(credentials_file, key, token)
        issued[key] = token
    return issued


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
    """The echo servers and both services, in ``workdir``; TLS unless ``tls`` is False."""

    def __init__(self, workdir: Path, workers: int, *, tls: bool = True) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tokens_file = workdir / "tokens.json"
        self.credentials_file = workdir / "credentials.json"
        self.tokens = create_tokens(self.tokens_file, self.credentials_file)
        self.pki = dev_pki(workdir / "tls") if tls else None
        # What every bench client trusts (None: plaintext channels).
        self.ca = self.pki.ca.read_bytes() if self.pki is not None else None
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
        # The SQLite files (scenario 6 bulk-loads them): the services' databases by default.
        self.license_db = workdir / "license.db"
        self.device_db = workdir / "device.db"
        self.engine = SQLITE
        pki = self.pki
        serve: list[str] = []
        license_args = ["--db", str(self.license_db)]
        device_args = ["--db", str(self.device_db)]
        device_args += ["--peer-credentials", str(self.credentials_file)]
        if pki is not None:
            serve = pki.serve_args()
            license_args += pki.license_args()
            device_args += pki.device_args()
        ca = pki.ca if pki is not None else None
        # The echo servers serve the services' certificate: the ratios compare like with like.
        echo_args = ["--workers", str(workers), *serve]
        self.echo = Proc("echo", "bench.echo", echo_args, workdir / "echo.log", env=env, ca=ca)
        self.floor = Proc(
            "floor",
            "bench.echo",
            [*echo_args, "--keyslot"],
            workdir / "floor.log",
            env=env,
            ca=ca,
        )
        self.license = Proc(
            "license",
            "license_service",
            license_args,
            workdir / "license.log",
            env=env,
            ca=ca,
            peer_listen=pki is not None,
        )
        self.device = Proc(
            "device", "device_service", device_args, workdir / "device.log", env=env, ca=ca
        )

    @property
    def transport(self) -> str:
        """The transport of this run, for the results header."""
        if self.pki is None:
            return "plaintext on loopback (--plaintext): no TLS anywhere"
        return (
            "TLS (server certificates from the bench's own CA, every client channel and both"
            " echo servers included); device -> license over mutual TLS on the peer port"
        )

    def use_engine(self, engine: str, license_db: str = "", device_db: str = "") -> None:
        """The next ``start_services`` runs on ``engine``: its databases (a path or a URL),
        the SQLite files when none are given; stop the services first.

        Each engine other than SQLite logs to files of its own (license-postgres.log, ...).
        """
        if self.license.running() or self.device.running():
            raise RuntimeError("use_engine: stop the services first")
        self.engine = engine
        self.license.set_arg("--db", license_db or str(self.license_db))
        self.device.set_arg("--db", device_db or str(self.device_db))
        suffix = "" if engine == SQLITE else f"-{engine}"
        self.license.log = self.workdir / f"license{suffix}.log"
        self.device.log = self.workdir / f"device{suffix}.log"

    def start_echo(self) -> None:
        self.echo.start("bench.Echo")
        self.floor.start("bench.Echo")

    def start_services(self) -> None:
        self.license.start(LICENSE_SERVICE)
        args = [a for a in self.device.args if not a.startswith("--license-address")]
        # With TLS the device service calls the mutual-TLS peer port (S5).
        target = self.license.peer_address if self.license.peer_listen else self.license.address
        self.device.args = [*args, f"--license-address={target}"]
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
