"""`make run`: starts both services on the dev defaults and stops both on Ctrl-C.

Writes var/tokens.json with fresh development tokens the first time and
prints them, so you can call the services with grpcurl or the keyslot CLI.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keyslot_server.files import private_dir, private_file, write_private

VAR = Path("var")
TOKENS = VAR / "tokens.json"
LICENSE = "127.0.0.1:50051"
DEVICE = "127.0.0.1:50052"


def dev_tokens() -> dict[str, list[dict[str, str]]]:
    """Creates the development tokens file once; later runs reuse it.

    var/ (databases, tokens) is 0700 and the tokens file 0600, also when an
    older run left them readable by others.
    """
    private_dir(VAR, tighten_existing=True)
    if TOKENS.exists():
        return json.loads(private_file(TOKENS).read_text())
    data = {
        "tokens": [
            {
                "token": f"dev-provider-{secrets.token_urlsafe(16)}",
                "kind": "provider",
                "name": "dev-shop",
            },
            {
                "token": f"dev-portal-{secrets.token_urlsafe(16)}",
                "kind": "portal",
                "name": "portal",
            },
            {
                "token": f"dev-console-{secrets.token_urlsafe(16)}",
                "kind": "console",
                "name": "console",
            },
            {
                "token": f"dev-peer-{secrets.token_urlsafe(16)}",
                "kind": "peer",
                "name": "device-service",
            },
        ]
    }
    write_private(TOKENS, json.dumps(data, indent=2) + "\n")
    return data


def wait_serving(address: str, service: str, timeout: float = 20.0) -> bool:
    """Polls grpc.health.v1 until the service reports SERVING."""
    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
    return False


def main() -> int:
    tokens = dev_tokens()
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
                "--license-address",
                LICENSE,
            ],
            env=env,
        ),
    ]

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ok = wait_serving(LICENSE, "keyslot.license.v1.LicenseService") and wait_serving(
        DEVICE, "keyslot.device.v1.DeviceService"
    )
    if not ok:
        print("services did not become healthy", file=sys.stderr)
        stop()
        return 1
    print("\nkeyslot is running (Ctrl-C stops both):")
    print(f"  license service  {LICENSE}  keyslot.license.v1.LicenseService")
    print(f"  device service   {DEVICE}  keyslot.device.v1.DeviceService")
    print(f"  development tokens ({TOKENS}):")
    for item in tokens["tokens"]:
        print(f"    {item['kind']:<9} {item['token']}")
    print(flush=True)
    codes = [proc.wait() for proc in procs]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
