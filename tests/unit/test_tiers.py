"""`make test`'s runner (tests/tiers.py): both tiers at once, each on its engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import tiers
from tests.tiers import Tier


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_the_tiers_run_at_once_each_on_its_engine_and_a_failure_is_the_status(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    started = tmp_path / "postgres-started"
    # The first tier ends only once the second has started: they run side by side.
    first = _python(
        "import os, pathlib, time\n"
        f"p = pathlib.Path({str(started)!r})\n"
        "end = time.monotonic() + 20\n"
        "while not p.exists() and time.monotonic() < end: time.sleep(0.02)\n"
        "print('first on', os.environ['KEYSLOT_TEST_ENGINE'], p.exists())\n"
    )
    second = _python(
        "import os, pathlib\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        "print('second on', os.environ['KEYSLOT_TEST_ENGINE'])\n"
        "raise SystemExit(3)\n"
    )
    shown: list[str] = []
    code = tiers.run([Tier("sqlite", first), Tier("postgres", second)], out=shown.append)
    assert code == 3
    assert capfd.readouterr().out == "first on sqlite True\n"  # streamed as it ran
    # "(engine postgres still running)" comes first when the second had not exited yet.
    shown = [line for line in shown if not line.startswith("(engine ")]
    assert shown[0].startswith("\n--- engine postgres: ")
    assert shown[1] == "second on postgres"  # kept, and shown after the first
    assert shown[2].startswith("tier sqlite: passed, done after ")
    assert shown[3].startswith("tier postgres: FAILED (exit 3), done after ")


def test_make_test_runs_the_whole_suite_on_sqlite_and_the_e2e_suite_on_postgres() -> None:
    assert [(t.engine, t.argv[1:]) for t in tiers.TIERS] == [
        ("sqlite", ()),
        ("postgres", ("tests/e2e",)),
    ]
    assert Path(tiers.TIERS[0].argv[0]).name == "pytest"


def test_a_tier_past_its_budget_is_named() -> None:
    shown: list[str] = []
    slow = Tier("sqlite", _python("import time; time.sleep(0.3)"), budget=0.1)
    assert tiers.run([slow], out=shown.append) == 0
    assert shown[-1].startswith("tier sqlite: passed, done after ")
    assert shown[-1].endswith("OVER ITS BUDGET of 0 s")
    # Both budgets together fit the 10 minutes of `make test` side by side.
    assert all(t.budget <= 600 for t in tiers.TIERS)
