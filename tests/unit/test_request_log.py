"""H1: the shared request log (keyslot_server.requests) both services use."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from keyslot_server.db import Database
from keyslot_server.errors import Code, ServiceError
from keyslot_server.requests import (
    CLAIMED,
    FINISHED,
    NOT_STORED,
    AlreadyClaimed,
    Key,
    KeyedLock,
    RequestLog,
    create_table,
    fingerprint,
)
from keyslot_server.retention import Pruner, request_log_rule
from keyslot_server.timeconv import to_epoch_us

NOW = datetime(2026, 3, 1, tzinfo=UTC)
KEY = Key("acc_1", "SendSubscription", "req-1")


class _Error(ServiceError):
    DOMAIN = "test.keyslot"


@pytest.fixture
def log(tmp_path: Path) -> RequestLog:
    db = Database(tmp_path / "requests.db")
    with db.write() as w:
        create_table(w, "requests")
    return RequestLog(db, "requests", _Error, lambda: int(to_epoch_us(NOW) or 0))


def _counting(answer: str = "done"):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def work() -> StringValue:
        calls.append(1)
        return StringValue(value=answer)

    return calls, work


def test_h1_run_stores_the_answer_and_replays_it(log: RequestLog) -> None:
    calls, work = _counting()
    first = log.run(KEY, "f", StringValue, work)
    again = log.run(KEY, "f", StringValue, work)
    assert first == again == StringValue(value="done")
    assert len(calls) == 1
    assert log.records(KEY, "f")[0].state == FINISHED


def test_h1_run_without_request_id_just_works(log: RequestLog) -> None:
    calls, work = _counting()
    key = Key("acc_1", "SendSubscription", "")
    log.run(key, "f", StringValue, work)
    log.run(key, "f", StringValue, work)
    assert len(calls) == 2


def test_h1_other_parameters_are_request_id_reused(log: RequestLog) -> None:
    _, work = _counting()
    log.run(KEY, "f", StringValue, work)
    with pytest.raises(_Error) as got:
        log.run(KEY, "other", StringValue, work)
    assert got.value.reason == "REQUEST_ID_REUSED"
    assert got.value.code == Code.ALREADY_EXISTS
    # Another caller or method is another request.
    log.run(Key("acc_2", KEY.method, KEY.request_id), "other", StringValue, work)
    log.run(Key(KEY.caller, "AddSubscription", KEY.request_id), "other", StringValue, work)


def test_h1_a_refusal_is_replayed_as_its_full_rich_status(log: RequestLog) -> None:
    calls: list[int] = []

    def refuse() -> StringValue:
        calls.append(1)
        raise _Error.refused("NO_FREE_SLOTS", "no free slot", code="ABCD")

    with pytest.raises(_Error) as first:
        log.run(KEY, "f", StringValue, refuse)
    with pytest.raises(_Error) as again:
        log.run(KEY, "f", StringValue, refuse)
    assert len(calls) == 1
    assert again.value.to_status().SerializeToString() == (
        first.value.to_status().SerializeToString()
    )
    assert (again.value.reason, again.value.code) == ("NO_FREE_SLOTS", Code.FAILED_PRECONDITION)
    assert again.value.metadata == {"code": "ABCD"}


@pytest.mark.parametrize("code", sorted(NOT_STORED))
def test_h1_answers_that_are_not_final_are_never_stored(log: RequestLog, code: Code) -> None:
    calls: list[int] = []

    def fail() -> StringValue:
        calls.append(1)
        raise _Error("WHATEVER", "not final", code)

    for _ in range(2):
        with pytest.raises(_Error):
            log.run(KEY, "f", StringValue, fail)
    assert len(calls) == 2
    assert log.records(KEY, "f") == {}


def test_h1_concurrent_duplicates_run_the_work_once(log: RequestLog) -> None:
    calls, work = _counting()
    answers: list[StringValue] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        answers.append(log.run(KEY, "f", StringValue, work))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert answers == [StringValue(value="done")] * 8


def test_h1_concurrent_claims_one_wins(log: RequestLog) -> None:
    won: list[str] = []
    lost: list[str] = []
    start = threading.Barrier(8)

    def claim(ref: str) -> None:
        start.wait()
        try:
            log.claim(KEY, 0, "f", ref)
            won.append(ref)
        except AlreadyClaimed:
            lost.append(ref)

    threads = [threading.Thread(target=claim, args=(f"hs_{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7
    assert log.records(KEY, "f")[0].ref == won[0]


def test_h1_exclusive_serializes_check_then_claim(log: RequestLog) -> None:
    claimed: list[str] = []
    start = threading.Barrier(6)

    def attempt(ref: str) -> None:
        start.wait()
        with log.exclusive(KEY):
            if 0 not in log.records(KEY, "f"):
                log.claim(KEY, 0, "f", ref)
                claimed.append(ref)

    threads = [threading.Thread(target=attempt, args=(f"hs_{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 1


def test_h1_claimed_then_finished_keeps_its_work_reference(log: RequestLog) -> None:
    log.claim(KEY, 0, "f", "hs_1")
    rec = log.records(KEY, "f")[0]
    assert (rec.state, rec.ref, rec.status) == (CLAIMED, "hs_1", None)
    log.finish(KEY, 0, "f", refusal=_Error.refused("CODE_BLOCKED", "blocked"))
    rec = log.records(KEY, "f")[0]
    assert (rec.state, rec.ref) == (FINISHED, "hs_1")
    assert log.replayed(rec).reason == "CODE_BLOCKED"


def test_h1_a_retry_replaces_an_ended_claim_only_once(log: RequestLog) -> None:
    log.claim(KEY, 0, "f", "hs_1")
    log.claim(KEY, 0, "f", "hs_2", after="hs_1")
    assert log.records(KEY, "f")[0].ref == "hs_2"
    with pytest.raises(AlreadyClaimed):
        log.claim(KEY, 0, "f", "hs_3", after="hs_1")  # another retry replaced it first
    with pytest.raises(AlreadyClaimed):
        log.claim(KEY, 0, "f", "hs_4")


def test_h1_batch_targets_have_positions(log: RequestLog) -> None:
    print_ = fingerprint("CODE", ["dev_1", "dev_2", "dev_3"])
    log.claim(KEY, 0, print_, "hs_1")
    log.finish(KEY, 2, print_, refusal=_Error.refused("DEVICE_NOT_CONNECTED", "gone"))
    recs = log.records(KEY, print_)
    assert sorted(recs) == [0, 2]
    assert recs[0].ref == "hs_1" and recs[2].status is not None
    with pytest.raises(_Error) as got:
        log.records(KEY, fingerprint("CODE", ["dev_1", "dev_3", "dev_2"]))
    assert got.value.reason == "REQUEST_ID_REUSED"


def test_h1_fingerprints_are_deterministic() -> None:
    assert fingerprint("A", {"b": 1, "a": 2}) == fingerprint("A", {"a": 2, "b": 1})
    assert fingerprint("A", ["x", "y"]) != fingerprint("A", ["y", "x"])


def test_h1_retention_keeps_a_record_at_least_24_hours(log: RequestLog, tmp_path: Path) -> None:
    db = log.db
    hour = 3600 * 1_000_000
    now_us = int(to_epoch_us(NOW) or 0)
    ages = {"young": 23, "at_floor": 24, "old": 25, "older": 49}
    with db.write() as w:
        for rid, age in ages.items():
            w.conn.execute(
                "INSERT INTO requests (caller, method, request_id, position, fingerprint,"
                " state, create_us) VALUES ('c', 'm', ?, 0, 'f', 'FINISHED', ?)",
                (rid, now_us - age * hour),
            )
    # A retention under the floor still keeps 24 h; the cutoff itself is kept.
    Pruner(db, [request_log_rule("requests", timedelta(hours=1))]).prune(NOW)
    left = {r["request_id"] for r in db.query("SELECT request_id FROM requests")}
    assert left == {"young", "at_floor"}


def test_keyed_lock_excludes_per_key_only() -> None:
    lock = KeyedLock()
    with lock.hold("a"):
        assert not lock.try_acquire("a")
        assert lock.try_acquire("b")
        lock.release("b")
        with pytest.raises(TimeoutError), lock.hold("a", wait=0.01):
            pass
    assert lock.try_acquire("a")
