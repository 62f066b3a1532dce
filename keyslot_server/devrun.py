"""`make run`: starts both services on the dev defaults and stops both on Ctrl-C.

The first time it creates a development CA and certificates under var/tls/
(both services serve TLS; the device service calls the license service's
mutual-TLS peer port with its client certificate) and the development tokens:
their hashes in var/tokens.json, the tokens in var/credentials.json (0600),
which the keyslot CLI reads. It prints where they are and a first call.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keyslot_server import tls, tokens
from keyslot_server.files import private_dir, private_file

VAR = Path("var")
TOKENS = VAR / "tokens.json"
CREDENTIALS = VAR / "credentials.json"
TLS_DIR = VAR / "tls"
LICENSE = "127.0.0.1:50051"
LICENSE_PEER = "127.0.0.1:50053"  # the mutual-TLS port only the device service calls
DEVICE = "127.0.0.1:50052"

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


def main() -> int:
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
                str(VAR / "license.db"),
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
                str(VAR / "device.db"),
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
    sys.exit(main())
