"""`make test`: the suite's two tiers, run at the same time.

- sqlite: the whole suite (unit, e2e, contract) with the services on SQLite,
  shown as it runs;
- postgres: tests/e2e again, the kill -9 and crash tests included, with the
  services on PostgreSQL (``KEYSLOT_TEST_ENGINE=postgres``, tests/pg.py),
  its output kept and shown once the first tier is done.

Each tier ends with conftest's line ``engine <name>: N passed``; then a line
per tier with its exit status and time. Much of a tier's time is waiting
(services starting, sweepers' passes), so on this 2-core machine `make test`
took 4 min 41 s side by side, where one tier after the other took 9 min 3 s
(4 min 12 s on SQLite, 4 min 51 s on PostgreSQL): room under the 10-minute
budget as the suite grows. Ctrl-C reaches both pytest processes (they share
the terminal's process group), and each stops its services and its cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests import pg

PYTEST = str(Path(sys.executable).with_name("pytest"))


@dataclass(frozen=True)
class Tier:
    engine: str
    argv: Sequence[str]
    # Seconds this tier may take on a 2-core machine, side by side with the other, so
    # `make test` stays under 10 minutes; a tier past it is named at the end (a warning:
    # speed is measured by the bench, not failed in a test). Measured: 266 s and 281 s.
    budget: float = 420.0


TIERS = (
    Tier("sqlite", (PYTEST,), budget=420.0),
    Tier("postgres", (PYTEST, "tests/e2e"), budget=420.0),
)


def run(tiers: Sequence[Tier], out: Callable[[str], None] = print) -> int:
    """Starts every tier at once: the first writes to our stdout, the others to files shown
    after it. Returns 0 when every tier passed, else the first failing tier's status."""
    started = time.monotonic()
    results: list[tuple[Tier, int, float]] = []
    with ExitStack() as files:
        procs: list[tuple[Tier, subprocess.Popen[bytes], IO[bytes] | None]] = []
        for index, tier in enumerate(tiers):
            log = None if index == 0 else files.enter_context(tempfile.TemporaryFile())
            env = {**os.environ, pg.ENGINE_VARIABLE: tier.engine}
            proc = subprocess.Popen(tier.argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append((tier, proc, log))
        try:
            for tier, proc, log in procs:
                if log is not None and proc.poll() is None:
                    out(f"(engine {tier.engine} still running)")
                code = proc.wait()
                results.append((tier, code, time.monotonic() - started))
                if log is not None:
                    sys.stdout.flush()
                    out(f"\n--- engine {tier.engine}: {' '.join(tier.argv)} ---")
                    log.seek(0)
                    out(log.read().decode(errors="replace").rstrip("\n"))
        except KeyboardInterrupt:
            # Every pytest got the Ctrl-C too: let them stop their services and clusters.
            for _, proc, _ in procs:
                proc.wait()
            return 130
    for tier, code, seconds in results:
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        over = f" -- OVER ITS BUDGET of {tier.budget:.0f} s" if seconds > tier.budget else ""
        out(f"tier {tier.engine}: {verdict}, done after {seconds:.0f} s{over}")
    return next((code for _, code, _ in results if code != 0), 0)


if __name__ == "__main__":
    sys.exit(run(TIERS))
