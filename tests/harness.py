"""Runs the two services as real processes for tests: temp DBs, tokens, clock file.

Each service binds 127.0.0.1:0 and reports its port on stdout; the harness
reads it from the log file, waits for health SERVING, and can stop
(SIGTERM), kill -9 and restart a service on the same port and database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.errors import KeyslotError, from_rpc_error
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from keyslot_server.clock import format_rfc3339, parse_rfc3339

ROOT = Path(__file__).resolve().parents[1]
START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
TOKENS = {
    "provider": "test-provider-token-0001",
    "provider2": "test-provider-token-0002",
    "portal": "test-portal-token-00001",
    "console": "test-console-token-0001",
    "peer": "test-peer-token-0000001",
}


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

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, service_name: str, timeout: float = 30.0) -> None:
        listen = f"127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            out.write(b"--- start ---\n")
        offset = self.log.stat().st_size
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module, "--listen", listen, *self.args],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            found = re.search(r"serving on port (\d+)$", text, re.MULTILINE)
            if found:
                self.port = int(found.group(1))
                break
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{text}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()}")
        wait_serving(self.address, service_name, timeout)

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


def wait_serving(address: str, service: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
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


class Services:
    """Both services, started in ``workdir`` with a shared tokens file and clock."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tokens_file = workdir / "tokens.json"
        self.tokens_file.write_text(
            json.dumps(
                {
                    "tokens": [
                        {"token": TOKENS["provider"], "kind": "provider", "name": "shop-one"},
                        {"token": TOKENS["provider2"], "kind": "provider", "name": "shop-two"},
                        {"token": TOKENS["portal"], "kind": "portal", "name": "portal"},
                        {"token": TOKENS["console"], "kind": "console", "name": "console"},
                        {"token": TOKENS["peer"], "kind": "peer", "name": "device-service"},
                    ]
                }
            )
        )
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
            }
        )
        env.update(extra_env or {})
        self.license = Proc(
            "license",
            "license_service",
            ["--db", str(workdir / "license.db")],
            workdir / "license.log",
            env=env,
        )
        self.device = Proc(
            "device",
            "device_service",
            ["--db", str(workdir / "device.db")],
            workdir / "device.log",
            env=env,
        )
        self._channels: list[grpc.Channel] = []

    def start(self) -> Services:
        self.start_license()
        self.start_device()
        return self

    def start_license(self) -> None:
        self.license.start(LICENSE_SERVICE)

    def start_device(self) -> None:
        args = [a for a in self.device.args if not a.startswith("--license-address")]
        self.device.args = [*args, f"--license-address={self.license.address}"]
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

    def channel(self, address: str) -> grpc.Channel:
        channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def license_as(self, who: str | None = "provider") -> Caller:
        """A LicenseService caller with one of TOKENS (or a raw token, or None)."""
        token = TOKENS.get(who, who) if who else None
        return Caller(lpb_grpc.LicenseServiceStub(self.channel(self.license.address)), token)

    def device_as(self, who: str | None = "portal") -> Caller:
        """A DeviceService caller with one of TOKENS (or a raw credential, or None)."""
        token = TOKENS.get(who, who) if who else None
        return Caller(dpb_grpc.DeviceServiceStub(self.channel(self.device.address)), token)
