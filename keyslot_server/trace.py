"""Trace context (W3C ``traceparent``) that follows one request across both services.

The server interceptor binds a ``Span`` for each call (``bind``): the caller's
trace, read from its ``traceparent`` header, or a new one. Every log record
written while it is bound carries its ids (``keyslot_server.logs``), and a
call to the other service sends ``outgoing()``: a child in the same trace.

A handshake stores the traceparent of the call that began it; work on it in a
later call or in the sweeper runs ``resumed`` under that trace (same trace id,
a new span) and both spans name each other in ``links``. No gRPC here: the
use cases resume traces too.

This module is the one switch between two backends. By default the context is
the plain W3C one above, in a contextvar. When OpenTelemetry is configured
(keyslot_server.otel installs it with ``use``), its spans are the context: a
call's span is the server span its interceptor started, ``resumed`` starts a
span there, and ``outgoing`` is empty since its client interceptor sends the
header. The ``Span`` bound here then mirrors the OpenTelemetry span, so the
ids in the logs are the exported spans' ids.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

HEADER = "traceparent"

_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# A later version may append fields after the four of version 00.
_ANY_VERSION = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
_SAMPLED = "01"


@dataclass
class Span:
    """One unit of work in a trace: ids are lowercase hex (32 and 16 digits).

    ``parent_id`` is the caller's span, if it sent one; ``links`` are spans of
    other traces this work belongs with (a call that drove a stored handshake).
    """

    trace_id: str
    span_id: str
    parent_id: str = ""
    flags: str = _SAMPLED
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def traceparent(self) -> str:
        """This span as a ``traceparent`` header value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> Span:
        """A new span in the same trace whose parent is this one."""
        return Span(self.trace_id, new_span_id(), self.span_id, self.flags)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def parse(header: str | None) -> Span | None:
    """The span a ``traceparent`` value names, or None when absent or invalid.

    Invalid means: not the W3C shape, version ff, or an all-zero id; the receiver
    then starts a new trace, as the W3C recommendation says.
    """
    if not header:
        return None
    text = header.strip()
    found = _ANY_VERSION.fullmatch(text)
    if found is None or found.group(1) == "ff":
        return None
    if found.group(1) == "00" and _VERSION_00.fullmatch(text) is None:
        return None  # version 00 has exactly four fields
    _, trace_id, span_id, flags = found.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return Span(trace_id, span_id, flags=flags)


def start(header: str | None) -> Span:
    """The span of a call: a child of the caller's span if it sent a valid one, else
    the root of a new trace."""
    parent = parse(header)
    if parent is None:
        return Span(new_trace_id(), new_span_id())
    return parent.child()


class Backend(Protocol):
    """A tracing library whose spans are the trace context (keyslot_server.otel)."""

    def call_span(self) -> Span | None:
        """The current server call's span there, or None when it started none."""
        ...

    def resumed(self, origin: Span, outer: Span | None, name: str) -> AbstractContextManager[Span]:
        """Runs the block in a new span there: child of ``origin``, linked with ``outer``."""
        ...


_backend: Backend | None = None


def use(backend: Backend | None) -> None:
    """Makes ``backend``'s spans the trace context from now on; None: the plain one."""
    global _backend
    _backend = backend


def backend() -> Backend | None:
    """The backend in use, or None for the plain W3C context."""
    return _backend


def call_span(header: str | None) -> Span:
    """The span a server call binds: under a backend the span its server interceptor
    started (it read the caller's header, outside ours), else ``start(header)``."""
    if _backend is not None:
        span = _backend.call_span()
        if span is not None:
            return span
    return start(header)


_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "keyslot_trace", default=None
)


def current() -> Span | None:
    """The span bound for the work this thread does now, if any."""
    return _current.get()


def bind(span: Span | None) -> contextvars.Token[Span | None]:
    """Binds ``span`` until ``unbind`` with the returned token."""
    return _current.set(span)


def unbind(token: contextvars.Token[Span | None]) -> None:
    _current.reset(token)


def current_traceparent() -> str:
    """The bound span's traceparent, to store with work that outlives the call; "" if none."""
    span = current()
    return span.traceparent if span is not None else ""


def outgoing() -> str:
    """The traceparent to send on a call to the other service: a child of the bound
    span, or "" when nothing is bound (the receiver then starts a trace) or when a
    backend is in use (its client interceptor sends the header: one, not two)."""
    span = current()
    return span.child().traceparent if span is not None and _backend is None else ""


@contextmanager
def resumed(stored: str, name: str = "resumed") -> Iterator[Span | None]:
    """Runs the block in the trace ``stored`` names: a new span in it (``name``, for a
    backend), its parent the stored one. The span bound before (a later call's own)
    and the new one name each other in ``links``. Nothing changes when ``stored`` is
    empty or invalid or when the bound span is already in that trace."""
    origin = parse(stored)
    outer = current()
    if origin is None or (outer is not None and outer.trace_id == origin.trace_id):
        yield outer
        return
    started: AbstractContextManager[Span] = (
        nullcontext(origin.child()) if _backend is None else _backend.resumed(origin, outer, name)
    )
    with started as span:
        if outer is not None:
            span.links.append((outer.trace_id, outer.span_id))
            outer.links.append((span.trace_id, span.span_id))
        token = bind(span)
        try:
            yield span
        finally:
            unbind(token)
