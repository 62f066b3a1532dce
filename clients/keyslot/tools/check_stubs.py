"""Fails when the checked-in stubs or descriptor set differ from what `make gen` would produce."""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
PROTOS = ROOT / "protos"
CLIENTS = ROOT / "clients"
# The descriptor set with comments that server reflection serves (`make gen`).
DESCRIPTORS = Path("keyslot/descriptors.binpb")


def main() -> int:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={Path(tmp) / DESCRIPTORS}",
            *files,
        ]
        (Path(tmp) / DESCRIPTORS).parent.mkdir(parents=True)
        if protoc.main(args) != 0:
            print("check_stubs: protoc failed", file=sys.stderr)
            return 1
        fresh = sorted(p.relative_to(tmp) for p in Path(tmp).rglob("*") if p.is_file())
        stale = [
            str(rel)
            for rel in fresh
            if not (CLIENTS / rel).exists()
            or not filecmp.cmp(Path(tmp) / rel, CLIENTS / rel, shallow=False)
        ]
        # Sources only: bytecode caches (__pycache__/*.pyc) are not generated stubs.
        existing = sorted(
            p.relative_to(CLIENTS)
            for p in CLIENTS.rglob("*_pb2*.py*")
            if p.suffix in (".py", ".pyi")
        )
        orphans = [str(rel) for rel in existing if rel not in fresh]
    if stale or orphans:
        print("generated stubs are stale; run `make gen` and commit:", file=sys.stderr)
        for name in stale + orphans:
            print(f"  clients/{name}", file=sys.stderr)
        return 1
    print(f"stubs up to date ({len(fresh)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
