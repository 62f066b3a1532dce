"""`python -m device_service`: run the device service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from device_service.server import build
from device_service.settings import Settings
from keyslot_server.main import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service(Settings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
