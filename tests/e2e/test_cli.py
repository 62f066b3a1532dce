"""The `keyslot` CLI as a subprocess against the real services, with --json and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from keyslot.cli import build_parser

from tests.harness import ROOT, TOKENS, Services


def run(
    services: Services, *argv: str, credentials: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`keyslot --json ...` against the services over TLS trusting their CA (S5); tokens
    by kind from their credentials file (the tokens file holds hashes only, S6)."""
    transport = ["--ca", str(services.ca)] if services.ca else ["--plaintext"]
    cmd = [
        sys.executable,
        "-m",
        "keyslot.cli",
        "--license",
        services.license.address,
        "--device",
        services.device.address,
        *transport,
        "--credentials",
        str(credentials or services.credentials_file),
        "--json",
        *argv,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def ok(services: Services, *argv: str) -> Any:
    result = run(services, *argv)
    assert result.returncode == 0, (
        f"{argv}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    )
    return json.loads(result.stdout)


def failed(services: Services, *argv: str, exit_code: int) -> dict[str, Any]:
    result = run(services, *argv)
    assert result.returncode == exit_code, f"{argv}: {result.stdout}{result.stderr}"
    error: dict[str, Any] = json.loads(result.stdout)["error"]
    return error


def test_cli_product_codes_show_and_list(services: Services) -> None:
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    assert ok(services, "create-product", product_id, "--name", "CLI")["product_id"] == product_id
    codes = ok(
        services, "issue-codes", "--product", product_id, "--count", "3", "--max-devices", "2"
    )
    assert len(codes) == 3
    shown = ok(services, "show-code", codes[0]["code"])
    assert shown["terms"]["max_devices"] == 2
    assert shown["phase"] == "PHASE_NOT_ACTIVATED"
    listed = ok(services, "list-codes", "--product", product_id, "--page-size", "2")
    assert sorted(c["code"] for c in listed) == sorted(c["code"] for c in codes)


def test_cli_exit_codes_follow_the_reason_family(services: Services) -> None:
    error = failed(services, "show-code", "AAAAA-BBBBB-CCCCC-DDDDD", exit_code=4)
    assert error["reason"] == "CODE_NOT_FOUND"
    assert error["error"] == "CodeNotFound"
    error = failed(services, "show-code", "not a code!", exit_code=3)
    assert error["fieldViolations"][0]["field"] == "code"
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id)
    assert failed(services, "create-product", product_id, exit_code=5)["reason"] == "PRODUCT_EXISTS"
    error = failed(services, "--token", "not-a-known-token-at-all", "list-codes", exit_code=6)
    assert error["reason"] == "UNAUTHENTICATED"


def test_cli_without_any_token_is_a_usage_error(services: Services, tmp_path: Path) -> None:
    result = run(services, "list-codes", credentials=tmp_path / "missing.json")
    assert result.returncode == 2
    assert "credentials file" in result.stderr


def test_cli_account_connect_send_complete(services: Services) -> None:
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id)
    code = ok(services, "issue-codes", "--product", product_id, "--max-devices", "1")[0]["code"]
    account = ok(services, "create-account", "CLI family")
    account_id = account["account"]["account_id"]
    ok(services, "add-subscription", account_id, code)
    devices = []
    for name in ("one", "two"):
        conn = ok(services, "connection-code", account_id)
        connected = ok(
            services,
            "connect-device",
            conn["connection_code"],
            "--name",
            name,
            "--platform",
            "linux",
        )
        devices.append((connected["device"]["device_id"], connected["device_credential"]))
    (first, first_token), (second, _) = devices
    sent = ok(services, "send", account_id, code, first)
    delivery_id = sent[0]["delivery"]["delivery_id"]
    done = ok(services, "--token", first_token, "complete-delivery", delivery_id)
    assert done["delivery"]["state"] == "DELIVERY_STATE_DELIVERED"
    checked = ok(services, "--token", first_token, "check-in")
    assert checked["device"]["current_code"] == code
    # One slot, taken: the second target is refused; the exit code is its family's (D5).
    result = run(services, "send", account_id, code, second)
    assert result.returncode == 10, result.stdout + result.stderr
    assert json.loads(result.stdout)[0]["refusal"]["reason"] == "NO_FREE_SLOTS"
    details = ok(services, "license-details", first)
    assert details["code"]["code"] == code


def test_cli_l1_duration_flag_issues_sub_day_terms(services: Services) -> None:
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id)
    issue = ["issue-codes", "--product", product_id]
    [trial] = ok(services, *issue, "--trial", "--duration", "1h", "--grace", "10m")
    assert trial["terms"]["duration"] == "3600s" and trial["terms"]["grace_period"] == "600s"
    [mixed] = ok(services, *issue, "--duration", "1h30m15s")
    assert mixed["terms"]["duration"] == "5415s"
    assert mixed["terms"]["grace_period"] == f"{14 * 86400}s"  # --grace-days' default
    [days] = ok(services, *issue, "--days", "2", "--grace", "0s")
    assert days["terms"]["duration"] == f"{2 * 86400}s" and days["terms"]["grace_period"] == "0s"
    # A number without its unit, a non-ASCII digit or both length flags: usage errors.
    for flags in (
        ["--duration", "3600"],
        ["--duration", "１h"],
        ["--days", "1", "--duration", "1h"],
    ):
        result = run(services, *issue, *flags)
        assert result.returncode == 2, result.stdout + result.stderr
    # The service refuses a zero-length term, naming the field (exit 3).
    error = failed(services, *issue, "--duration", "0s", exit_code=3)
    assert error["fieldViolations"][0]["field"] == "terms.duration"


def test_cli_device_commands_need_a_device_token(services: Services) -> None:
    result = run(services, "check-in")
    assert result.returncode == 2
    assert "--token" in result.stderr


def test_cli_reasons_lists_every_reason_with_its_exit_code(services: Services) -> None:
    data = ok(services, "reasons")
    reasons = {row["reason"]: row["exit"] for row in data["reasons"]}
    assert reasons["NO_FREE_SLOTS"] == 10
    assert reasons["CODE_BLOCKED"] == 9
    assert data["exitCodes"]["INVALID_ARGUMENT"] == 3


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["", *_subcommands()])
def test_cli_help_on_every_command(command: str) -> None:
    argv = [sys.executable, "-m", "keyslot.cli", *([command] if command else []), "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0
    assert "usage: keyslot" in result.stdout


def test_cli_demo_tells_the_whole_story(services: Services) -> None:
    result = run(services, "demo")
    data = json.loads(result.stdout)
    steps = {step["step"]: step for step in data["steps"]}
    assert any("complete" in s for s in steps), steps.keys()
    assert result.returncode == 0, json.dumps(data["failed"]) + result.stderr
    takeover = next(s for s in data["steps"] if s["step"].startswith("remove the laptop"))
    assert takeover["result"]["reserve"]["state"] == "RESERVE_STATE_ACTIVATED"


def test_cli_uses_the_provider_token_of_the_credentials_file(services: Services) -> None:
    # The credentials file's provider entry is shop-one's token: its codes are its own (S2).
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id)
    code = ok(services, "issue-codes", "--product", product_id)[0]["code"]
    result = run(services, "--token", TOKENS["provider2"], "show-code", code)
    assert result.returncode == 4  # another provider's code is NOT_FOUND
