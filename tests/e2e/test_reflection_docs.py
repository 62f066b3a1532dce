"""Server reflection serves the proto files with their comments, so `describe` documents them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.harness import DEVICE_SERVICE, LICENSE_SERVICE, Services

BUF = Path(sys.executable).parent / "buf"

# Paths into a FileDescriptorProto (descriptor.proto's field numbers), as
# SourceCodeInfo.Location.path spells them.
MESSAGE_TYPE, MESSAGE_FIELD = 4, 2
SERVICE, SERVICE_METHOD = 6, 2


def _files_containing(
    services: Services, address: str, symbol: str
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    stub = reflection_pb2_grpc.ServerReflectionStub(services.channel(address))
    replies = list(
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]),
            timeout=10,
        )
    )
    assert len(replies) == 1 and replies[0].HasField("file_descriptor_response"), replies
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in replies[0].file_descriptor_response.file_descriptor_proto
    ]
    return {f.name: f for f in files}


def _leading_comment(file: descriptor_pb2.FileDescriptorProto, path: list[int]) -> str:
    for location in file.source_code_info.location:
        if list(location.path) == path:
            return location.leading_comments
    return ""


def _method_path(file: descriptor_pb2.FileDescriptorProto, service: str, method: str) -> list[int]:
    s = next(i for i, svc in enumerate(file.service) if svc.name == service)
    m = next(i for i, rpc in enumerate(file.service[s].method) if rpc.name == method)
    return [SERVICE, s, SERVICE_METHOD, m]


def _field_path(file: descriptor_pb2.FileDescriptorProto, message: str, field: str) -> list[int]:
    t = next(i for i, msg in enumerate(file.message_type) if msg.name == message)
    f = next(i for i, fld in enumerate(file.message_type[t].field) if fld.name == field)
    return [MESSAGE_TYPE, t, MESSAGE_FIELD, f]


def test_license_service_is_described_with_its_comments(services: Services) -> None:
    files = _files_containing(services, services.license.address, LICENSE_SERVICE)
    proto = files["keyslot/license/v1/license_service.proto"]
    rpc = _leading_comment(proto, _method_path(proto, "LicenseService", "ListProducts"))
    assert rpc.strip() == "Lists products, ordered by id."
    field = _leading_comment(proto, _field_path(proto, "ListProductsRequest", "page_size"))
    assert field.strip() == "Maximum number of products to return, 1-1000; 0 means 100."
    # The imports come along, so a client can resolve Timestamp and Duration.
    assert {"google/protobuf/timestamp.proto", "google/protobuf/duration.proto"} <= set(files)


def test_device_service_is_described_with_its_comments(services: Services) -> None:
    files = _files_containing(services, services.device.address, DEVICE_SERVICE)
    proto = files["keyslot/device/v1/device_service.proto"]
    service = next(i for i, s in enumerate(proto.service) if s.name == "DeviceService")
    assert _leading_comment(proto, [SERVICE, service]).strip()
    # The license file it imports is documented too.
    assert files["keyslot/license/v1/license_service.proto"].source_code_info.location


def test_health_is_still_reflected(services: Services) -> None:
    files = _files_containing(services, services.license.address, "grpc.health.v1.Health")
    assert any(s.name == "Health" for f in files.values() for s in f.service)


def test_command_line_clients_list_the_methods(services: Services) -> None:
    assert services.ca is not None
    listed = subprocess.run(
        [
            str(BUF),
            "curl",
            "--cacert",
            str(services.ca),
            "--protocol",
            "grpc",
            "--list-methods",
            f"https://{services.license.address}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"{LICENSE_SERVICE}/ListProducts" in listed.stdout.split()
