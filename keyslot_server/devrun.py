"""`make run`: starts both services on the dev defaults and stops both on Ctrl-C.

The first time it creates a development CA and certificates under var/tls/
(both services serve TLS; the device service calls the license service's
mutual-TLS peer port with its client certificate) and the development tokens:
their hashes in var/tokens.json, the tokens in var/credentials.json (0600),
which the keyslot CLI reads. It prints where they are and a first call.

The databases are var/license.db and var/device.db (SQLite). With
``--engine postgres`` (`make run DB=postgres`) they are two databases in a
throwaway PostgreSQL cluster started for the run (fsync on, as deployed)
under /var/tmp, which the postgres user can reach (var/ is 0700), and
stopped and removed when both services have stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keyslot_server import pgcluster, tls, tokens
from keyslot_server.dburl import redacted
from keyslot_server.files import private_dir, private_file

VAR = Path("var")
TOKENS = VAR / "tokens.json"
CREDENTIALS = VAR / "credentials.json"
TLS_DIR = VAR / "tls"
LICENSE = "127.0.0.1:50051"
LICENSE_PEER = "127.0.0.1:50053"  # the mutual-TLS port only the device service calls
DEVICE = "127.0.0.1:50052"
ENGINES = ("sqlite", "postgres")
# A local run's cluster: on disk (it is durable, unlike the tests' in memory), and not
# under var/, whose 0700 the postgres user the server runs as cannot search.
PG_PARENT = Path("/var/tmp")

# The development callers: (credential key, kind, name), one token each.
DEV_CALLERS = (
    ("provider", "provider", "dev-shop"),
    ("portal", "portal", "portal"),
    ("console", "console", "console"),
    ("peer", "peer", "device-service"),
)


def dev_tokens() -> dict[str, str]:
    """Creates the development tokens once; later runs reuse them.

    The services read only hashes (var/tokens.json, S6); the tokens themselves go
    to var/credentials.json (0600), which the CLI, the bench and the device
    service (its peer token) read. A plaintext tokens file an older release
    wrote is converted: its tokens are kept as credentials, then hashed.
    """
    private_dir(VAR, tighten_existing=True)
    if TOKENS.exists():
        text = private_file(TOKENS).read_text()  # tightened to 0600 if an older run left it
        plaintext = [t for t in json.loads(text).get("tokens", []) if "token" in t]
        for item in plaintext:
            saved = _credentials()
            if item.get("kind") in KINDS_WITH_CREDENTIALS and item["kind"] not in saved:
                tokens.save_credential(CREDENTIALS, item["kind"], item["token"])
        if plaintext:
            tokens.migrate(TOKENS)
    saved = _credentials()
    for key, kind, name in DEV_CALLERS:
        if key not in saved:
            token, _ = tokens.create(TOKENS, kind, name)
            tokens.save_credential(CREDENTIALS, key, token)
    return _credentials()


KINDS_WITH_CREDENTIALS = {key for key, _, _ in DEV_CALLERS}


def _credentials() -> dict[str, str]:
    if not CREDENTIALS.exists():
        return {}
    data = json.loads(private_file(CREDENTIALS).read_text())
    return {k: v for k, v in data.items() if isinstance(v, str)}


def taken(addresses: dict[str, str]) -> list[str]:
    """The names of the addresses that something already listens on.

    Checked before anything starts, so a second `make run` stops at once
    instead of starting one service of two.
    """
    busy = []
    for name, address in addresses.items():
        host, _, port = address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the services bind: a closed connection's TIME_WAIT is no obstacle.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(port)))
            except OSError:
                busy.append(name)
    return busy


def wait_serving(
    address: str,
    service: str,
    ca: Path,
    timeout: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Polls grpc.health.v1 over TLS until the service reports SERVING.

    Gives up early when ``proc`` (the service's process) has exited."""
    end = time.monotonic() + timeout
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                return False
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
    return False


class DatabaseCluster(Protocol):
    """What a run needs of a cluster (pgcluster.Cluster; a fake in tests)."""

    directory: Path

    def create_database(self, name: str) -> str: ...

    def stop(self) -> None: ...


def start_cluster(parent: Path = PG_PARENT) -> pgcluster.Cluster:
    """A throwaway durable cluster in a new directory under ``parent`` (else the temp dir)."""
    if not parent.is_dir():
        parent = Path(tempfile.gettempdir())
    directory = tempfile.mkdtemp(prefix="keyslot-dev-pg-", dir=parent)
    try:
        return pgcluster.Cluster.start(directory, durable=True)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # no server binaries: nothing was made
        raise


def postgres_databases(cluster: DatabaseCluster) -> dict[str, str]:
    """The license and device databases of a run, created in ``cluster``: their URLs."""
    return {
        service: cluster.create_database(f"keyslot_{service}") for service in ("license", "device")
    }


def sqlite_databases() -> dict[str, str]:
    """The license and device databases of a SQLite run: files under var/."""
    return {service: str(VAR / f"{service}.db") for service in ("license", "device")}


def database_lines(databases: dict[str, str]) -> list[str]:
    """A line per service naming its database, a URL's password redacted."""
    return [
        f"  {service + ' database':17}{redacted(target)}" for service, target in databases.items()
    ]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="sqlite",
        help="sqlite: var/*.db (the default); postgres: a throwaway local cluster",
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    addresses = {
        "license service": LICENSE,
        "device service": DEVICE,
        "license peer port": LICENSE_PEER,
    }
    busy = taken(addresses)
    if busy:
        ports = ", ".join(f"{addresses[name]} ({name})" for name in busy)
        print(
            f"cannot start: {ports} already in use; another keyslot is probably running"
            " (stop it with Ctrl-C in its terminal)",
            file=sys.stderr,
        )
        return 1
    pki = tls.dev_pki(TLS_DIR)
    credentials = dev_tokens()
    if args.engine == "sqlite":
        return serve(pki, credentials, sqlite_databases())
    try:
        cluster = start_cluster()
    except pgcluster.ClusterError as err:
        print(f"cannot start PostgreSQL: {err}", file=sys.stderr)
        return 1
    try:
        databases = postgres_databases(cluster)
        print(f"PostgreSQL started in {cluster.directory} (removed when keyslot stops):")
        print("\n".join(database_lines(databases)), flush=True)
        return serve(pki, credentials, databases)
    finally:
        print(f"stopping PostgreSQL and removing {cluster.directory}", flush=True)
        cluster.stop()


def serve(pki: tls.DevPki, credentials: dict[str, str], databases: dict[str, str]) -> int:
    """Starts both services on ``databases`` (license, device) and waits until both stop."""
    env = dict(os.environ, KEYSLOT_TOKENS_FILE=str(TOKENS))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "license_service",
                "--listen",
                LICENSE,
                "--db",
                databases["license"],
                *pki.license_args(),
                "--peer-listen",
                LICENSE_PEER,
            ],
            env=env,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device_service",
                "--listen",
                DEVICE,
                "--db",
                databases["device"],
                *pki.device_args(),
                "--license-address",
                LICENSE_PEER,
                "--peer-credentials",
                str(CREDENTIALS),
            ],
            env=env,
        ),
    ]

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    stopping = False

    def interrupt(*_: object) -> None:
        nonlocal stopping
        stopping = True
        stop()

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    started = (
        ("license service", procs[0], LICENSE, "keyslot.license.v1.LicenseService"),
        ("device service", procs[1], DEVICE, "keyslot.device.v1.DeviceService"),
    )
    for name, proc, address, service in started:
        if wait_serving(address, service, pki.ca, proc=proc):
            continue
        code = proc.poll()
        stop()
        codes = [p.wait() for p in procs]
        if stopping:  # Ctrl-C while starting: no complaint
            return max(codes)
        if code is None:
            print(f"the {name} did not become healthy at {address}", file=sys.stderr)
        else:
            print(f"the {name} exited at start with code {code} (see above)", file=sys.stderr)
        return code or max(codes) or 1
    print("\nkeyslot is running over TLS (Ctrl-C stops both):")
    print(f"  license service  {LICENSE}  keyslot.license.v1.LicenseService")
    print(f"  device service   {DEVICE}  keyslot.device.v1.DeviceService")
    print(f"  CA certificate   {pki.ca}  (trust it: --ca, KEYSLOT_CA, -cacert)")
    print(f"  client tokens    {CREDENTIALS}  ({', '.join(sorted(credentials))}; the CLI reads it)")
    print("\nIn another terminal, the provider token for raw calls:")
    read = f"import json; print(json.load(open('{CREDENTIALS}'))['provider'])"
    print(f'  export KEYSLOT_PROVIDER_TOKEN="$(python3 -c "{read}")"')
    print("  .venv/bin/buf curl --cacert var/tls/ca.pem --protocol grpc \\")
    print('    -H "authorization: Bearer $KEYSLOT_PROVIDER_TOKEN" \\')
    print(f"    https://{LICENSE}/keyslot.license.v1.LicenseService/ListProducts")
    print(flush=True)
    codes = [proc.wait() for proc in procs]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
