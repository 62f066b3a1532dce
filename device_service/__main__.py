"""`python -m device_service`: run the device service until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import sys

# gRPC core writes its own lines (a failed TLS handshake, ...) as plain text on
# stderr, not JSON: only its errors unless set. Read when grpc loads, so first.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from device_service.server import build  # noqa: E402
from device_service.settings import Settings  # noqa: E402
from keyslot_server.main import run_service  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_service(Settings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
