"""Optional OpenTelemetry tracing: spans exported over OTLP, off unless configured.

``setup`` turns it on when the standard variables ask for it
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_TRACES_EXPORTER=otlp``) and the ``otel`` extra is installed; otherwise
nothing imports OpenTelemetry and the plain W3C context of keyslot_server.trace
is the trace. When on, OpenTelemetry's spans are the trace context (``Tracing``
is installed as keyslot_server.trace's backend): its server interceptor starts
each call's span, the license client's channel sends its traceparent, and the
ids every log line carries are those of the exported spans.

The exporter reads the other standard variables itself (headers, certificate,
timeout); ``OTEL_SERVICE_NAME`` defaults to the name the composition root gives.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import grpc

from keyslot_server import trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

log = logging.getLogger("keyslot.lifecycle")  # written at every --log-level, like the settings

# At the stop, the spans still queued get this long: a collector that is away must not
# hold the shutdown past its watchdog (keyslot_server.server.serve_forever).
STOP_TIMEOUT = 3.0

_TRUE = ("true", "1", "yes")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for span export over OTLP."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter == "otlp"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str, environ: Mapping[str, str] = os.environ) -> Callable[[], None]:
    """Turns tracing on if the environment asks for it; returns the stop, which
    exports what is left and turns it off (a no-op when it stayed off).

    ``service`` names the process unless ``OTEL_SERVICE_NAME`` does."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter not in ("", "otlp", "none"):
        # Another exporter (console writes to stdout, where every line is JSON) is not offered.
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (only otlp): no tracing", exporter)
        return _nothing
    if not wanted(environ):
        return _nothing
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        log.warning(
            "OpenTelemetry is configured but not installed (pip install 'keyslot[otel]'): "
            "no tracing (%s)",
            err,
        )
        return _nothing
    tracing = start(service, BatchSpanProcessor(OTLPSpanExporter()))
    log.info(
        "tracing: OpenTelemetry spans of %s over OTLP",
        tracing.service,
        extra={"endpoint": _endpoint(environ)},
    )
    return tracing.stop


def start(service: str, processor: SpanProcessor) -> Tracing:
    """Makes OpenTelemetry the trace context from now on, its spans going to
    ``processor`` (the OTLP batch in a service; an in-memory one in tests)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    tracing = Tracing(provider)
    trace.use(tracing)
    return tracing


def server_interceptors(untraced: tuple[str, ...] = ()) -> list[grpc.ServerInterceptor]:
    """The interceptor that starts each call's server span, to run outside keyslot's
    own; none when tracing is off. Methods starting with ``untraced`` (health
    checks, reflection) get no span."""
    tracing = trace.backend()
    if not isinstance(tracing, Tracing):
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    def traced(details: grpc.HandlerCallDetails) -> bool:
        return not details.method.startswith(untraced)

    return [server_interceptor(tracing.provider, filter_=traced)]


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with a client span per call, which sends its traceparent; the
    channel itself when tracing is off."""
    tracing = trace.backend()
    if not isinstance(tracing, Tracing):
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    return intercept_channel(channel, client_interceptor(tracing.provider))


class Tracing:
    """keyslot_server.trace's backend over one OpenTelemetry tracer provider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.service = str(provider.resource.attributes.get("service.name", ""))
        self._tracer = provider.get_tracer("keyslot_server.trace")

    def call_span(self) -> trace.Span | None:
        """The span the server interceptor made current for this call, as keyslot's Span."""
        from opentelemetry import trace as otel_trace

        return _mirror(otel_trace.get_current_span())

    @contextmanager
    def resumed(
        self, origin: trace.Span, outer: trace.Span | None, name: str
    ) -> Iterator[trace.Span]:
        """A span whose parent is the stored ``origin`` (another call's, maybe another
        process's), made current; it and the current span link to each other."""
        from opentelemetry import trace as otel_trace

        parent = otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(_context(origin)))
        # The outer span is the current one: the later call's server span.
        current = otel_trace.get_current_span()
        seen = _mirror(current)
        linked = outer is not None and seen is not None and seen.span_id == outer.span_id
        links = [otel_trace.Link(current.get_span_context())] if linked else []
        with self._tracer.start_as_current_span(name, context=parent, links=links) as span:
            if linked:
                current.add_link(span.get_span_context())
            mirrored = _mirror(span)
            assert mirrored is not None  # a span started here has valid ids, sampled or not
            yield mirrored

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Goes back to the plain trace context and exports the spans still queued,
        giving up after ``timeout`` seconds (the exporter itself retries for longer)."""
        if trace.backend() is self:
            trace.use(None)
        flush = threading.Thread(target=self.provider.shutdown, name="otel-stop", daemon=True)
        flush.start()
        flush.join(timeout)


def _mirror(span: Any) -> trace.Span | None:
    """An OpenTelemetry span as keyslot's Span (the ids the logs carry); None if invalid."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    parent = getattr(span, "parent", None)  # the SDK's spans know it; a non-recording one not
    return trace.Span(
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else "",
        f"{int(context.trace_flags):02x}",
    )


def _context(span: trace.Span) -> Any:
    """keyslot's Span as a remote OpenTelemetry span context."""
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(
        int(span.trace_id, 16),
        int(span.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(span.flags, 16)),
    )


def _endpoint(environ: Mapping[str, str]) -> str:
    """Where spans go, for the start-up line: without a user or password in the URL."""
    url = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"  # the exporter's default
    )
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _nothing() -> None:
    pass
