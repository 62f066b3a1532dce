"""Settings from flags and KEYSLOT_* environment variables (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any


def add_common_flags(parser: argparse.ArgumentParser, default_listen: str, default_db: str) -> None:
    """Flags both services take; each defaults to its KEYSLOT_* variable."""
    env = os.environ.get
    parser.add_argument(
        "--listen",
        default=env("KEYSLOT_LISTEN", default_listen),
        help="host:port to serve on (KEYSLOT_LISTEN)",
    )
    parser.add_argument(
        "--db", default=env("KEYSLOT_DB", default_db), help="SQLite database file (KEYSLOT_DB)"
    )
    parser.add_argument(
        "--tokens-file",
        default=env("KEYSLOT_TOKENS_FILE", "var/tokens.json"),
        help="JSON tokens file of static principals (KEYSLOT_TOKENS_FILE)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(env("KEYSLOT_GRACE", "5")),
        help="seconds in-flight calls get at shutdown (KEYSLOT_GRACE)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("KEYSLOT_WORKERS", "16")),
        help="RPC worker threads (KEYSLOT_WORKERS)",
    )
    parser.add_argument(
        "--sweep-interval",
        type=float,
        default=float(env("KEYSLOT_SWEEP_INTERVAL", "30")),
        help="seconds between background sweeps (KEYSLOT_SWEEP_INTERVAL)",
    )
    parser.add_argument(
        "--test-clock-file",
        default=env("KEYSLOT_TEST_CLOCK_FILE") or None,
        help="tests only: read now from this file (KEYSLOT_TEST_CLOCK_FILE)",
    )
    parser.add_argument(
        "--log-calls",
        default=env("KEYSLOT_LOG_CALLS", "1"),
        help="1 to log one line per call, 0 not to (KEYSLOT_LOG_CALLS)",
    )


def describe(settings: Any) -> str:
    """Settings as one printable block, secrets masked."""
    lines = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if "token" in f.name and f.name != "tokens_file" and value:
            value = str(value)[:6] + "…"
        lines.append(f"  {f.name} = {value}")
    return "\n".join(lines)


def truthy(value: str | bool) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")
