"""`keyslot tokens`: the CLI hands the tokens file to the services' tokens tool (S6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from keyslot_server.auth import TokenFile


def keyslot(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyslot.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_s6_keyslot_tokens_creates_lists_and_revokes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    created = keyslot("tokens", "--file", str(path), "create", "--kind", "provider", "--name", "a")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert TokenFile.load(path).resolve(token) is not None
    listed = keyslot("tokens", "--file", str(path), "list", "--json")
    assert [entry["name"] for entry in json.loads(listed.stdout)] == ["a"]
    assert token not in listed.stdout
    assert keyslot("tokens", "--file", str(path), "revoke", "a").returncode == 0
    assert TokenFile.load(path).resolve(token) is None


def test_keyslot_help_lists_the_tokens_command() -> None:
    assert "tokens" in keyslot("--help").stdout
