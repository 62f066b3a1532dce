"""Runs the two services as real processes for tests: temp DBs, tokens, clock file.

Each service binds 127.0.0.1:0 and reports its port on stdout; the harness
reads it from the log file, waits for health SERVING, and can stop
(SIGTERM), kill -9 and restart a service on the same port and database.

The databases are SQLite files in the work directory, or, with
``KEYSLOT_TEST_ENGINE=postgres`` (or ``Services(engine="postgres")``), two
fresh databases in the process's throwaway PostgreSQL cluster (tests/pg.py).
Tests read them through ``Services.read`` / ``Services.rows`` on either engine.

By default both serve TLS with a development CA made for the pair (S5), and
the device service calls the license service's mutual-TLS peer port with its
client certificate; ``Services(tls=False)`` runs them plaintext on loopback.
The tokens file holds hashes only (S6); the tests keep the tokens (TOKENS).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.errors import KeyslotError, from_rpc_error
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from keyslot_server.auth import hash_token
from keyslot_server.clock import format_rfc3339, parse_rfc3339
from keyslot_server.tls import dev_pki
from tests import pg

ROOT = Path(__file__).resolve().parents[1]
START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
TOKENS = {
    "provider": "test-provider-token-0001",
    "provider2": "test-provider-token-0002",
    "portal": "test-portal-token-00001",
    "console": "test-console-token-0001",
    "peer": "test-peer-token-0000001",
}
# (key in TOKENS, kind, name) of the static principals every test pair knows.
PRINCIPALS = (
    ("provider", "provider", "shop-one"),
    ("provider2", "provider", "shop-two"),
    ("portal", "portal", "portal"),
    ("console", "console", "console"),
    ("peer", "peer", "device-service"),
)


def write_tokens_file(path: Path, principals: Any = PRINCIPALS) -> None:
    """A tokens file (format 2, hashes only) for TOKENS."""
    entries = [
        {
            "id": f"tok_{i:012x}",
            "sha256": hash_token(TOKENS[key]),
            "kind": kind,
            "name": name,
            "role": "",
            "created": "2026-01-01T00:00:00Z",
            "expires": None,
        }
        for i, (key, kind, name) in enumerate(principals)
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 2, "tokens": entries}, indent=1))
    tmp.replace(path)


def wait_for(predicate: Any, what: str, timeout: float = 10.0, every: float = 0.05) -> Any:
    """Polls until ``predicate()`` is truthy and returns it.

    For background work only (a sweeper's pass, a restart's recovery): time
    itself is moved with TestClock, never waited for.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class TestClock:
    """The clock file both services read "now" from. Only moves forward."""

    def __init__(self, path: Path, start: datetime = START) -> None:
        self.path = path
        self.set(start)

    def now(self) -> datetime:
        return parse_rfc3339(self.path.read_text().strip())

    def set(self, at: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(format_rfc3339(at) + "\n")
        tmp.replace(self.path)  # atomic: a reader never sees half a timestamp

    def advance(self, delta: timedelta) -> datetime:
        at = self.now() + delta
        self.set(at)
        return at


class Caller:
    """A stub bound to a bearer token and a deadline: ``caller.GetCode(req)``."""

    def __init__(self, stub: Any, token: str | None, timeout: float = 10.0) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        rpc = getattr(self._stub, name)

        def call(request: Any) -> Any:
            return rpc(request, timeout=self._timeout, metadata=self._metadata)

        return call


def rich_error(err: grpc.RpcError) -> KeyslotError:
    """The rich status of a failed call, as clients read it (H5): exactly one ErrorInfo."""
    error = from_rpc_error(err)
    assert error.error_infos == 1, f"expected exactly one ErrorInfo, got {error.error_infos}"
    return error


# Every service log written in this test session, for the scan that runs last (S6).
SESSION_LOGS: list[Path] = []


@dataclass
class Proc:
    """One service process."""

    name: str
    module: str
    args: list[str]
    log: Path
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ca: Path | None = None  # the CA its certificate chains to; None: plaintext
    # The license service's mutual-TLS peer port (kept across restarts, like port).
    peer_port: int = 0
    peer_listen: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, service_name: str, timeout: float = 30.0) -> None:
        if self.log not in SESSION_LOGS:
            SESSION_LOGS.append(self.log)
        listen = f"127.0.0.1:{self.port}"
        peer = ["--peer-listen", f"127.0.0.1:{self.peer_port}"] if self.peer_listen else []
        with self.log.open("ab") as out:
            out.write(b"--- start ---\n")
        offset = self.log.stat().st_size
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module, "--listen", listen, *peer, *self.args],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            # A JSON log record's message (the services) or a plain line (the bench's echo).
            found = re.search(r'serving on port (\d+)(?:, peer port (\d+))?(?:"|$)', text, re.M)
            if found:
                self.port = int(found.group(1))
                if found.group(2):
                    self.peer_port = int(found.group(2))
                break
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{text}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()}")
        wait_serving(self.address, service_name, timeout, self.ca)

    def arg(self, flag: str) -> str:
        """The value of ``flag`` in the start arguments."""
        return self.args[self.args.index(flag) + 1]

    def set_arg(self, flag: str, value: str) -> None:
        """Replaces the value of ``flag`` in the start arguments (adds it if absent)."""
        if flag in self.args:
            self.args[self.args.index(flag) + 1] = value
        else:
            self.args += [flag, value]

    @property
    def peer_address(self) -> str:
        return f"127.0.0.1:{self.peer_port}"

    def channel(self, **options: Any) -> grpc.Channel:
        """A channel to the service as a client sees it (TLS trusting its CA)."""
        return open_channel(self.address, self.ca, **options)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """kill -9: no cleanup of any kind (H4)."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def open_channel(address: str, ca: Path | None, **options: Any) -> grpc.Channel:
    """A channel to ``address``: TLS trusting ``ca``, or plaintext when it is None."""
    opts = list(options.items())
    if ca is None:
        return grpc.insecure_channel(address, options=opts)
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    return grpc.secure_channel(address, credentials, options=opts)


def wait_serving(address: str, service: str, timeout: float = 30.0, ca: Path | None = None) -> None:
    end = time.monotonic() + timeout
    with open_channel(address, ca) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"{service} at {address} not SERVING after {timeout}s")


LICENSE_SERVICE = "keyslot.license.v1.LicenseService"
DEVICE_SERVICE = "keyslot.device.v1.DeviceService"


class ReadFailed(Exception):
    """A test's read of a service's database failed (a SQLite file mid-recovery, say)."""


class DatabaseView:
    """One service's database, read-only, inside one read transaction (one moment).

    ``rows`` takes SQLite's ``?`` parameters on either engine. On PostgreSQL
    ``SELECT *`` also returns the ``rowid`` column some tables have there.
    """

    def __init__(self, conn: Any, postgres: bool) -> None:
        self._conn = conn
        self._postgres = postgres

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of ``sql``, each a dict by column name."""
        if self._postgres:
            # psycopg's parameters are %s, so a literal % is doubled.
            sql = sql.replace("%", "%%").replace("?", "%s")
        return [dict(row) for row in self._conn.execute(sql, tuple(params))]

    def tables(self) -> list[str]:
        """The names of the database's own tables, sorted."""
        if self._postgres:
            sql = (
                "SELECT table_name AS name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        return sorted(row["name"] for row in self.rows(sql))


@contextmanager
def read_sqlite(path: str) -> Iterator[DatabaseView]:
    """A read-only view of the SQLite file ``path``; its errors are raised as ReadFailed."""
    try:
        with closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        ) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("BEGIN")  # one snapshot for every statement of the view
            yield DatabaseView(conn, postgres=False)
    except sqlite3.Error as err:
        raise ReadFailed(f"reading {path}: {err}") from err


class PostgresReader:
    """Read-only views of one PostgreSQL database over one connection, kept open.

    Connecting costs about 20 ms, and the S4 checks read both databases
    around each of some 1,800 calls. A lock lets threads (chaos's D3 sampler)
    share it; a failed connection is replaced at the next read.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self._lock = threading.Lock()

    @contextmanager
    def view(self) -> Iterator[DatabaseView]:
        """One REPEATABLE READ, READ ONLY transaction; errors are raised as ReadFailed."""
        import psycopg  # only PostgreSQL runs pay for it
        from psycopg.rows import dict_row

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
                    )
                    self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                    self._conn.read_only = True
                with self._conn.transaction():
                    yield DatabaseView(self._conn, postgres=True)
            except psycopg.Error as err:
                self.close()
                raise ReadFailed(f"reading {self.url}: {err}") from err

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Services:
    """Both services, started in ``workdir`` with a shared tokens file and clock.

    ``engine`` is ``sqlite`` (files in ``workdir``) or ``postgres`` (two fresh
    databases in the process's cluster); by default ``$KEYSLOT_TEST_ENGINE``.
    A restart or a kill -9 keeps the same databases; on PostgreSQL ``stop()``
    drops them, so a stopped pair is not started again.
    """

    def __init__(
        self,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
        *,
        tls: bool = True,
        engine: str | None = None,
    ) -> None:
        self.engine = engine or pg.engine()
        if self.engine not in pg.ENGINES:
            raise ValueError(f"engine {self.engine!r}: expected one of {', '.join(pg.ENGINES)}")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tokens_file = workdir / "tokens.json"
        write_tokens_file(self.tokens_file)
        self.credentials_file = workdir / "credentials.json"
        self.credentials_file.write_text(json.dumps(TOKENS))
        self.credentials_file.chmod(0o600)
        self.pki = dev_pki(workdir / "tls") if tls else None
        self.clock = TestClock(workdir / "clock.txt")
        env = dict(os.environ)
        env.update(
            {
                "KEYSLOT_TOKENS_FILE": str(self.tokens_file),
                "KEYSLOT_TEST_CLOCK_FILE": str(self.clock.path),
                "KEYSLOT_LICENSE_SWEEP_INTERVAL": "0.2",
                "KEYSLOT_DEVICE_SWEEP_INTERVAL": "0.2",
                "KEYSLOT_LICENSE_GRACE": "3",
                "KEYSLOT_DEVICE_GRACE": "3",
                "PYTHONUNBUFFERED": "1",
                # On PostgreSQL a write outside a unit of work (which could not be
                # re-run after a serialization failure) is an error, not a risk.
                "KEYSLOT_DB_STRICT_UNITS": "1",
            }
        )
        env.update(extra_env or {})
        # Dropped by stop() (PostgreSQL); SQLite files stay in workdir with the logs.
        self._pg_databases: list[str] = []
        self._dropped = False
        self._readers: dict[str, PostgresReader] = {}
        if self.engine == "postgres":
            license_db, device_db = (self._new_pg_database(s) for s in ("license", "device"))
        else:
            license_db, device_db = str(workdir / "license.db"), str(workdir / "device.db")
        license_args = ["--db", license_db]
        device_args = [
            "--db",
            device_db,
            "--peer-credentials",
            str(self.credentials_file),
        ]
        pki = self.pki
        if pki is not None:
            license_args += pki.license_args()
            device_args += pki.device_args()
        ca = pki.ca if pki is not None else None
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
            "device",
            "device_service",
            device_args,
            workdir / "device.log",
            env=env,
            ca=ca,
        )
        self._channels: list[grpc.Channel] = []

    def _new_pg_database(self, service: str) -> str:
        name, url = pg.new_database(service)
        self._pg_databases.append(name)
        return url

    @property
    def license_db(self) -> str:
        """The license service's ``--db``: a SQLite file's path or a postgresql:// URL."""
        return self.license.arg("--db")

    @property
    def device_db(self) -> str:
        """The device service's ``--db``: a SQLite file's path or a postgresql:// URL."""
        return self.device.arg("--db")

    @contextmanager
    def read(self, service: str) -> Iterator[DatabaseView]:
        """A read-only view of ``service``'s database ("license" or "device"), one moment."""
        target = {"license": self.license_db, "device": self.device_db}[service]
        if not target.startswith("postgresql://"):
            with read_sqlite(target) as view:
                yield view
            return
        reader = self._readers.get(service)
        if reader is None or reader.url != target:
            reader = self._readers[service] = PostgresReader(target)
        with reader.view() as view:
            yield view

    def rows(self, service: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of ``sql`` (``?`` parameters) in ``service``'s database, read-only."""
        with self.read(service) as view:
            return view.rows(sql, params)

    def start(self) -> Services:
        if self._dropped:
            raise RuntimeError("this pair was stopped and its databases dropped: make a new one")
        self.start_license()
        self.start_device()
        return self

    def start_license(self) -> None:
        self.license.start(LICENSE_SERVICE)

    def start_device(self) -> None:
        args = [a for a in self.device.args if not a.startswith("--license-address")]
        # With TLS the device service calls the mutual-TLS peer port (S5).
        target = self.license.peer_address if self.license.peer_listen else self.license.address
        self.device.args = [*args, f"--license-address={target}"]
        self.device.start(DEVICE_SERVICE)

    def restart_device(self, crash_at: str | None = None, **env: str) -> None:
        """kill -9 the device service (if running) and start it again, armed to crash at
        ``crash_at`` (KEYSLOT_CRASH_AT, H4) and with ``env`` added."""
        fresh = {k: v for k, v in self.device.env.items() if k != "KEYSLOT_CRASH_AT"}
        if crash_at:
            fresh["KEYSLOT_CRASH_AT"] = crash_at
        # A private copy: the license process shares the original dict.
        self.device.env = {**fresh, **env}
        if self.device.running():
            self.device.kill()
        self.start_device()

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        for proc in (self.device, self.license):
            if proc.running():
                try:
                    proc.terminate()
                except subprocess.TimeoutExpired:
                    proc.kill()
        for reader in self._readers.values():
            reader.close()
        # Each database is a copy of the template in memory: not kept till the session ends.
        while self._pg_databases:
            pg.drop_database(self._pg_databases.pop())
            self._dropped = True

    @property
    def ca(self) -> Path | None:
        """The CA both services' certificates chain to (None: plaintext)."""
        return self.pki.ca if self.pki is not None else None

    def channel(self, address: str, **options: Any) -> grpc.Channel:
        channel = open_channel(address, self.ca, **options)
        self._channels.append(channel)
        return channel

    def peer_channel(self, cert: Path | None = None, key: Path | None = None) -> grpc.Channel:
        """A channel to the license service's mutual-TLS peer port, presenting the peer's
        client certificate (or ``cert``/``key``), as the device service does (S5)."""
        assert self.pki is not None, "plaintext pairs have no peer port"
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(),
            (key or self.pki.peer_key).read_bytes(),
            (cert or self.pki.peer_cert).read_bytes(),
        )
        channel = grpc.secure_channel(self.license.peer_address, credentials)
        self._channels.append(channel)
        return channel

    def license_as(self, who: str | None = "provider") -> Caller:
        """A LicenseService caller with one of TOKENS (or a raw token, or None). The peer
        calls, like the device service, on the peer port with the peer's certificate."""
        token = TOKENS.get(who, who) if who else None
        if who == "peer" and self.pki is not None:
            channel = self.peer_channel()
        else:
            channel = self.channel(self.license.address)
        return Caller(lpb_grpc.LicenseServiceStub(channel), token)

    def device_as(self, who: str | None = "portal") -> Caller:
        """A DeviceService caller with one of TOKENS (or a raw credential, or None)."""
        token = TOKENS.get(who, who) if who else None
        return Caller(dpb_grpc.DeviceServiceStub(self.channel(self.device.address)), token)
