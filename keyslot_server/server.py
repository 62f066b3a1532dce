"""Server bootstrap shared by both services.

``create_server`` builds a grpc.Server with the keyslot interceptor, health
and reflection and binds its listeners (TLS, mutual TLS or, on loopback,
plaintext); ``serve_forever`` runs it until SIGTERM/SIGINT and shuts down
gracefully (health NOT_SERVING first, then ``server.stop(grace)``). SIGHUP
re-reads what can change under a running service (certificates, tokens).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from keyslot_server import auth, otel, reflection, trace
from keyslot_server.db import DatabaseUnavailable
from keyslot_server.errors import (
    ServiceError,
    internal_status,
    unauthenticated_status,
    unavailable_status,
)

log = logging.getLogger("keyslot")
call_log = logging.getLogger("keyslot.calls")
# Start, stop and reload: written at every --log-level (tools wait for "serving on port").
lifecycle = logging.getLogger("keyslot.lifecycle")

# Methods anyone may call: load balancers and tools need them without tokens.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class KeyslotInterceptor(grpc.ServerInterceptor):
    """Authenticates, logs one line per call, and maps errors to rich statuses.

    grpc runs interceptors on the server's one polling thread, before a call
    is handed to the worker pool. So the wrapped handler of each method is
    built once and reused, and the token is resolved (a credential look-up may
    read SQLite) inside the call, on its worker thread.
    """

    def __init__(
        self,
        domain: str,
        resolver: auth.Resolver,
        log_calls: bool = True,
        peer_check: PeerCheck | None = None,
    ) -> None:
        self.domain = domain
        self.resolver = resolver
        self.log_calls = log_calls
        self.peer_check = peer_check
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None
            if method.startswith(OPEN_PREFIXES):
                wrapped = handler
            elif handler.stream_stream is not None:
                wrapped = self._stream(handler, method)
            elif handler.unary_unary is not None:
                wrapped = self._unary(handler, method)
            else:  # keyslot has no other streaming shapes
                wrapped = handler
            self._handlers[method] = wrapped
        return wrapped

    def _authenticate(self, context: grpc.ServicerContext) -> auth.Principal:
        """The caller, or an abort with UNAUTHENTICATED."""
        token = auth.bearer_token(context.invocation_metadata() or ())
        principal = self.resolver(token) if token else None
        message = "missing bearer token" if not token else "unknown bearer token"
        # S5: the peer token is a second factor; the first is the peer's certificate.
        peer = principal is not None and principal.kind == "peer"
        if peer and self.peer_check is not None and not self.peer_check(context):
            principal = None
            message = "the peer token is accepted only with the peer's client certificate"
        if principal is None:
            _abort(context, unauthenticated_status(self.domain, message))
        assert principal is not None
        return principal

    def _unary(self, handler, method):  # type: ignore[no-untyped-def]
        inner = handler.unary_unary
        domain = self.domain
        log_calls = self.log_calls

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            status = "UNAUTHENTICATED"
            caller = "-"
            span = trace.call_span(_traceparent(context))
            bound_span = trace.bind(span)
            try:
                principal = self._authenticate(context)
                status = "OK"
                caller = f"{principal.kind}:{principal.name}"
                bound = auth.set_principal(principal)
                try:
                    return inner(request, context)
                finally:
                    auth.reset_principal(bound)
            except ServiceError as err:
                status = f"{err.code.name}/{err.reason}"
                _abort(context, err.to_status())
            except NotImplementedError:
                status = "UNIMPLEMENTED"
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
            except DatabaseUnavailable as err:
                status = "UNAVAILABLE"
                log.warning("%s: %s", method, err)
                _abort(context, unavailable_status(domain))
            except Exception:
                if status != "OK" or _aborted(context):
                    raise
                status = "INTERNAL"
                log.exception("unexpected error in %s", method)
                _abort(context, internal_status(domain))
            finally:
                if log_calls:
                    _log_call(method, status, started, caller, span)
                trace.unbind(bound_span)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _stream(self, handler, method):  # type: ignore[no-untyped-def]
        """A bidirectional stream: the same authentication and error mapping.

        The servicer method runs with the principal bound and must check the
        caller before it returns its response iterator (not inside it).
        """
        inner = handler.stream_stream
        domain = self.domain

        def behavior(requests: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            # Bound while the servicer starts the stream and for its end line, not
            # across the yields: a generator may be closed from another context.
            span = trace.call_span(_traceparent(context))
            bound_span = trace.bind(span)
            try:
                principal = self._authenticate(context)
                bound = auth.set_principal(principal)
                try:
                    responses = inner(requests, context)
                except ServiceError as err:
                    _abort(context, err.to_status())
                finally:
                    auth.reset_principal(bound)
            finally:
                trace.unbind(bound_span)
            try:
                yield from responses
            except ServiceError as err:
                _abort(context, err.to_status())
            except Exception:
                if _aborted(context):
                    raise
                log.exception("unexpected error in %s", method)
                _abort(context, internal_status(domain))
            if self.log_calls:
                bound_span = trace.bind(span)
                try:
                    _log_call(method, "ENDED", started, f"{principal.kind}:{principal.name}", span)
                finally:
                    trace.unbind(bound_span)

        return grpc.stream_stream_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _traceparent(context: grpc.ServicerContext) -> str | None:
    """The caller's W3C ``traceparent`` header, if it sent one."""
    for key, value in context.invocation_metadata() or ():
        if key == trace.HEADER:
            return value if isinstance(value, str) else None
    return None


def _log_call(method: str, status: str, started: float, caller: str, span: trace.Span) -> None:
    """The one line per call; the trace filter adds its trace and span ids."""
    extra = {
        "method": method,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "caller": caller,
    }
    if span.parent_id:
        extra["parent_span_id"] = span.parent_id
    call_log.info("call", extra=extra)


def _abort(context: grpc.ServicerContext, rich: Any) -> None:
    """Ends the call with a rich status (a ``google.rpc.Status``). The code and
    message are set first so that a wrapping context (the tracing interceptor's)
    sees them too: the abort itself goes straight to gRPC."""
    status = rpc_status.to_status(rich)
    context.set_code(status.code)
    context.set_details(status.details)
    context.abort_with_status(status)


def _aborted(context: grpc.ServicerContext) -> bool:
    # context.abort raises a plain Exception; its code is already set then.
    code = getattr(context, "code", lambda: None)()
    return code not in (None, grpc.StatusCode.OK)


PeerCheck = Callable[[grpc.ServicerContext], bool]
"""Whether a call comes with the peer's verified client certificate (S5)."""


@dataclass(frozen=True)
class Listener:
    """One address to serve on: ``credentials`` None serves plaintext (loopback only)."""

    address: str
    credentials: grpc.ServerCredentials | None = None
    name: str = "port"  # what the start-up line calls it: "port", "peer port"


@dataclass
class Running:
    """A bound server with its health servicer and the ports it got (one per listener)."""

    server: grpc.Server
    ports: dict[str, int]
    health: health.HealthServicer
    service_names: Sequence[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
    # Run on SIGHUP: re-read certificates and tokens without a restart.
    on_reload: list[Callable[[], object]] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The first listener's port (the public one)."""
        return next(iter(self.ports.values()))

    def reload(self) -> None:
        for hook in self.on_reload:
            try:
                hook()
            except Exception:  # one failing reload must not stop the others or the server
                log.exception("reload failed")

    def stop(self, grace: float) -> None:
        """Health NOT_SERVING first so balancers drain, then a graceful stop."""
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace)  # no new calls from here on
        # Long-lived streams end now: the grace is for the unary calls in flight.
        for hook in self.on_stopping:
            hook()
        stopped.wait()
        # Sweepers and stores close only after in-flight calls had their grace.
        for hook in self.on_stop:
            hook()


def create_server(
    *,
    listeners: Sequence[Listener],
    domain: str,
    resolver: auth.Resolver,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    workers: int = 16,
    log_calls: bool = True,
    peer_check: PeerCheck | None = None,
    outer_interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> Running:
    """Builds and starts the server on its listeners ("host:0" picks a free port).

    ``peer_check`` None accepts the peer token alone (a plaintext development
    setup); otherwise a peer principal needs the check to pass as well.
    ``outer_interceptors`` wrap the keyslot interceptor (metrics: they see every
    call's final status, authentication refusals included). With tracing on
    (keyslot_server.otel), its interceptor comes between: the keyslot one runs in
    the span it started."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        interceptors=[
            *outer_interceptors,
            *otel.server_interceptors(untraced=OPEN_PREFIXES),
            KeyslotInterceptor(domain, resolver, log_calls, peer_check),
        ],
        # One process per port: a second instance must fail to bind, not share.
        options=[("grpc.so_reuseport", 0)],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, (*service_names, health.SERVICE_NAME))
    ports: dict[str, int] = {}
    for listener in listeners:
        try:
            if listener.credentials is None:
                port = server.add_insecure_port(listener.address)
            else:
                port = server.add_secure_port(listener.address, listener.credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise AddressInUse(listener.address)
        ports[listener.name] = port
    server.start()
    for name in (*service_names, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Running(server, ports, health_servicer, service_names)


class AddressInUse(Exception):
    """A listener's address could not be bound (taken by another process, or not local)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot listen on {address}: the port is taken or the address is not local"
        )
        self.address = address


def _force_exit(service: str) -> None:
    log.error("%s: shutdown did not finish in time; thread stacks follow", service)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(1)


def serve_forever(running: Running, grace: float, service: str) -> int:
    """Blocks until SIGTERM/SIGINT, then stops gracefully. Returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        lifecycle.info("%s: received %s, shutting down", service, signal.Signals(signum).name)
        stop.set()

    reload = threading.Event()

    def on_hangup(_signum: int, _frame: object) -> None:
        reload.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    # A log record like every other line; tests and the bench find the ports in its text.
    extra = "".join(f", {name} {port}" for name, port in list(running.ports.items())[1:])
    lifecycle.info(
        "%s: serving on port %d%s", service, running.port, extra, extra={"ports": running.ports}
    )
    # A process-directed signal may land on a gRPC thread; Python runs the handler
    # only when the main thread executes bytecode, so wake up regularly.
    while not stop.wait(0.5):
        if reload.is_set():
            reload.clear()
            lifecycle.info("%s: SIGHUP, re-reading certificates and tokens", service)
            running.reload()
    # A shutdown that hangs (a stuck hook, a wedged call) must not keep the port:
    # past grace plus a margin the process exits anyway, loudly.
    watchdog = threading.Timer(grace + 10.0, _force_exit, args=(service,))
    watchdog.daemon = True
    watchdog.start()
    running.stop(grace)
    watchdog.cancel()
    lifecycle.info("%s: stopped", service)
    return 0
