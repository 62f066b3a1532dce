"""`python -m license_service`: run the license service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from keyslot_server.main import run_service
from license_service.server import build
from license_service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    return run_service(Settings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
