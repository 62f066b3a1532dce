"""Fault injection for crash-safety tests (H4): inert unless KEYSLOT_CRASH_AT is set."""

from __future__ import annotations

import os
import sys

# Read once at start: a test sets it on the process it restarts.
_CRASH_AT = frozenset(p for p in os.environ.get("KEYSLOT_CRASH_AT", "").split(",") if p)

# The points the handshake passes; tests name them in KEYSLOT_CRASH_AT.
POINTS = (
    "before_prepare",  # intent row written, PrepareGrant not sent
    "after_prepare",  # PrepareGrant answered, local write not done
    "before_commit",  # COMMITTING written, CommitGrant not sent
    "after_commit",  # CommitGrant answered, local write not done
    "after_abort",  # AbortGrant answered, local write not done
)


def crash_point(name: str) -> None:
    """Dies like kill -9 (no cleanup, exit 137) when ``name`` is armed."""
    if name in _CRASH_AT:
        sys.stderr.write(f"KEYSLOT_CRASH_AT: crashing at {name}\n")
        sys.stderr.flush()
        os._exit(137)
