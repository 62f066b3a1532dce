"""`python -m device_service`: run the device service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from device_service.server import build
from device_service.settings import Settings
from keyslot_server.files import private_umask
from keyslot_server.server import serve_forever, setup_logging
from keyslot_server.settings import describe, from_args


def main(argv: list[str] | None = None) -> int:
    # Before any file exists: SQLite's -wal/-shm come later and must be 0600 too.
    private_umask()
    setup_logging("device")
    settings = from_args(Settings, argv)
    print("device service settings:\n" + describe(settings), flush=True)
    running = build(settings)
    return serve_forever(running, settings.grace, "device service")


if __name__ == "__main__":
    sys.exit(main())
