"""S3: the failure budget both services count guesses with (keyslot_server.budget)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyslot_server.budget import FailureBudget, client_address
from keyslot_server.db import Database
from keyslot_server.retention import Pruner

T = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "budget.db")


def test_s3_budget_window_and_retry_delay(db: Database) -> None:
    budget = FailureBudget(db, 3, MINUTE)
    for i in range(3):
        assert budget.retry_after("a", T) is None
        assert budget.charge("a", T + timedelta(seconds=i)) is None
    assert budget.retry_after("a", T + timedelta(seconds=10)) == timedelta(seconds=50)
    assert budget.retry_after("b", T) is None  # per subject
    # Rolling: the first failure leaves at 60 s, and one more fits.
    assert budget.retry_after("a", T + timedelta(seconds=60)) is None
    assert budget.retry_after("a", T + timedelta(seconds=60.5)) is None
    assert FailureBudget(db, 0, MINUTE).retry_after("a", T) is None  # 0: off


def test_s3_budget_is_in_the_database(tmp_path: Path) -> None:
    """A new process (a restart, or another replica) sees the same count."""
    first = Database(tmp_path / "budget.db")
    for _ in range(3):
        FailureBudget(first, 3, MINUTE).charge("a", T)
    first.close()
    again = FailureBudget(Database(tmp_path / "budget.db"), 3, MINUTE)
    assert again.retry_after("a", T + timedelta(seconds=1)) == timedelta(seconds=59)


def test_s3_a_batch_past_the_budget_is_refused_and_counted(db: Database) -> None:
    budget = FailureBudget(db, 20, MINUTE)
    for _ in range(19):
        assert budget.charge("p", T) is None
    wait = budget.charge("p", T, failures=1000)  # 19 of 20 used: 1000 guesses do not fit
    assert wait == MINUTE
    assert budget.retry_after("p", T + timedelta(seconds=30)) == timedelta(seconds=30)
    assert budget.retry_after("p", T + MINUTE) is None


def test_s3_a_guess_racing_past_the_budget_is_refused(db: Database) -> None:
    budget = FailureBudget(db, 2, MINUTE)
    assert budget.charge("a", T) is None
    assert budget.charge("a", T) is None
    assert budget.charge("a", T) == MINUTE  # counted, and answered with the wait


def test_s3_old_failures_are_pruned(db: Database) -> None:
    budget = FailureBudget(db, 5, MINUTE)
    budget.charge("a", T)
    budget.charge("b", T + timedelta(seconds=30))
    pruned = Pruner(db, [budget.prune_rule()]).prune(T + timedelta(seconds=61))
    assert pruned == {"failed attempts": 1}
    assert db.one("SELECT COUNT(*) AS n FROM failed_attempts") == {"n": 1}


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:51234", "127.0.0.1"),
        ("ipv6:[::1]:51234", "::/64"),
        ("ipv6:%5B2001:db8:1:2:3:4:5:6%5D:443", "2001:db8:1:2::/64"),  # as gRPC spells it
        ("ipv6:%5Bfe80::1%25eth0%5D:1", "fe80::/64"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_s3_client_address(peer: str, address: str) -> None:
    assert client_address(peer) == address
