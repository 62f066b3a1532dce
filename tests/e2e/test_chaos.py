"""D3, D4, D8 and H4 under a bounded randomized crash-and-race run (tests/chaos.py).

Mixed concurrent load with disconnects racing activations, sends, completions,
reserve adds and take-overs, while either service is killed (-9) and
restarted; afterwards no slot is leaked or over-counted, a disconnected
device holds nothing, both sides of every handshake agree, and nothing
acknowledged is lost. `make chaos ROUNDS=N` runs the same rounds for longer.
"""

from __future__ import annotations

from pathlib import Path

from tests import chaos


def test_d3_h4_random_crash_and_race_rounds(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = chaos.run(rounds=3, seed=1, seconds=5.0, base=tmp_path, out=lines.append)
    print("\n".join(lines))
    assert summary.violations == [], "\n".join(lines)
