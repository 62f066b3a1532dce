"""`python -m bench.echo`: the ceiling, a bare grpcio unary echo server.

Same server settings as the services (ThreadPoolExecutor of the same size,
the same channel options, health registered, and with --tls-cert/--tls-key
the same TLS credentials), but no interceptor, no auth and no database: the
handler returns the request bytes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"


def _echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
    return request


def _checkin_reply() -> Any:
    """A check-in answer of the usual size: a device and an active code with terms."""
    from datetime import UTC, datetime, timedelta

    from keyslot.device.v1 import device_service_pb2 as dpb
    from keyslot.license.v1 import license_service_pb2 as lpb

    from keyslot_server.timeconv import to_duration, to_timestamp

    now = datetime.now(UTC)
    code = lpb.Code(
        code="ABCDE-12345-FGHIJ-67890",
        terms=lpb.CodeTerms(
            product_id="home",
            kind=lpb.CODE_KIND_SUBSCRIPTION,
            coverage=lpb.COVERAGE_UPDATES_AND_PROTECTION,
            duration=to_duration(timedelta(days=365)),
            max_devices=3,
        ),
        status=lpb.CODE_STATUS_ACTIVE,
        phase=lpb.PHASE_ACTIVE,
        first_activate_time=to_timestamp(now),
        expire_time=to_timestamp(now + timedelta(days=365)),
        grace_end_time=to_timestamp(now + timedelta(days=379)),
        entitlements=[lpb.ENTITLEMENT_PROTECTION, lpb.ENTITLEMENT_DATABASE_UPDATES],
        issue_time=to_timestamp(now),
        activation_count=1,
    )
    device = dpb.Device(
        device_id="dev_" + "0" * 32,
        account_id="acc_" + "0" * 32,
        platform=dpb.PLATFORM_WINDOWS,
        app_version="10.4",
        region="FI",
        display_name="laptop",
        current_code=code.code,
        connect_time=to_timestamp(now),
        last_check_in_time=to_timestamp(now),
    )
    return dpb.CheckInResponse(device=device, code=code, server_time=to_timestamp(now))


def serve_keyslot(args: argparse.Namespace) -> int:
    """The framework floor: the services' own server (interceptor, auth, health,
    reflection) and protobuf CheckIn messages, with a handler that does nothing."""
    from keyslot.device.v1 import device_service_pb2 as dpb

    from keyslot_server import auth, transport
    from keyslot_server.server import create_server

    reply = _checkin_reply()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                lambda _request, _context: reply,
                request_deserializer=dpb.CheckInRequest.FromString,
                response_serializer=dpb.CheckInResponse.SerializeToString,
            )
        },
    )
    tokens = auth.TokenFile.load(os.environ.get("KEYSLOT_TOKENS_FILE"))
    material = transport.server_tls(args.tls_cert, args.tls_key)
    running = create_server(
        listeners=[transport.public_listener(args.listen, material)],
        domain="bench.keyslot",
        resolver=tokens.resolve,
        register=lambda server: server.add_generic_rpc_handlers((handler,)),
        service_names=[SERVICE],
        workers=args.workers,
        log_calls=False,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"echo: serving on port {running.port}", flush=True)
    stop.wait()
    running.stop(1)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--keyslot", action="store_true", help="the services' server and messages (floor)"
    )
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM); unset: none")
    parser.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    args = parser.parse_args(argv)
    if args.keyslot:
        return serve_keyslot(args)
    # Mirrors keyslot_server.server.create_server minus the interceptor.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="rpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    # No serializers: the handler sees and returns raw bytes.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    from keyslot_server import transport

    # The services' own server credentials, so a handshake costs the same here.
    material = transport.server_tls(args.tls_cert, args.tls_key)
    if material is not None:
        port = server.add_secure_port(args.listen, material.credentials())
    else:
        port = server.add_insecure_port(args.listen)
    server.start()
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"echo: serving on port {port}", flush=True)
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
