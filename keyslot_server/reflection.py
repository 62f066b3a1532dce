"""Server reflection that serves the proto files with their comments.

grpcio-reflection answers from a descriptor pool, and the pool the generated
modules fill has no source info (and the default protobuf runtime drops it
from any pool on ``CopyToProto``). So ``describe`` in grpcurl or a similar
tool would show the schema without a word of documentation. ``make gen``
writes ``keyslot/descriptors.binpb``, a descriptor set with source info and
imports; the pool below looks names up as the generated modules see them and
answers with those documented files, so the comments reach the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection

# Written by `make gen` next to the stubs; `make lint` fails when it is stale.
DESCRIPTOR_SET = "descriptors.binpb"


def documented_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The documented proto files of the keyslot package, by file name."""
    data = (resources.files("keyslot") / DESCRIPTOR_SET).read_bytes()
    return {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(data).file}


class DocumentedPool:
    """A descriptor pool for reflection whose files carry their comments.

    Lookups go to ``pool`` (by default the one the generated modules filled,
    so reflection describes exactly what the server registered); a file found
    there is answered with its documented copy when the descriptor set has one.
    Files without one (health, reflection) are served as the pool has them.
    """

    def __init__(
        self,
        files: dict[str, descriptor_pb2.FileDescriptorProto],
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self._files = files
        self._pool = pool if pool is not None else descriptor_pool.Default()

    # The two lookups reflection answers files from (CamelCase: the pool's API).
    def FindFileByName(self, name: str) -> _DocumentedFile:
        return _DocumentedFile(self._pool.FindFileByName(name), self._files)

    def FindFileContainingSymbol(self, symbol: str) -> _DocumentedFile:
        return _DocumentedFile(self._pool.FindFileContainingSymbol(symbol), self._files)

    def __getattr__(self, name: str) -> Any:
        # Extension lookups and the rest answer as the underlying pool does.
        return getattr(self._pool, name)


class _DocumentedFile:
    """A file descriptor whose ``CopyToProto`` gives the documented file."""

    def __init__(self, descriptor: Any, files: dict[str, descriptor_pb2.FileDescriptorProto]):
        self._descriptor = descriptor
        self._files = files

    @property
    def name(self) -> str:
        return self._descriptor.name

    @property
    def dependencies(self) -> list[_DocumentedFile]:
        return [_DocumentedFile(d, self._files) for d in self._descriptor.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        documented = self._files.get(self._descriptor.name)
        if documented is None:
            self._descriptor.CopyToProto(proto)
        else:
            proto.CopyFrom(documented)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._descriptor, name)


def enable(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Registers grpc.reflection.v1alpha, listing ``service_names`` and itself.

    grpcio-reflection 1.85 implements only v1alpha; current clients fall back
    to it when they find no grpc.reflection.v1.
    """
    reflection.enable_server_reflection(
        (*service_names, reflection.SERVICE_NAME),
        server,
        pool=DocumentedPool(documented_files()),
    )
