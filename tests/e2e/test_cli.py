"""The `keyslot` CLI as a subprocess against the real services, with --json and exit codes."""

from __future__ import annotations

import json
import os
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
    return cli(services, "--json", *argv, credentials=credentials)


def cli(
    services: Services,
    *argv: str,
    credentials: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`keyslot ...` (tables unless ARGV says --json) against the services."""
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
        *argv,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


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


# --- the commands of every provider and operator RPC ------------------------------------


def _product_and_code(services: Services, *flags: str) -> tuple[str, str]:
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id)
    code = ok(services, "issue-codes", "--product", product_id, *flags)[0]["code"]
    return product_id, code


def _account_with_device(services: Services, code: str) -> tuple[str, str, str]:
    """(account id, device id, device credential) of a new account holding ``code``."""
    account_id = ok(services, "create-account", "CLI ops")["account"]["account_id"]
    ok(services, "add-subscription", account_id, code)
    conn = ok(services, "create-connection-code", account_id)["connection_code"]
    connected = ok(services, "connect-device", conn, "--platform", "linux")
    return account_id, connected["device"]["device_id"], connected["device_credential"]


def test_cli_products_show_and_list(services: Services) -> None:
    product_id = f"cli-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id, "--name", "Listed", "--region", "FI")
    shown = ok(services, "show-product", product_id)
    assert shown["display_name"] == "Listed" and shown["released_regions"] == ["FI"]
    listed = ok(services, "list-products", "--page-size", "1")
    assert product_id in {p["product_id"] for p in listed}
    assert failed(services, "show-product", "no-such-product", exit_code=4)["reason"] == (
        "PRODUCT_NOT_FOUND"
    )


def test_cli_block_and_unblock(services: Services) -> None:
    _, code = _product_and_code(services)
    assert ok(services, "block-code", code, "--reason", "refund")["status"] == "CODE_STATUS_BLOCKED"
    assert failed(services, "block-code", code, exit_code=8)["reason"] == "ALREADY_BLOCKED"
    assert ok(services, "unblock-code", code)["status"] == "CODE_STATUS_ACTIVE"
    assert failed(services, "unblock-code", code, exit_code=8)["reason"] == "NOT_BLOCKED"


def test_cli_subscription_lifecycle(services: Services) -> None:
    _, code = _product_and_code(services, "--kind", "subscription", "--days", "30")
    _, device_id, token = _account_with_device(services, code)
    ok(services, "--token", token, "activate-device", code)
    before = ok(services, "show-code", code)
    assert ok(services, "pause-subscription", code)["status"] == "CODE_STATUS_PAUSED"
    assert failed(services, "pause-subscription", code, exit_code=8)["reason"] == "ALREADY_PAUSED"
    assert ok(services, "resume-subscription", code)["status"] == "CODE_STATUS_ACTIVE"
    assert failed(services, "resume-subscription", code, exit_code=8)["reason"] == "NOT_PAUSED"
    renewed = ok(services, "renew-subscription", code, "--periods", "2")
    assert renewed["expire_time"] > before["expire_time"]
    assert ok(services, "record-prepayment", code)["prepaid_periods"] == 1
    route = ok(services, "set-auto-renewal", code, "off")
    assert route["route"] == "AUTO_RENEWAL_ROUTE_SELF_SERVICE"
    assert ok(services, "show-renewal-route", code)["route"] == "AUTO_RENEWAL_ROUTE_OWN_SUPPORT"
    cancelled = ok(services, "cancel-subscription", code)
    assert cancelled["cancel_at_period_end"] is True
    assert ok(services, "cancel-subscription", code, "--immediately")["status"] == (
        "CODE_STATUS_CANCELLED"
    )
    assert ok(services, "show-device", device_id)["current_code"] == code
    # A license is not a subscription: the lifecycle refuses it (exit 8).
    _, license_code = _product_and_code(services)
    error = failed(services, "pause-subscription", license_code, exit_code=8)
    assert error["reason"] == "NOT_A_SUBSCRIPTION"


def test_cli_renewal_route_and_support_request(services: Services) -> None:
    route = ok(
        services, "show-renewal-route", "--channel", "online-store", "--order-number", "A2212340"
    )
    assert route["route"] == "AUTO_RENEWAL_ROUTE_RESELLER_ALLSOFT" and route["instructions"]
    result = run(services, "show-renewal-route")
    assert result.returncode == 2 and "--channel" in result.stderr
    filed = ok(
        services,
        "create-support-request",
        "--reason",
        "stop renewing",
        "--purchase-date",
        "2025-12-01",
        "--full-name",
        "Ann Example",
        "--email",
        "ann@example.com",
    )
    assert filed["support_request_id"] and filed["full_name"] == "Ann Example"
    base = ["create-support-request", "--reason", "r", "--full-name", "A", "--email", "a@b.fi"]
    error = failed(services, *base, "--purchase-date", "2025-13-45", exit_code=3)
    assert error["fieldViolations"][0]["field"].endswith("purchase_date")


def test_cli_accounts_devices_and_disconnect(services: Services) -> None:
    _, code = _product_and_code(services, "--max-devices", "2")
    account_id, device_id, _ = _account_with_device(services, code)
    assert ok(services, "show-account", account_id)["display_name"] == "CLI ops"
    [subscription] = ok(services, "list-subscriptions", account_id)
    assert subscription["code"] == code
    updated = ok(services, "update-device", device_id, "--name", "renamed", "--region", "SE")
    assert (updated["display_name"], updated["region"]) == ("renamed", "SE")
    assert run(services, "update-device", device_id).returncode == 2  # nothing to change
    [sent] = ok(services, "send", account_id, code, device_id)
    delivery_id = sent["delivery"]["delivery_id"]
    assert ok(services, "show-delivery", delivery_id)["state"] == "DELIVERY_STATE_PENDING"
    [row] = ok(services, "list-subscription-devices", account_id, code)
    assert row["delivery"]["delivery_id"] == delivery_id
    listed = ok(services, "list-deliveries", "--device-id", device_id, "--state", "pending")
    assert [d["delivery_id"] for d in listed] == [delivery_id]
    assert run(services, "list-deliveries").returncode == 2  # --account or --device-id
    disconnected = ok(services, "disconnect-device", device_id)
    assert disconnected["disconnect_time"]
    assert ok(services, "list-devices", account_id) == []
    ok(services, "remove-subscription", account_id, code)
    assert ok(services, "list-subscriptions", account_id) == []


def test_cli_console_member_and_download_link(services: Services) -> None:
    account = ok(services, "create-account", "Office", "--console")
    account_id = account["account"]["account_id"]
    member = ok(services, "add-console-member", account_id, "Admin", "--role", "administrator")
    assert member["member"]["role"] == "CONSOLE_ROLE_ADMINISTRATOR" and member["member_credential"]
    _, code = _product_and_code(services)
    personal, _, _ = _account_with_device(services, code)
    sent = ok(services, "send-download-link", personal, code, "someone@example.com")
    assert sent["email"] == "someone@example.com"
    outbox = ok(services, "list-outbox")
    assert sent["message_id"] in {m["message_id"] for m in outbox}


def test_cli_reserve_add_show_remove(services: Services) -> None:
    product_id, code = _product_and_code(services, "--days", "100")
    reserve = ok(services, "issue-codes", "--product", product_id, "--days", "400")[0]["code"]
    _, device_id, token = _account_with_device(services, code)
    # No current license yet: nothing to back up (exit 12).
    assert failed(services, "add-reserve", device_id, reserve, exit_code=12)["reason"] == (
        "NO_CURRENT_LICENSE"
    )
    ok(services, "--token", token, "activate-device", code)
    assert ok(services, "add-reserve", device_id, reserve)["state"] == "RESERVE_STATE_WAITING"
    assert ok(services, "show-license", device_id)["reserve"]["code"] == reserve
    error = failed(services, "activate-reserve", device_id, exit_code=12)
    assert error["reason"] == "CURRENT_NOT_BLOCKED"
    assert failed(services, "retry-reserve", device_id, exit_code=12)["reason"] == (
        "RESERVE_NOT_FAILED"
    )
    assert ok(services, "remove-reserve", device_id) == {}
    assert "reserve" not in ok(services, "license-details", device_id)
    assert failed(services, "remove-reserve", device_id, exit_code=12)["reason"] == "NO_RESERVE"


def test_cli_show_codes_exits_4_when_one_is_unknown(services: Services) -> None:
    product_id, code = _product_and_code(services)
    other = ok(services, "issue-codes", "--product", product_id)[0]["code"]
    assert [c["code"] for c in ok(services, "show-codes", code, other.lower())] == [code, other]
    result = run(services, "show-codes", code, "AAAAA-BBBBB-CCCCC-DDDDD")
    assert result.returncode == 4, result.stdout + result.stderr
    assert [c["code"] for c in json.loads(result.stdout)] == [code]


def test_cli_send_partial_success_exits_16(services: Services) -> None:
    _, code = _product_and_code(services, "--max-devices", "1")
    account_id, first, _ = _account_with_device(services, code)
    conn = ok(services, "create-connection-code", account_id)["connection_code"]
    second = ok(services, "connect-device", conn)["device"]["device_id"]
    result = run(services, "send", account_id, code, first, second)
    assert result.returncode == 16, result.stdout + result.stderr
    results = json.loads(result.stdout)
    assert "delivery" in results[0] and results[1]["refusal"]["reason"] == "NO_FREE_SLOTS"
    # For people: a table and the rule, no JSON.
    table = cli(services, "send", account_id, code, second)
    assert table.returncode == 10, table.stdout + table.stderr
    assert "NO_FREE_SLOTS" in table.stdout and '"refusal"' not in table.stdout


def test_cli_flags_after_the_command_and_version(services: Services) -> None:
    product_id, code = _product_and_code(services)
    result = cli(services, "list-codes", "--product", product_id, "--json")
    assert result.returncode == 0, result.stderr
    assert [c["code"] for c in json.loads(result.stdout)] == [code]
    # A global flag after the command wins over the one before it.
    token = ["--token", "not-a-known-token-at-all"]
    result = cli(services, *token, "list-codes", "--json", "--token", TOKENS["provider"])
    assert result.returncode == 0, result.stderr
    result = cli(services, "list-codes", "--json", *token)
    assert result.returncode == 6
    version = cli(services, "--version")
    assert version.returncode == 0 and version.stdout.startswith("keyslot ")


def test_cli_tables_keep_ids_whole_at_100_columns(services: Services) -> None:
    product_id, code = _product_and_code(services, "--kind", "subscription")
    account_id, device_id, _ = _account_with_device(services, code)
    env = {**os.environ, "COLUMNS": "100"}
    for argv, ids in (
        (["list-devices", account_id], (device_id, account_id)),
        (["list-codes", "--product", product_id], (code, product_id)),
        (["show-code", code], (code, product_id)),
    ):
        shown = cli(services, *argv, env=env)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert all(len(line) <= 100 for line in lines), shown.stdout
        assert not any('{"' in line for line in lines), shown.stdout
        for value in ids:
            assert any(value in line for line in lines), shown.stdout
