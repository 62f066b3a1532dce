"""The change feed and the cache it keeps current (license feed.py, device code_cache.py).

The end-to-end behaviour is in tests/e2e/test_code_cache.py; these pin the
races that a real pair of processes cannot hit on purpose.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service.code_cache import CodeCache, valid_until_us
from keyslot_server.clock import FixedClock
from keyslot_server.timeconv import to_epoch_us, to_timestamp
from license_service.feed import CodeFeed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _live_cache() -> CodeCache:
    cache = CodeCache(lambda requests: iter(()), FixedClock(NOW), size=10)
    cache.live = True  # as after the first response of a watch
    return cache


def test_a_change_arriving_during_a_read_keeps_the_read_out_of_the_cache() -> None:
    cache = _live_cache()
    reads: list[list[str]] = []

    def fetch_while_changed(codes: list[str]) -> list[lpb.Code]:
        reads.append(codes)
        cache.drop(codes)  # the change is announced while this read is out
        return [lpb.Code(code=c) for c in codes]

    assert [c.code for c in cache.get_many(["A"], fetch_while_changed)] == ["A"]
    assert len(cache) == 0
    cache.get_many(["A"], lambda codes: [lpb.Code(code=c) for c in codes])
    cache.get_many(["A"], fetch_while_changed)  # served from the cache: no read
    assert reads == [["A"]]


def test_nothing_is_kept_while_the_watch_is_not_live() -> None:
    cache = _live_cache()
    cache.live = False
    calls: list[list[str]] = []

    def fetch(codes: list[str]) -> list[lpb.Code]:
        calls.append(codes)
        return [lpb.Code(code=c) for c in codes]

    cache.get_many(["A"], fetch)
    cache.get_many(["A"], fetch)
    assert calls == [["A"], ["A"]] and len(cache) == 0


def test_l2_a_kept_code_is_valid_until_its_next_phase_change() -> None:
    now_us = int(to_epoch_us(NOW) or 0)
    code = lpb.Code(
        code="A",
        expire_time=to_timestamp(NOW + timedelta(days=1)),
        grace_end_time=to_timestamp(NOW + timedelta(days=15)),
    )
    assert valid_until_us(code, now_us) == to_epoch_us(NOW + timedelta(days=1))
    in_grace = now_us + 2 * 86_400_000_000
    assert valid_until_us(code, in_grace) == to_epoch_us(NOW + timedelta(days=15))
    assert valid_until_us(lpb.Code(code="U"), now_us) > now_us + 10**15  # unlimited


def test_publish_waits_for_the_acknowledgement() -> None:
    feed = CodeFeed(ack_timeout=5)
    watch = feed.open()
    published = threading.Event()
    thread = threading.Thread(target=lambda: (feed.publish(["A"]), published.set()))
    thread.start()
    batch = watch.next_batch(timeout=5)
    assert batch is not None and batch[1] == ["A"]
    assert not published.wait(0.05)  # not before the watcher applied it
    watch.ack(batch[0])
    assert published.wait(5)
    thread.join()


def test_a_watch_that_does_not_acknowledge_is_ended() -> None:
    feed = CodeFeed(ack_timeout=0.05)
    watch = feed.open()
    feed.publish(["A"])  # returns at the acknowledgement deadline
    assert watch.closed
    feed.publish(["B"])  # no watches left: returns at once
