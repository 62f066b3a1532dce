"""`python -m bench [--quick] [--keep] [--plaintext] [--only ...] [--engines ...]`: run every
scenario (2-5 on SQLite and on PostgreSQL) and write the results."""

from __future__ import annotations

import argparse
import sys

from bench.engines import ENGINES
from bench.run import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short windows, scale up to 100k (under 2 minutes)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (DBs, logs)")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="everything without TLS (services, echo servers, clients), to see what TLS costs; "
        "a full run writes results-plaintext.md",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run besides the ceiling: "
        "checkin,send,activate,contention,scale (written to results-quick.md)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated engines scenarios 2-5 run on, in this order: sqlite,postgres "
        "(the default; one alone writes results-quick.md)",
    )
    args = parser.parse_args()
    only = frozenset(filter(None, args.only.split(",")))
    unknown = only - {"checkin", "send", "activate", "contention", "scale"}
    if unknown:
        parser.error(f"--only: unknown scenarios {sorted(unknown)}")
    engines = tuple(filter(None, args.engines.split(",")))
    if not engines or set(engines) - set(ENGINES) or len(set(engines)) != len(engines):
        parser.error(f"--engines: name each of {list(ENGINES)} at most once")
    sys.exit(
        main(
            quick=args.quick,
            keep=args.keep,
            only=only,
            plaintext=args.plaintext,
            engines=engines,
        )
    )
