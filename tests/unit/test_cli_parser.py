"""The `keyslot` argument parser: help on every option, global flags anywhere, --version,
and one command for every provider or operator RPC of the two services."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from keyslot import cli
from keyslot.cli_commands import COMMAND_OF_RPC, PEER_ONLY_RPCS
from keyslot.client import dpb, lpb

KEYSLOT_ENV = (
    "KEYSLOT_LICENSE",
    "KEYSLOT_DEVICE",
    "KEYSLOT_CA",
    "KEYSLOT_CERT",
    "KEYSLOT_KEY",
    "KEYSLOT_PLAINTEXT",
    "KEYSLOT_CREDENTIALS",
    "KEYSLOT_TOKEN",
)


@pytest.fixture(autouse=True)
def no_keyslot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYSLOT_ENV:
        monkeypatch.delenv(name, raising=False)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The main parser and each subcommand's parser once (aliases share one)."""
    parser = cli.build_parser()
    yield "keyslot", parser
    seen: set[int] = set()
    for name, sub in _subparsers(parser).items():
        if id(sub) not in seen:
            seen.add(id(sub))
            yield name, sub


def test_every_option_and_argument_has_help() -> None:
    for name, parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.dest == "tokens_file":
                assert action.help == argparse.SUPPRESS  # hidden on purpose: it is gone
                continue
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{what} has no help"
            assert action.help != argparse.SUPPRESS, f"{what} is hidden"


def test_every_default_is_shown_in_the_help() -> None:
    for name, parser in parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            text = formatter._get_help_string(action) or ""
            assert "default" in text, f"{name} {action.option_strings}: {text!r}"
        parser.format_help()  # every %(default)s expands


def test_sub_help_shows_a_default_value() -> None:
    sub = _subparsers(cli.build_parser())
    assert "(default: 100)" in sub["list-codes"].format_help()
    assert "(default: 365)" in sub["issue-codes"].format_help()
    assert "global options (before or after the command)" in sub["list-codes"].format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "list-codes"],
        ["list-codes", "--json"],
        ["list-codes", "--product", "p", "--json"],
        ["--timeout", "3", "list-codes", "--json"],
    ],
)
def test_global_flags_before_or_after_the_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.json is True
    assert args.command == "list-codes"


def test_a_flag_after_the_command_wins_and_defaults_stay() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["--timeout", "3", "--token", "a", "reasons", "--timeout", "5"])
    assert (args.timeout, args.token) == (5.0, "a")
    args = parser.parse_args(["reasons", "--license", "h:1", "--plaintext", "--ca", "x.pem"])
    assert (args.license, args.plaintext, args.ca) == ("h:1", "1", "x.pem")
    args = parser.parse_args(["reasons"])
    assert (args.license, args.device) == (cli.LICENSE_ADDRESS, cli.DEVICE_ADDRESS)
    assert (args.json, args.timeout, args.token, args.plaintext) == (False, 10.0, None, "0")
    assert args.credentials == cli.DEFAULT_CREDENTIALS


def test_environment_defaults_apply_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYSLOT_LICENSE", "env:1")
    monkeypatch.setenv("KEYSLOT_CREDENTIALS", "env.json")
    parser = cli.build_parser()
    args = parser.parse_args(["list-codes", "--json"])
    assert (args.license, args.credentials) == ("env:1", "env.json")
    assert parser.parse_args(["list-codes", "--license", "flag:2"]).license == "flag:2"
    assert "env:1" in _subparsers(parser)["list-codes"].format_help()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("keyslot ") and cli.version() in out


def test_renamed_commands_keep_their_old_names() -> None:
    sub = _subparsers(cli.build_parser())
    for old, new in (
        ("send", "send-subscription"),
        ("connection-code", "create-connection-code"),
        ("license-details", "show-license"),
    ):
        assert sub[old] is sub[new]


def test_every_rpc_has_a_command_or_is_peer_only() -> None:
    parser = cli.build_parser()
    commands, epilog = _subparsers(parser), parser.epilog or ""
    for service in (
        lpb.DESCRIPTOR.services_by_name["LicenseService"],
        dpb.DESCRIPTOR.services_by_name["DeviceService"],
    ):
        for method in service.methods:
            if method.name in PEER_ONLY_RPCS:
                assert method.name in epilog, method.name  # `keyslot --help` says why
                continue
            assert method.name in COMMAND_OF_RPC, f"{method.name} has no command"
            assert COMMAND_OF_RPC[method.name] in commands, COMMAND_OF_RPC[method.name]


def test_commands_are_verb_noun() -> None:
    verbs = {
        "create", "show", "list", "issue", "pause", "resume", "renew", "record", "cancel",
        "block", "unblock", "set", "add", "remove", "send", "connect", "update", "disconnect",
        "check", "activate", "complete", "retry",
    }  # fmt: skip
    names = set(COMMAND_OF_RPC.values())
    for name in names:
        assert name.split("-")[0] in verbs, name
        assert "-" in name, name


def test_send_help_explains_partial_success() -> None:
    text = _subparsers(cli.build_parser())["send"].format_help()
    assert "16" in text and "refused" in text and "partial" in text
    assert "16" in cli.build_parser().format_help()
