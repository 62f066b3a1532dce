"""`python -m license_service`: run the license service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from keyslot.runtime.files import private_umask
from keyslot.runtime.server import serve_forever, setup_logging
from keyslot.runtime.settings import describe

from license_service.server import Settings, build


def main(argv: list[str] | None = None) -> int:
    # Before any file exists: SQLite's -wal/-shm come later and must be 0600 too.
    private_umask()
    setup_logging("license")
    settings = Settings.from_args(argv)
    print("license service settings:\n" + describe(settings), flush=True)
    running = build(settings)
    return serve_forever(running, settings.grace, "license service")


if __name__ == "__main__":
    sys.exit(main())
