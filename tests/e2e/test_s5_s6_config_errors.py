"""Configuration errors stop a service with one line and exit 2, before any database (S5, S6).

Each case starts a real service process in an empty directory with one
broken file and checks: exit code 2, exactly one line on stderr naming the
file and the problem, no traceback, and no database file created.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from keyslot_server import tls
from tests.harness import ROOT, write_tokens_file

Setup = Callable[[Path], list[str]]


def start(workdir: Path, module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "KEYSLOT_TOKENS_FILE": ""}
    return subprocess.run(
        [sys.executable, "-m", module, "--listen", "127.0.0.1:0", "--db", "data/x.db", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def tokens(workdir: Path) -> list[str]:
    write_tokens_file(workdir / "tokens.json")
    return ["--tokens-file", "tokens.json"]


def pki(workdir: Path) -> tls.DevPki:
    return tls.dev_pki(workdir / "tls")


def missing_tokens(workdir: Path) -> list[str]:
    return ["--tokens-file", "nowhere.json"]


def malformed_tokens(workdir: Path) -> list[str]:
    (workdir / "tokens.json").write_text("{not json")
    return ["--tokens-file", "tokens.json"]


def plaintext_tokens(workdir: Path) -> list[str]:
    old = {"tokens": [{"token": "x" * 24, "kind": "provider", "name": "shop"}]}
    (workdir / "tokens.json").write_text(json.dumps(old))
    return ["--tokens-file", "tokens.json"]


def garbage_cert(workdir: Path) -> list[str]:
    paths = pki(workdir)
    paths.server_cert.write_text("not a certificate\n")
    return [
        *tokens(workdir),
        "--tls-cert",
        str(paths.server_cert),
        "--tls-key",
        str(paths.server_key),
    ]


def mismatched_key(workdir: Path) -> list[str]:
    paths = pki(workdir)
    return [
        *tokens(workdir),
        "--tls-cert",
        str(paths.server_cert),
        "--tls-key",
        str(paths.peer_key),
    ]


def missing_key(workdir: Path) -> list[str]:
    paths = pki(workdir)
    return [*tokens(workdir), "--tls-cert", str(paths.server_cert), "--tls-key", "none.key"]


def public_plaintext(workdir: Path) -> list[str]:
    return [*tokens(workdir), "--listen", "0.0.0.0:0"]


CASES: dict[str, tuple[Setup, str, str]] = {
    "missing tokens file": (missing_tokens, "nowhere.json", "not found"),
    "malformed tokens file": (malformed_tokens, "tokens.json", "JSON"),
    "plaintext tokens file": (plaintext_tokens, "tokens.json", "migrate"),
    "garbage certificate": (garbage_cert, "server.pem", "not a PEM certificate"),
    "key of another certificate": (mismatched_key, "peer.key", "does not match"),
    "missing key": (missing_key, "none.key", "not found"),
    "plaintext on a public address": (public_plaintext, "0.0.0.0:0", "loopback"),
}


@pytest.mark.parametrize("module", ["license_service", "device_service"])
@pytest.mark.parametrize("case", list(CASES))
def test_s5_s6_a_bad_file_is_one_line_exit_2_and_no_database(
    tmp_path: Path, module: str, case: str
) -> None:
    setup, names, problem = CASES[case]
    args = setup(tmp_path)
    if module == "device_service":
        args += ["--peer-token", "p" * 24]
    result = start(tmp_path, module, args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and problem.lower() in lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "a database was created before the check"
