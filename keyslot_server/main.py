"""`python -m <service>`: the one start-up sequence both services share."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from keyslot_server.config import EXIT_CONFIG, ConfigError
from keyslot_server.files import private_umask
from keyslot_server.logs import setup_logging
from keyslot_server.server import AddressInUse, Running, serve_forever
from keyslot_server.settings import ServerSettings, from_args, shown

S = TypeVar("S", bound=ServerSettings)

log = logging.getLogger("keyslot.lifecycle")  # written at every --log-level


def run_service(
    cls: type[S], build: Callable[[S], Running], argv: Sequence[str] | None = None
) -> int:
    """Parses the settings, builds the service and serves until SIGTERM/SIGINT.

    A configuration error (a bad file or flag) is one line and exit 2, a port
    that is taken one line and exit 1: no traceback either way."""
    name = f"{cls.service} service"
    # Before any file exists: SQLite's -wal/-shm come later and must be 0600 too.
    private_umask()
    setup_logging(cls.service)
    settings = from_args(cls, argv)
    logging.getLogger().setLevel(settings.log_level.upper())
    log.info("%s settings", name, extra={"settings": shown(settings)})
    try:
        running = build(settings)
    except ConfigError as err:  # before any database exists
        print(f"{name}: {err}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except AddressInUse as err:
        print(f"{name}: {err}", file=sys.stderr, flush=True)
        return 1
    return serve_forever(running, settings.grace, name)
