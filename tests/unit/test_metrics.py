"""Metrics: the per-RPC series over a real in-process server, and what the domain reports.

Each test makes its own ``Metrics`` (a registry of its own). Domain objects
are given a recording observer, so what they report is checked without any
metrics at all; ``Metrics`` is checked as the observer separately.
"""

from __future__ import annotations

import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb
from prometheus_client.parser import text_string_to_metric_families

from device_service.code_cache import CodeCache
from device_service.connection_limits import ConnectionLimits
from device_service.errors import DeviceError
from device_service.server import build_domain
from device_service.settings import Settings as DeviceSettings
from device_service.store import DeviceStore, new_id
from device_service.sweeper import Sweeper as DeviceSweeper
from keyslot_server import auth
from keyslot_server.auth import Principal
from keyslot_server.budget import FailureBudget
from keyslot_server.clock import FixedClock
from keyslot_server.config import ConfigError
from keyslot_server.db import Database
from keyslot_server.metrics import Metrics, metrics_for
from keyslot_server.server import Listener, create_server
from keyslot_server.timeconv import to_epoch_us
from license_service import terms
from license_service.errors import LicenseError
from license_service.lookups import CodeLookups
from license_service.ops import LicenseOps
from license_service.products import Product
from license_service.store import LicenseStore
from license_service.sweeper import Sweeper as LicenseSweeper
from tests.unit.fakes import FakeLicense

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SERVICE = "keyslot.test.v1.Probe"
TOKEN = "probe-token"


@dataclass
class Recorder:
    """An observer that keeps what it was told."""

    events: list[tuple[Any, ...]] = field(default_factory=list)

    def handshake_ended(self, purpose: str, outcome: str, reason: str) -> None:
        self.events.append(("handshake", purpose, outcome, reason))

    def lookup_refused(self, kind: str, limited_by: str) -> None:
        self.events.append(("refused", kind, limited_by))

    def cache_read(self, cache: str, hits: int, misses: int) -> None:
        self.events.append(("cache", cache, int(hits), int(misses)))

    def sweep_ended(self, seconds: float, items: Any, failed: bool) -> None:
        self.events.append(("sweep", dict(items), failed))

    def group_committed(self, transactions: int) -> None:
        self.events.append(("commit", transactions))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.events if e[0] == kind]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- per-RPC series, over a real server with the keyslot interceptor inside ----------------


def _probe_handlers() -> grpc.GenericRpcHandler:
    def ok(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def missing(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise DeviceError.not_found("CONNECTION_CODE_NOT_FOUND", "no such connection code")

    def boom(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise RuntimeError("a bug")

    def echo(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        return iter(list(requests))

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Missing": grpc.unary_unary_rpc_method_handler(missing),
            "Boom": grpc.unary_unary_rpc_method_handler(boom),
            "Echo": grpc.stream_stream_rpc_method_handler(echo),
        },
    )


@pytest.fixture
def served() -> Iterator[tuple[Metrics, grpc.Channel]]:
    metrics = Metrics()
    running = create_server(
        listeners=[Listener("127.0.0.1:0")],
        domain="device.keyslot",
        resolver=lambda token: Principal("portal", "portal") if token == TOKEN else None,
        register=lambda server: server.add_generic_rpc_handlers((_probe_handlers(),)),
        service_names=[SERVICE],
        workers=4,
        log_calls=False,
        outer_interceptors=[metrics.interceptor],
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield metrics, channel
    finally:
        channel.close()
        running.stop(0)


def _call(channel: grpc.Channel, method: str, token: str | None = TOKEN) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        channel.unary_unary(f"/{SERVICE}/{method}")(b"x", metadata=metadata, timeout=5)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def test_rpcs_are_counted_with_the_status_they_ended_with(
    served: tuple[Metrics, grpc.Channel],
) -> None:
    metrics, channel = served
    assert _call(channel, "Ok") == grpc.StatusCode.OK
    assert _call(channel, "Ok") == grpc.StatusCode.OK
    # A refusal (a ServiceError the keyslot interceptor turns into a rich status).
    assert _call(channel, "Missing") == grpc.StatusCode.NOT_FOUND
    # Refused before the servicer runs; and a bug, mapped to INTERNAL.
    assert _call(channel, "Ok", token=None) == grpc.StatusCode.UNAUTHENTICATED
    assert _call(channel, "Boom") == grpc.StatusCode.INTERNAL

    unary = {"grpc_type": "unary", "grpc_service": SERVICE}
    handled = "grpc_server_handled_total"
    assert value(metrics, handled, **unary, grpc_method="Ok", grpc_code="OK") == 2
    assert value(metrics, handled, **unary, grpc_method="Ok", grpc_code="UNAUTHENTICATED") == 1
    assert value(metrics, handled, **unary, grpc_method="Missing", grpc_code="NOT_FOUND") == 1
    assert value(metrics, handled, **unary, grpc_method="Missing", grpc_code="OK") == 0
    assert value(metrics, handled, **unary, grpc_method="Boom", grpc_code="INTERNAL") == 1
    assert value(metrics, "grpc_server_started_total", **unary, grpc_method="Ok") == 3
    count = "grpc_server_handling_seconds_count"
    assert value(metrics, count, **unary, grpc_method="Ok") == 3


def test_streams_and_open_services_are_counted_too(
    served: tuple[Metrics, grpc.Channel],
) -> None:
    metrics, channel = served
    echo = channel.stream_stream(f"/{SERVICE}/Echo")
    replies = list(echo(iter([b"a", b"b"]), metadata=(("authorization", f"Bearer {TOKEN}"),)))
    assert replies == [b"a", b"b"]
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    check(b"", timeout=5)  # an empty HealthCheckRequest: the server's overall health

    bidi = {"grpc_type": "bidi_stream", "grpc_service": SERVICE, "grpc_method": "Echo"}
    assert value(metrics, "grpc_server_started_total", **bidi) == 1
    assert value(metrics, "grpc_server_handled_total", **bidi, grpc_code="OK") == 1
    health = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health"}
    assert value(metrics, "grpc_server_handled_total", **health, grpc_method="Check",
                 grpc_code="OK") == 1  # fmt: skip


def test_the_endpoint_serves_the_registry() -> None:
    metrics = Metrics()
    metrics.gauge("keyslot_probe", "A probe.", lambda: 3)
    stop = metrics.serve("127.0.0.1:0")
    try:
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        metrics.refresh()
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    finally:
        stop()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"keyslot_probe", "grpc_server_handled", "process_cpu_seconds"} <= names


def test_a_bad_or_unset_address() -> None:
    assert metrics_for("") is None
    with pytest.raises(ConfigError, match="host:port"):
        metrics_for("localhost")


# --- Metrics as the observer -----------------------------------------------------------------


def test_metrics_count_what_the_domain_reports() -> None:
    metrics = Metrics()
    metrics.handshake_ended("ACTIVATE", "COMMITTED", "")
    metrics.handshake_ended("ACTIVATE", "ABORTED", "CODE_NOT_FOUND")
    metrics.handshake_ended("ACTIVATE", "COMMITTED", "")
    metrics.lookup_refused("connection_code", "address")
    metrics.cache_read("code", 2, 1)
    metrics.cache_read("code", 0, 1)
    metrics.group_committed(3)
    metrics.group_committed(1)
    metrics.sweep_ended(0.25, {"handshakes_settled": 4}, failed=False)

    shake = "keyslot_handshakes_total"
    assert value(metrics, shake, purpose="ACTIVATE", outcome="COMMITTED", reason="") == 2
    assert (
        value(metrics, shake, purpose="ACTIVATE", outcome="ABORTED", reason="CODE_NOT_FOUND") == 1
    )
    refusals = "keyslot_lookup_refusals_total"
    assert value(metrics, refusals, kind="connection_code", limited_by="address") == 1
    assert value(metrics, "keyslot_cache_hits_total", cache="code") == 2
    assert value(metrics, "keyslot_cache_misses_total", cache="code") == 2
    assert value(metrics, "keyslot_db_commit_transactions_count") == 2
    assert value(metrics, "keyslot_db_commit_transactions_sum") == 4
    assert value(metrics, "keyslot_db_commit_transactions_bucket", le="2.0") == 1
    assert value(metrics, "keyslot_sweep_passes_total", result="ok") == 1
    assert value(metrics, "keyslot_sweep_last_duration_seconds") == 0.25
    assert value(metrics, "keyslot_sweep_last_items", work="handshakes_settled") == 4
    assert value(metrics, "keyslot_sweep_last_pass_age_seconds") < 1


def test_a_failed_sweep_lets_the_age_grow() -> None:
    metrics = Metrics()
    metrics.sweep_ended(0.1, {}, failed=False)
    metrics._last_sweep -= 100  # as if that pass ended 100 s ago
    metrics.sweep_ended(0.1, {}, failed=True)
    assert value(metrics, "keyslot_sweep_passes_total", result="failed") == 1
    assert value(metrics, "keyslot_sweep_last_pass_age_seconds") >= 100


def test_a_gauge_keeps_its_last_value_when_a_read_fails() -> None:
    metrics = Metrics()
    readings: list[Any] = [{"A": 1, "B": 2}]

    def read() -> Any:
        if isinstance(readings[0], Exception):
            raise readings[0]
        return readings[0]

    metrics.gauge("keyslot_probe", "A probe.", read, label="kind")
    assert value(metrics, "keyslot_probe", kind="A") == 0  # not read yet: absent
    metrics.refresh()
    assert value(metrics, "keyslot_probe", kind="B") == 2
    readings[0] = sqlite3.OperationalError("database is locked")
    metrics.refresh()
    assert value(metrics, "keyslot_probe", kind="B") == 2


# --- what the domain reports, to a recording observer ---------------------------------------


@pytest.fixture
def device_store(tmp_path: Path) -> Iterator[tuple[DeviceStore, Recorder]]:
    recorder = Recorder()
    store = DeviceStore(str(tmp_path / "device.db"), synchronous="OFF", observer=recorder)
    try:
        yield store, recorder
    finally:
        store.close()


def _device(store: DeviceStore) -> str:
    account_id, device_id = new_id("acc"), new_id("dev")
    now = to_epoch_us(NOW)
    with store.write() as db:
        db["accounts"].insert(
            {"account_id": account_id, "display_name": "a", "kind": 1, "create_us": 1}
        )
        db["devices"].insert(
            {
                "device_id": device_id,
                "account_id": account_id,
                "platform": 1,
                "app_version": "10.0",
                "region": "FI",
                "display_name": "laptop",
                "current_code": "",
                "connect_us": now,
                "update_us": now,
            }
        )
    return device_id


def _activate(api: Any, store: DeviceStore, device_id: str, code: str) -> None:
    row = store.device(device_id)
    assert row is not None
    principal = Principal(
        kind="device", name=f"device:{device_id}", account_id=row["account_id"], device_id=device_id
    )
    bound = auth.set_principal(principal)
    try:
        api.ActivateDevice(pb.ActivateDeviceRequest(code=code, request_id=new_id("rq")), None)
    finally:
        auth.reset_principal(bound)


def test_handshake_ends_are_reported_once_committed(
    device_store: tuple[DeviceStore, Recorder],
) -> None:
    store, recorder = device_store
    clock = FixedClock(NOW)
    fake = FakeLicense(clock)
    fake.add_code("AAAAA-11111-AAAAA-11111", max_devices=1, duration=timedelta(days=30))
    domain = build_domain(store, clock, fake, DeviceSettings(), recorder)
    first, second = _device(store), _device(store)
    _activate(domain.api, store, first, "AAAAA-11111-AAAAA-11111")
    with pytest.raises(DeviceError):  # one device only: the second finds no free slot
        _activate(domain.api, store, second, "AAAAA-11111-AAAAA-11111")
    with pytest.raises(DeviceError):
        _activate(domain.api, store, second, "ZZZZZ-99999-ZZZZZ-99999")
    assert recorder.of("handshake") == [
        ("ACTIVATE", "COMMITTED", ""),
        ("ACTIVATE", "FAILED", "NO_FREE_SLOTS"),
        ("ACTIVATE", "ABORTED", "CODE_NOT_FOUND"),
    ]
    assert recorder.of("commit")  # every write went through a group commit


def test_the_check_in_cache_reports_hits_and_misses(
    device_store: tuple[DeviceStore, Recorder],
) -> None:
    store, recorder = device_store
    device_id = _device(store)
    store.check_in_view(device_id)
    store.check_in_view(device_id)
    with store.write():  # a view read inside a write is not a cache read
        store.check_in_view(device_id)
    assert recorder.of("cache") == [("check_in", 0, 1), ("check_in", 1, 0)]


def test_the_code_cache_reports_hits_and_misses() -> None:
    recorder = Recorder()
    cache = CodeCache(lambda requests: iter(()), FixedClock(NOW), size=10, observer=recorder)
    fetch = lambda codes: [lpb.Code(code=c) for c in codes]  # noqa: E731
    cache.get_many(["A", "B"], fetch)  # no live watch yet: nothing is kept
    cache.live = True
    cache.get_many(["A", "B"], fetch)
    cache.get_many(["A", "C"], fetch)
    assert recorder.of("cache") == [("code", 0, 2), ("code", 0, 2), ("code", 1, 1)]


def test_connection_code_refusals_are_reported(
    device_store: tuple[DeviceStore, Recorder],
) -> None:
    store, recorder = device_store
    settings = DeviceSettings(connection_code_budget=1)
    limits = ConnectionLimits(store, FixedClock(NOW), settings, recorder)
    with pytest.raises(DeviceError) as err:
        limits.check("ipv4:192.0.2.1:5000", "NOSUCHCODE")
    assert err.value.reason == "CONNECTION_CODE_NOT_FOUND"
    with pytest.raises(DeviceError) as err:
        limits.check("ipv4:192.0.2.1:5001", "NOSUCHCODE")
    assert err.value.reason == "TOO_MANY_FAILED_LOOKUPS"
    assert recorder.of("refused") == [("connection_code", "address")]


def test_failed_code_lookup_refusals_are_reported(tmp_path: Path) -> None:
    recorder = Recorder()
    store = LicenseStore(str(tmp_path / "license.db"), synchronous="OFF")
    try:
        lookups = CodeLookups(
            LicenseOps(store), FailureBudget(store, 1, timedelta(minutes=1)), recorder
        )
        shop = Principal("provider", "shop")
        for reason in ("CODE_NOT_FOUND", "TOO_MANY_FAILED_LOOKUPS"):
            with pytest.raises(LicenseError) as err:
                lookups.find(shop, "AAAAA-11111-AAAAA-11111", NOW)
            assert err.value.reason == reason
    finally:
        store.close()
    assert recorder.of("refused") == [("code", "caller")]


def test_sweep_passes_are_reported(
    tmp_path: Path, device_store: tuple[DeviceStore, Recorder]
) -> None:
    store, recorder = device_store
    clock = FixedClock(NOW)
    domain = build_domain(store, clock, FakeLicense(clock), DeviceSettings())

    def take_over_due() -> int:
        return 2

    DeviceSweeper(domain.handshakes, 1.0, [take_over_due], observer=recorder).sweep()
    license_store = LicenseStore(str(tmp_path / "license.db"), synchronous="OFF")
    try:
        LicenseSweeper(LicenseOps(license_store), clock, 1.0, observer=recorder).sweep()
    finally:
        license_store.close()
    assert recorder.of("sweep") == [
        ({"deliveries_expired": 0, "handshakes_settled": 0, "take_over_due": 2}, False),
        ({"grants_expired": 0, "codes_renewed": 0}, False),
    ]


def test_group_commits_are_reported(tmp_path: Path) -> None:
    recorder = Recorder()
    db = Database(tmp_path / "x.db", synchronous="OFF", observer=recorder)
    try:
        with db.write() as w:
            w.execute("CREATE TABLE t (x INTEGER)")
        with db.write() as w:
            w.execute("INSERT INTO t VALUES (1)")
    finally:
        db.close()
    assert recorder.of("commit") == [(1,), (1,)]


# --- the gauges' queries ----------------------------------------------------------------------


def test_device_gauges_search_indexes_never_the_history(
    device_store: tuple[DeviceStore, Recorder],
) -> None:
    store, _ = device_store
    plans = []
    for sql in _statements_of(
        store,
        [
            store.held_slots,
            store.connected_devices,
            store.pending_deliveries,
            store.live_reserves,
            store.unfinished_steps,
        ],
    ):
        plan = store.conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans.append((sql, [row[-1] for row in plan]))
    for sql, steps in plans:
        assert all("INDEX" in s for s in steps if s.startswith(("SCAN", "SEARCH"))), (sql, steps)
    assert store.held_slots() == store.connected_devices() == store.pending_deliveries() == 0
    assert store.live_reserves() == {"WAITING": 0, "FAILED": 0}
    assert set(store.unfinished_steps()) == {"PREPARING", "PREPARED", "COMMITTING", "ABORTING"}


def _statements_of(store: DeviceStore, reads: list[Any]) -> list[str]:
    """The SQL each read runs (traced on this thread's connection)."""
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        for read in reads:
            read()
    finally:
        store.conn.set_trace_callback(None)
    return seen


def _record(**kw: Any) -> terms.CodeRecord:
    base: dict[str, Any] = dict(
        code=kw.pop("code"),
        provider="shop",
        product_id="p",
        kind=terms.SUBSCRIPTION,
        coverage="UPDATES_AND_PROTECTION",
        duration=timedelta(days=30),
        grace=timedelta(days=10),
        max_devices=3,
        slot_kind="PER_DEVICE",
        trial=False,
        free=False,
        auto_renew=False,
        purchase_channel="ACCOUNT_PORTAL",
        provider_name="Shop",
        order_number="",
        issue_time=NOW,
    )
    base.update(kw)
    return terms.CodeRecord(**base)


def test_codes_by_phase_agrees_with_the_rule(tmp_path: Path) -> None:
    store = LicenseStore(str(tmp_path / "license.db"), synchronous="OFF")
    day = timedelta(days=1)
    records = [
        _record(code="C0", seq=1),
        _record(code="C1", seq=2, duration=None),
        _record(code="C2", seq=3, grace=timedelta(0)),
        _record(code="C3", seq=4, cancel_at_period_end=True),
        _record(code="C4", seq=5, kind=terms.LICENSE, duration=timedelta(days=365)),
        _record(code="C5", seq=6),
        _record(code="C6", seq=7),  # in GRACE from day 36 to 46
    ]
    try:
        store.insert_product(Product("p", "Suite", create_time=NOW))
        saved = []
        for i, rec in enumerate(records):
            if rec.code != "C0":
                rec = terms.activate(rec, NOW + i * day)
            store.insert_codes([rec], NOW + i * day)
            saved.append(rec)
        paused_at = NOW + 20 * day  # C5 is paused before its term ends: it stays ACTIVE
        saved[5] = terms.pause(saved[5], paused_at)
        with store.write():
            store.save_code(saved[5], paused_at)
        for days in (0, 29, 33, 38, 45, 400):
            now = NOW + days * day
            expected = dict.fromkeys(("NOT_ACTIVATED", "ACTIVE", "GRACE", "EXPIRED"), 0)
            for rec in saved:
                expected[terms.phase_at(rec, now)] += 1
            assert store.codes_by_phase(now) == expected, days
            if days == 38:
                assert expected["GRACE"] == 1
    finally:
        store.close()
