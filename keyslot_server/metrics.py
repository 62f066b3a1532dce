"""Prometheus metrics of one service process: per-RPC series, domain events, domain gauges.

``Metrics`` owns a registry of its own (never the library's global one), so a
test makes as many as it likes. It is the process's ``observe.Observer`` (the
domain reports to it), gives the server its ``MetricsInterceptor`` and serves
``/metrics`` over plain HTTP with the library's own server (``serve``).

The RPC series have the names the usual gRPC server interceptors for
Prometheus give them, so existing dashboards and alerts apply:
``grpc_server_started_total``, ``grpc_server_handled_total`` (with
``grpc_code``, the status the call ended with, e.g. ``NOT_FOUND``) and the
``grpc_server_handling_seconds`` histogram. Domain series are ``keyslot_*``;
none is labelled by code, device or caller.

Domain gauges (codes by phase, held slots, ...) are counts the stores make.
A thread of their own reads them, each at most every ``every`` seconds, and a
scrape returns the last values: a scrape never waits on SQLite, and the
store's per-thread connections are not opened on the HTTP server's
short-lived threads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from keyslot_server.config import ConfigError
from keyslot_server.server import AddressInUse

log = logging.getLogger("keyslot.metrics")

# A check-in takes well under a millisecond: the default buckets start at 5 ms.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# write() bodies per COMMIT; keyslot_server.db.MAX_GROUP is 32.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32)
# How often a domain gauge is read by default, and how often the reader looks.
GAUGE_EVERY = 15.0
_IDLE = 10.0  # the gauges' thread looks again at least this often

Reading = float | Mapping[str, float]
"""A gauge's value: one number, or one per value of its label."""


class Metrics:
    """The series of one process; also its ``observe.Observer``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, open files
        rpc = ("grpc_type", "grpc_service", "grpc_method")
        self.rpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", rpc, registry=r
        )
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by the status code they ended with.",
            (*rpc, "grpc_code"),
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end (for streams: the whole stream).",
            rpc,
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.interceptor = MetricsInterceptor(self)
        self.handshakes = Counter(
            "keyslot_handshakes",
            "Handshakes that reached their final step, by purpose, outcome (COMMITTED, or what"
            " the aborted handshake's owner became) and refusal reason.",
            ("purpose", "outcome", "reason"),
            registry=r,
        )
        self.lookup_refusals = Counter(
            "keyslot_lookup_refusals",
            "Look-ups refused TOO_MANY_FAILED_LOOKUPS (S3), by what was looked up and whose"
            " budget ran out.",
            ("kind", "limited_by"),
            registry=r,
        )
        self.cache_hits = Counter(
            "keyslot_cache_hits", "Entries a cache answered.", ("cache",), registry=r
        )
        self.cache_misses = Counter(
            "keyslot_cache_misses",
            "Entries a cache did not answer (read from the source instead).",
            ("cache",),
            registry=r,
        )
        self._caches: dict[str, tuple[Any, Any]] = {}
        self.commit_transactions = Histogram(
            "keyslot_db_commit_transactions",
            "Write transactions made durable by one COMMIT (the group commit).",
            buckets=GROUP_BUCKETS,
            registry=r,
        )
        self.sweeps = Counter(
            "keyslot_sweep_passes", "Sweeper passes, by result.", ("result",), registry=r
        )
        self.sweep_seconds = Gauge(
            "keyslot_sweep_last_duration_seconds",
            "How long the last sweeper pass took.",
            registry=r,
        )
        self.sweep_items = Gauge(
            "keyslot_sweep_last_items",
            "What the last sweeper pass handled, by kind of work.",
            ("work",),
            registry=r,
        )
        self._last_sweep = time.monotonic()
        Gauge(
            "keyslot_sweep_last_pass_age_seconds",
            "Seconds since the last sweeper pass that completed without a failure (before"
            " the first: since the process started).",
            registry=r,
        ).set_function(lambda: time.monotonic() - self._last_sweep)
        self.gauges = _DomainGauges()
        r.register(self.gauges)
        self.port: int | None = None

    # --- observe.Observer -----------------------------------------------------------------

    def handshake_ended(self, purpose: str, outcome: str, reason: str) -> None:
        self.handshakes.labels(purpose, outcome, reason).inc()

    def lookup_refused(self, kind: str, limited_by: str) -> None:
        self.lookup_refusals.labels(kind, limited_by).inc()

    def cache_read(self, cache: str, hits: int, misses: int) -> None:
        children = self._caches.get(cache)
        if children is None:
            children = self._caches.setdefault(
                cache, (self.cache_hits.labels(cache), self.cache_misses.labels(cache))
            )
        if hits:
            children[0].inc(hits)
        if misses:
            children[1].inc(misses)

    def sweep_ended(self, seconds: float, items: Mapping[str, int], failed: bool) -> None:
        self.sweeps.labels("failed" if failed else "ok").inc()
        self.sweep_seconds.set(seconds)
        for work, count in items.items():
            self.sweep_items.labels(work).set(count)
        if not failed:
            self._last_sweep = time.monotonic()

    def group_committed(self, transactions: int) -> None:
        self.commit_transactions.observe(transactions)

    # --- domain gauges and the endpoint ----------------------------------------------------

    def gauge(
        self,
        name: str,
        help: str,
        read: Callable[[], Reading],
        label: str | None = None,
        every: float = GAUGE_EVERY,
    ) -> None:
        """A gauge whose value ``read()`` computes (one number, or one per ``label`` value),
        read at most every ``every`` seconds once ``serve`` started. ``read`` runs on the
        gauges' own thread; it must be a bounded query."""
        self.gauges.add(_Family(name, help, label, read, every))

    def refresh(self) -> None:
        """Reads every gauge now (tests; ``serve`` keeps them fresh on its own)."""
        self.gauges.refresh(force=True)

    def serve(self, address: str) -> Callable[[], None]:
        """Serves ``/metrics`` on ``address`` ("host:port"; port 0 picks one, see ``port``)
        and starts reading the gauges; returns what stops both."""
        host, port = _split_address(address)
        try:
            httpd, thread = start_http_server(port, host, registry=self.registry)
        except OSError:
            raise AddressInUse(address) from None
        self.port = httpd.server_port
        self.gauges.start()
        log.info("metrics: serving /metrics on http://%s:%d", host or "0.0.0.0", self.port)

        def stop() -> None:
            self.gauges.stop()
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)

        return stop


def metrics_for(address: str) -> Metrics | None:
    """The process's metrics when ``--metrics-listen`` is set (checked now, before any
    database exists: ConfigError), else None."""
    if not address:
        return None
    _split_address(address)
    return Metrics()


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError("--metrics-listen", f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


# --- per-RPC series ------------------------------------------------------------------------


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC; the outermost interceptor, so it sees the status the
    call really ended with (authentication refusals and mapped errors included).

    Like KeyslotInterceptor it wraps each method's handler once, on first sight,
    with the method's label children already made: per call it costs two counter
    increments and one histogram observation.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: gRPC answers UNIMPLEMENTED itself
            wrapped = self._handlers[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        shape = ("unary", "client_stream", "server_stream", "bidi_stream")[
            bool(handler.request_streaming) + 2 * bool(handler.response_streaming)
        ]
        rpc = _Rpc(self.metrics, (shape, service, name))
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(rpc.single(handler.unary_unary), **codec)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(rpc.single(handler.stream_unary), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(rpc.stream(handler.unary_stream), **codec)
        return grpc.stream_stream_rpc_method_handler(rpc.stream(handler.stream_stream), **codec)


class _Rpc:
    """One method's label children and its two wrappers."""

    __slots__ = ("started", "seconds", "handled", "_family", "_labels")

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self.started = metrics.rpc_started.labels(*labels)
        self.seconds = metrics.rpc_seconds.labels(*labels)
        self._family = metrics.rpc_handled
        self._labels = labels
        self.handled = {"OK": self._family.labels(*labels, "OK")}

    def ended(self, context: grpc.ServicerContext, started: float, error: Any) -> None:
        self.seconds.observe(time.perf_counter() - started)
        code = _code(context, error)
        child = self.handled.get(code)
        if child is None:
            child = self.handled.setdefault(code, self._family.labels(*self._labels, code))
        child.inc()

    def single(self, inner: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        """A behavior answering once (unary or client-streaming)."""

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            self.started.inc()
            started = time.perf_counter()
            error = None
            try:
                return inner(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.ended(context, started, error)

        return behavior

    def stream(self, inner: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        """A behavior answering with a stream: it ends when the stream does."""

        def behavior(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self.started.inc()
            started = time.perf_counter()
            error = None
            try:
                yield from inner(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.ended(context, started, error)

        return behavior


def _code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    """The status a call ended with: what an abort or set_code set (gRPC's
    ``ServicerContext.code()``), else OK, or what gRPC makes of an exception."""
    code = context.code()
    if code is not None:
        return code.name  # type: ignore[no-any-return]
    if error is None:
        return "OK"
    # A stream closed under its generator: the client went away.
    return "CANCELLED" if isinstance(error, GeneratorExit) else "UNKNOWN"


# --- domain gauges ---------------------------------------------------------------------------


@dataclass
class _Family:
    name: str
    help: str
    label: str | None
    read: Callable[[], Reading]
    every: float
    due: float = 0.0  # monotonic time of the next read
    metric: GaugeMetricFamily | None = field(default=None)


class _DomainGauges(Collector):
    """The domain gauges' last values, read on a thread of their own."""

    def __init__(self) -> None:
        self._families: list[_Family] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, family: _Family) -> None:
        with self._lock:
            self._families.append(family)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            metrics = [f.metric for f in self._families if f.metric is not None]
        yield from metrics

    def refresh(self, force: bool = False) -> float:
        """Reads the gauges that are due; the seconds until the next is due."""
        now = time.monotonic()
        with self._lock:
            due = [f for f in self._families if force or f.due <= now]
        for family in due:
            family.due = now + family.every
            try:
                metric = _metric(family, family.read())
            except Exception:  # noqa: BLE001 - one failed read keeps the last values
                log.warning("metrics: reading %s failed", family.name, exc_info=True)
                continue
            with self._lock:
                family.metric = metric
        with self._lock:
            nearest = min((f.due for f in self._families), default=math.inf)
        return max(0.0, nearest - time.monotonic())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-gauges", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self.refresh()
            self._stopping.wait(min(max(wait, 0.05), _IDLE))


def _metric(family: _Family, reading: Reading) -> GaugeMetricFamily:
    if family.label is None:
        assert not isinstance(reading, Mapping)
        return GaugeMetricFamily(family.name, family.help, value=reading)
    assert isinstance(reading, Mapping)
    metric = GaugeMetricFamily(family.name, family.help, labels=[family.label])
    for value, count in sorted(reading.items()):
        metric.add_metric([value], count)
    return metric
