"""Runs the Node contract suite (tests/contract/node) as part of `make test`.

A Node client built at run time from protos/ talks to the real Python
services the suite starts itself. `npm ci` runs only when node_modules is
missing or package-lock.json changed since the last install. Without `node`
on PATH the test is skipped, loudly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import grpc_tools
import pytest
from google import rpc

NODE_DIR = Path(__file__).resolve().parent / "node"
STAMP = NODE_DIR / "node_modules" / ".keyslot-lock-sha256"


def proto_includes() -> list[str]:
    """Dirs holding google/rpc/*.proto (googleapis-common-protos) and google/protobuf."""
    googleapis = Path(rpc.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [str(googleapis), str(well_known)]


def npm_ci_if_needed(npm: str) -> None:
    """`npm ci` when node_modules is missing or the lock file changed."""
    lock_hash = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == lock_hash:
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    STAMP.write_text(lock_hash + "\n")


def test_node_client_contract_suite() -> None:
    node = shutil.which("node")
    if node is None:
        message = (
            "SKIPPED THE NODE CONTRACT SUITE: `node` is not on PATH. "
            "Install Node.js >= 18 to check the cross-language contract."
        )
        print(f"\n{'!' * 78}\n{message}\n{'!' * 78}", file=sys.stderr)
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not: cannot install the suite"
    npm_ci_if_needed(npm)
    env = dict(
        os.environ,
        KEYSLOT_PYTHON=sys.executable,
        KEYSLOT_PROTO_INCLUDES=os.pathsep.join(proto_includes()),
    )
    result = subprocess.run(
        [node, "--test"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"node --test failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
