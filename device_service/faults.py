"""Fault injection for crash-safety and race tests (H4): inert unless its variables are set.

Crash points (KEYSLOT_CRASH_AT) end the process like kill -9. Pause points
(KEYSLOT_PAUSE_DIR) hold one thread at a named point so a test can run
another call in between, deterministically: the test arms a point by
creating ``<dir>/<point>.arm``; the next thread that reaches the point
consumes the arm, creates ``<point>.reached`` and waits until the test
creates ``<point>.go``. Points are the same names as the crash points, plus
``after_sweep`` (a whole sweeper pass has run).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("keyslot.device.faults")

# Read once at start: a test sets it on the process it restarts.
_CRASH_AT = frozenset(p for p in os.environ.get("KEYSLOT_CRASH_AT", "").split(",") if p)
_PAUSE_DIR = Path(os.environ["KEYSLOT_PAUSE_DIR"]) if os.environ.get("KEYSLOT_PAUSE_DIR") else None
# A paused thread gives up after this long, so a test that failed never hangs a service.
PAUSE_LIMIT_S = 60.0

# The points the handshake passes; tests name them in KEYSLOT_CRASH_AT or arm them.
POINTS = (
    "before_prepare",  # intent row written, PrepareGrant not sent
    "after_prepare",  # PrepareGrant answered, local write not done
    "before_commit",  # COMMITTING written, CommitGrant not sent
    "after_commit",  # CommitGrant answered, local write not done
    "after_abort",  # AbortGrant answered, local write not done
)


def crash_point(name: str) -> None:
    """Dies like kill -9 (no cleanup, exit 137) when ``name`` is armed; pauses when armed so."""
    if name in _CRASH_AT:
        log.critical("KEYSLOT_CRASH_AT: crashing at %s", name)  # its handler flushes
        os._exit(137)
    if _PAUSE_DIR is not None:
        pause_point(name)


def pause_point(name: str) -> None:
    """Holds this thread at ``name`` if a test armed it (one thread per arming)."""
    if _PAUSE_DIR is None:
        return
    try:
        # Unlinking is the atomic claim: exactly one thread takes an arming.
        (_PAUSE_DIR / f"{name}.arm").unlink()
    except FileNotFoundError:
        return
    go = _PAUSE_DIR / f"{name}.go"
    (_PAUSE_DIR / f"{name}.reached").touch()
    end = time.monotonic() + PAUSE_LIMIT_S
    while not go.exists() and time.monotonic() < end:
        time.sleep(0.005)
    go.unlink(missing_ok=True)
