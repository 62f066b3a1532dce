"""Optional OpenTelemetry tracing: its spans are the trace context the logs carry.

One in-process server built by create_server hosts a relay method and a fake
license service's GetProduct: the relay calls GetProduct through a
GrpcLicensePeer, as the device service calls the license service. Spans go to
the SDK's in-memory exporter, synchronously.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from device_service.license_client import GrpcLicensePeer
from keyslot_server import auth, otel, trace
from keyslot_server.errors import ServiceError
from keyslot_server.logs import TraceFilter
from keyslot_server.server import Listener, Running, create_server

TOKEN = "relay-token"
RELAY = "/keyslot.test.v1.Relay/Relay"
GET_PRODUCT = "/keyslot.license.v1.LicenseService/GetProduct"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
HEADER = f"00-{TRACE_ID}-{SPAN_ID}-01"


# --- off unless configured --------------------------------------------------------------------


def test_without_configuration_nothing_imports_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    script = (
        "import sys, keyslot_server.trace, keyslot_server.server, keyslot_server.otel, "
        "device_service.license_client\n"
        "keyslot_server.otel.setup('keyslot-test')()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, False),  # stdout is the JSON log lines'
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
    ],
)
def test_the_standard_variables_turn_it_on(environ: Mapping[str, str], wanted: bool) -> None:
    assert otel.wanted(environ) is wanted


def test_setup_names_the_service_and_stops_back_to_the_plain_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    # An endpoint nothing listens on: the batch exports only at the stop, and finds nothing.
    stop = otel.setup("keyslot-test", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    tracing = trace.backend()
    try:
        assert isinstance(tracing, otel.Tracing) and tracing.service == "keyslot-test"
        assert trace.outgoing() == ""  # the traced channel sends the header
    finally:
        stop()
    assert trace.backend() is None
    monkeypatch.setenv("OTEL_SERVICE_NAME", "license-eu")
    tracing = otel.start("keyslot-test", SimpleSpanProcessor(InMemorySpanExporter()))
    tracing.stop()
    assert tracing.service == "license-eu"


# --- one trace context ------------------------------------------------------------------------


@dataclass
class Seen:
    """What the fake license service received and what the services logged."""

    metadata: list[list[tuple[str, str]]] = field(default_factory=list)
    calls: list[logging.LogRecord] = field(default_factory=list)

    def call_line(self, method: str) -> logging.LogRecord:
        [line] = [r for r in self.calls if r.method == method]  # type: ignore[attr-defined]
        return line

    def traceparents(self) -> list[str]:
        [metadata] = self.metadata
        return [value for key, value in metadata if key == trace.HEADER]


class Capture(logging.Handler):
    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen
        self.addFilter(TraceFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.calls.append(record)


class FakeLicense(lpb_grpc.LicenseServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def GetProduct(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.seen.metadata.append([(m.key, m.value) for m in context.invocation_metadata()])
        return lpb.GetProductResponse(product=lpb.Product(product_id=request.product_id))


@dataclass
class World:
    running: Running
    peer: GrpcLicensePeer
    channel: grpc.Channel
    seen: Seen

    def relay(self, body: bytes = b"", header: str = "", token: str = TOKEN) -> bytes:
        """Calls the relay; ``body`` a stored traceparent: it calls GetProduct resumed in it."""
        metadata = [("authorization", f"Bearer {token}")]
        if header:
            metadata.append((trace.HEADER, header))
        call = self.channel.unary_unary(RELAY)
        return call(body, timeout=10, metadata=metadata)  # type: ignore[no-any-return]


@contextmanager
def start_world() -> Iterator[World]:
    """The server (its interceptors fixed when built: tracing on or off before) and a peer."""
    seen = Seen()
    holder: dict[str, GrpcLicensePeer] = {}

    def relay(body: bytes, context: grpc.ServicerContext) -> bytes:
        if body == b"refuse":
            raise ServiceError("CODE_BLOCKED", "the code is blocked")
        with trace.resumed(body.decode(), "handshake.commit"):
            holder["peer"].call("GetProduct", lpb.GetProductRequest(product_id="p1"))
        return b"ok"

    def register(server: grpc.Server) -> None:
        lpb_grpc.add_LicenseServiceServicer_to_server(FakeLicense(seen), server)
        handler = grpc.unary_unary_rpc_method_handler(relay)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("keyslot.test.v1.Relay", {"Relay": handler})]
        )

    def resolve(token: str) -> auth.Principal | None:
        return auth.Principal("peer", "relay") if token == TOKEN else None

    running = create_server(
        listeners=[Listener("127.0.0.1:0")],
        domain="test.keyslot.dev",
        resolver=resolve,
        register=register,
        service_names=[],
        workers=4,
    )
    address = f"127.0.0.1:{running.port}"
    peer = holder["peer"] = GrpcLicensePeer(address, TOKEN, deadline=10.0, cache_size=0)
    channel = grpc.insecure_channel(address)
    calls = logging.getLogger("keyslot.calls")
    capture, level = Capture(seen), calls.level
    calls.addHandler(capture)
    calls.setLevel(logging.INFO)
    try:
        yield World(running, peer, channel, seen)
    finally:
        calls.removeHandler(capture)
        calls.setLevel(level)
        channel.close()
        peer.close()
        running.stop(1.0)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span in memory as soon as it ends."""
    exporter = InMemorySpanExporter()
    tracing = otel.start("keyslot-test", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.stop()


@pytest.fixture
def world(spans: InMemorySpanExporter) -> Iterator[World]:
    with start_world() as started:
        yield started


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str:
    return f"{span.parent.span_id:016x}" if span.parent is not None else ""


def test_the_logs_carry_the_ids_of_the_exported_spans(
    world: World, spans: InMemorySpanExporter
) -> None:
    assert world.relay() == b"ok"
    server = named(spans, RELAY)
    relay_line, license_line = world.seen.call_line(RELAY), world.seen.call_line(GET_PRODUCT)
    assert (relay_line.trace_id, relay_line.span_id) == ids(server)  # type: ignore[attr-defined]
    assert not hasattr(relay_line, "parent_span_id")  # nobody called with a trace
    # GetProduct twice: the relay's client span and the license side's server span.
    by_kind = {s.kind.name: s for s in spans.get_finished_spans() if s.name == GET_PRODUCT}
    outgoing, incoming = by_kind["CLIENT"], by_kind["SERVER"]
    trace_id = ids(server)[0]
    assert ids(outgoing)[0] == ids(incoming)[0] == trace_id
    assert parent_id(outgoing) == ids(server)[1] and parent_id(incoming) == ids(outgoing)[1]
    assert (license_line.trace_id, license_line.span_id) == ids(incoming)  # type: ignore[attr-defined]
    assert license_line.parent_span_id == ids(outgoing)[1]  # type: ignore[attr-defined]
    # Exactly one traceparent reached the license side: the client span's (flags: sampled).
    [sent] = world.seen.traceparents()
    assert sent.split("-")[:3] == ["00", trace_id, ids(outgoing)[1]]
    assert int(sent.split("-")[3], 16) & 1


def test_an_incoming_traceparent_is_continued(world: World, spans: InMemorySpanExporter) -> None:
    world.relay(header=HEADER)
    server = named(spans, RELAY)
    assert ids(server)[0] == TRACE_ID and parent_id(server) == SPAN_ID
    line = world.seen.call_line(RELAY)
    assert (line.trace_id, line.span_id) == ids(server)  # type: ignore[attr-defined]
    assert line.parent_span_id == SPAN_ID  # type: ignore[attr-defined]


def test_a_resumed_handshake_joins_the_stored_trace_with_links_both_ways(
    world: World, spans: InMemorySpanExporter
) -> None:
    stored_trace, stored_span = "a" * 32, "b" * 16
    world.relay(f"00-{stored_trace}-{stored_span}-01".encode())
    relay, commit = named(spans, RELAY), named(spans, "handshake.commit")
    assert ids(commit)[0] == stored_trace and parent_id(commit) == stored_span
    assert [ids_of(link.context) for link in commit.links] == [ids(relay)]
    assert [ids_of(link.context) for link in relay.links] == [ids(commit)]
    # The commit's call to the license service runs in the stored trace.
    [sent] = world.seen.traceparents()
    assert sent.split("-")[1] == stored_trace
    relay_line = world.seen.call_line(RELAY)
    assert relay_line.links == [  # type: ignore[attr-defined]
        {"trace_id": stored_trace, "span_id": ids(commit)[1]}
    ]


def test_resumed_with_nothing_bound_starts_a_span_without_links(
    spans: InMemorySpanExporter,
) -> None:
    with trace.resumed(HEADER, "handshake.abort") as span:  # the sweeper
        assert span is not None and span.links == []
        assert trace.current() is span
    abort = named(spans, "handshake.abort")
    assert (span.trace_id, span.span_id) == ids(abort) and parent_id(abort) == SPAN_ID
    assert abort.links == ()
    assert trace.current() is None


def test_refusals_set_the_status_on_the_span_and_health_checks_make_none(
    world: World, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        world.relay(token="wrong")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError):
        world.relay(b"refuse")
    codes = [(s.attributes or {})["rpc.grpc.status_code"] for s in spans.get_finished_spans()]
    assert codes == [
        grpc.StatusCode.UNAUTHENTICATED.value[0],
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
    ]
    health = health_pb2_grpc.HealthStub(world.channel)
    health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert len(spans.get_finished_spans()) == 2


def test_without_tracing_the_peer_sends_our_one_traceparent() -> None:
    assert trace.backend() is None
    with start_world() as world:
        world.relay()
    line = world.seen.call_line(RELAY)
    [sent] = world.seen.traceparents()
    assert sent.split("-")[1] == line.trace_id  # type: ignore[attr-defined]


def ids_of(context: Any) -> tuple[str, str]:
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
