"""S6: the tokens file holds hashes only; revoking or rotating needs no restart.

Also S1: a token resolves to its principal. The clock is a FixedClock; no
test sleeps (a change is noticed by the stat on the next call, not by time).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyslot_server import tokens
from keyslot_server.auth import Principal, TokenFile, file_signature, hash_token
from keyslot_server.clock import FixedClock
from keyslot_server.config import EXIT_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "tokens.json"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def auth_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="keyslot.auth")
    return caplog


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def replace_keeping_mtime(path: Path, text: str) -> None:
    """Replaces the file as a writer would, but with the old mtime: one mtime tick."""
    before = path.stat()
    fresh = path.with_name("fresh.json")
    fresh.write_text(text)
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(fresh, path)


def v1(path: Path, items: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tokens": items}))


# --- create and resolve -------------------------------------------------------------------


def test_s1_s6_created_token_resolves_to_its_principal(path: Path, clock: FixedClock) -> None:
    token, entry = tokens.create(path, "console", "alice", role="ADMINISTRATOR", now=T0)
    assert token.startswith("ks_console_") and len(token) == len("ks_console_") + 43
    assert entry["id"].startswith("tok_") and len(entry["id"]) == 16
    assert entry["created"] == "2026-12-03T10:00:00Z" and entry["expires"] is None
    found = TokenFile.load(path, clock).resolve(token)
    assert found == Principal(kind="console", name="alice", role="ADMINISTRATOR")
    assert TokenFile.load(path, clock).resolve(token + "x") is None


def test_s6_the_file_holds_the_hash_never_the_token(path: Path) -> None:
    token, entry = tokens.create(path, "provider", "acme-shop", now=T0)
    raw = path.read_text()
    body = token.removeprefix("ks_provider_")
    assert token not in raw and body not in raw
    assert entry["sha256"] == hash_token(token) and entry["sha256"] in raw
    assert tokens.entries(path) == [entry]


def test_s6_no_path_means_no_static_principals() -> None:
    assert TokenFile.load(None).resolve("anything") is None
    assert TokenFile.load("").reload() is True


def test_s6_create_refuses_a_bad_kind_name_or_expiry(path: Path) -> None:
    for kwargs in (
        {"kind": "admin", "name": "x"},
        {"kind": "portal", "name": ""},
        {"kind": "portal", "name": "x", "expires": T0},  # not later than now
        {"kind": "portal", "name": "x", "expires": datetime(2027, 1, 1)},  # naive
    ):
        with pytest.raises(ValueError):
            tokens.create(path, now=T0, **kwargs)
    assert not path.exists()


# --- revocation without restart -------------------------------------------------------


def test_s6_revoke_is_refused_on_the_next_call_without_reload(
    path: Path, clock: FixedClock
) -> None:
    keep, _ = tokens.create(path, "portal", "portal", now=T0)
    gone, entry = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    assert resolver.resolve(gone) is not None
    assert tokens.revoke(path, entry["id"]) == 1
    assert resolver.resolve(gone) is None  # no reload(), no restart, no TTL
    assert resolver.resolve(keep) == Principal(kind="portal", name="portal")


def test_s6_revoke_by_name_revokes_every_token_of_that_name(path: Path, clock: FixedClock) -> None:
    old, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    new, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    other, _ = tokens.create(path, "provider", "other-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    assert tokens.revoke(path, "acme-shop") == 2
    assert tokens.revoke(path, "acme-shop") == 0
    assert [resolver.resolve(t) for t in (old, new)] == [None, None]
    assert resolver.resolve(other) is not None


def test_s6_rotation_new_token_first_then_revoke_old(path: Path, clock: FixedClock) -> None:
    old, old_entry = tokens.create(path, "peer", "device-service", now=T0)
    resolver = TokenFile.load(path, clock)
    new, _ = tokens.create(path, "peer", "device-service", now=T0)
    assert resolver.resolve(old) is not None and resolver.resolve(new) is not None
    tokens.revoke(path, old_entry["id"])
    assert resolver.resolve(old) is None and resolver.resolve(new) is not None


def test_s6_replaced_file_is_noticed_by_its_inode_within_one_mtime_tick(
    path: Path, clock: FixedClock
) -> None:
    # Coarse file-system clocks give two quick writes the same mtime; os.replace
    # gives the file a new inode, which the stat on each call sees.
    old, entry = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    assert resolver.resolve(old) is not None
    new = "ks_provider_" + "B" * 43
    document = json.loads(path.read_text())
    document["tokens"][0]["sha256"] = hash_token(new)
    before = path.stat()
    replace_keeping_mtime(path, json.dumps(document, indent=2) + "\n")
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert after.st_ino != before.st_ino
    assert resolver.resolve(old) is None
    assert resolver.resolve(new) == Principal(kind="provider", name="acme-shop")


def test_s6_every_write_moves_the_signature_forward(path: Path) -> None:
    # mtime only goes up across writes, so a reused inode cannot bring back a
    # signature a resolver saw, however fast the writes come.
    _, entry = tokens.create(path, "provider", "a", now=T0)
    seen = [file_signature(path)]
    for _ in range(5):
        tokens.create(path, "provider", "b", now=T0)
        seen.append(file_signature(path))
        tokens.revoke(path, "b")
        seen.append(file_signature(path))
    assert len(set(seen)) == len(seen)
    mtimes = [s[1] for s in seen]
    assert mtimes == sorted(mtimes) and len(set(mtimes)) == len(mtimes)
    # Even past a file whose mtime is ahead of the clock (a tick not yet reached).
    ahead = path.stat().st_mtime_ns + 3600 * 10**9
    os.utime(path, ns=(ahead, ahead))
    tokens.revoke(path, entry["id"])
    assert path.stat().st_mtime_ns > ahead


def test_s6_reload_reads_an_in_place_edit_the_stat_cannot_see(
    path: Path, clock: FixedClock
) -> None:
    # An edit keeping inode, size and mtime tick is what SIGHUP (reload) is for.
    token, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    before = path.stat()
    path.write_text(path.read_text().replace("acme-shop", "acme-shoq"))  # same inode, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert resolver.resolve(token) == Principal(kind="provider", name="acme-shop")
    assert resolver.reload() is True
    assert resolver.resolve(token) == Principal(kind="provider", name="acme-shoq")


def test_s6_resolve_during_revoke_from_many_threads_never_sees_a_revoked_token(
    path: Path, clock: FixedClock
) -> None:
    token, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    revoked = threading.Event()
    late_hits: list[Principal] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(2000):
                was_revoked = revoked.is_set()  # read before resolving
                found = resolver.resolve(token)
                if was_revoked and found is not None:
                    late_hits.append(found)
        except BaseException as err:  # surfaced below, not lost in the thread
            failures.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    tokens.revoke(path, "acme-shop")
    revoked.set()
    for thread in threads:
        thread.join()
    assert failures == [] and late_hits == []


# --- expiry -------------------------------------------------------------------------------


def test_s6_expired_token_is_refused_from_its_expiry_on(path: Path, clock: FixedClock) -> None:
    expires = T0 + timedelta(days=30)
    token, entry = tokens.create(path, "provider", "acme-shop", expires=expires, now=T0)
    assert entry["expires"] == "2027-01-02T10:00:00Z"
    resolver = TokenFile.load(path, clock)
    clock.set(expires - timedelta(seconds=1))
    assert resolver.resolve(token) is not None
    clock.set(expires)
    assert resolver.resolve(token) is None
    clock.set(expires + timedelta(days=1))
    assert resolver.resolve(token) is None
    assert tokens.state(entry, expires) == "expired"
    assert tokens.state(entry, T0) == "active"


# --- malformed files ---------------------------------------------------------------------


def good_entry() -> dict[str, object]:
    return {
        "id": "tok_0123456789ab",
        "sha256": hash_token("ks_provider_" + "A" * 43),
        "kind": "provider",
        "name": "acme-shop",
        "role": "",
        "created": "2026-12-03T10:00:00Z",
        "expires": None,
    }


def document(**changes: object) -> str:
    entry = {**good_entry(), **changes}
    return json.dumps({"version": 2, "tokens": [{k: v for k, v in entry.items() if v != "-"}]})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"version": 2, "tokens": {}}', "must be a JSON object"),
        ('{"version": 3, "tokens": []}', "version 3 is not supported"),
        ('{"version": 2, "tokens": [], "extra": 1}', "unknown field 'extra'"),
        ('{"version": 2, "tokens": [1]}', "tokens[0] must be an object"),
        (document(sha256="-"), "tokens[0] has no 'sha256'"),
        (document(expires="-"), "tokens[0] has no 'expires'"),
        (document(expire=None), "tokens[0] has an unknown field 'expire'"),
        (document(kind="admin"), "tokens[0].kind must be one of provider, portal"),
        (document(id="tok_XYZ"), "tokens[0].id must be"),
        (document(sha256="ABC"), "tokens[0].sha256 must be 64 lowercase hex digits"),
        (document(name=""), "tokens[0].name must be a non-empty string"),
        (document(created="yesterday"), "tokens[0].created must be an RFC 3339 time"),
        (document(expires="2027-01-01T00:00:00"), "tokens[0].expires must be an RFC 3339 time"),
        (document(token="x" * 20), 'tokens[0] holds a plaintext "token"'),
    ],
)
def test_s6_malformed_file_at_load_is_a_config_error_naming_file_and_field(
    path: Path, text: str, problem: str
) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        TokenFile.load(path)
    assert caught.value.path == str(path)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: ")


def test_s6_repeated_id_or_hash_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    entry = good_entry()
    path.write_text(json.dumps({"version": 2, "tokens": [entry, entry]}))
    with pytest.raises(ConfigError, match=r"tokens\[1\]\.id repeats tokens\[0\]\.id"):
        TokenFile.load(path)


def test_s6_missing_file_at_load_is_a_config_error(path: Path) -> None:
    with pytest.raises(ConfigError, match="tokens file not found"):
        TokenFile.load(path)


def test_s6_a_problem_never_quotes_a_token_pasted_in_the_wrong_field(
    path: Path, clock: FixedClock, auth_log: pytest.LogCaptureFixture
) -> None:
    secret = "ks_provider_" + "S" * 43
    path.parent.mkdir(parents=True)
    path.write_text(document(sha256=secret))
    with pytest.raises(ConfigError) as caught:
        TokenFile.load(path)
    assert secret not in str(caught.value)
    path.write_text(document())
    resolver = TokenFile.load(path, clock)
    path.write_text(document(kind=secret))
    resolver.resolve("x")
    assert len(errors(auth_log)) == 1 and secret not in auth_log.text


def test_s6_plaintext_v1_file_is_refused_with_the_migrate_command(path: Path) -> None:
    v1(path, [{"token": "dev-provider-0123456789abcdef", "kind": "provider", "name": "a"}])
    with pytest.raises(ConfigError) as caught:
        TokenFile.load(path)
    assert f"python -m keyslot_server.tokens --file {path} migrate" in caught.value.problem
    assert "dev-provider-0123456789abcdef" not in str(caught.value)
    with pytest.raises(ConfigError, match="migrate"):
        tokens.create(path, "portal", "portal", now=T0)  # nor written over


def test_s6_malformed_file_at_reload_keeps_old_entries_and_logs_one_line(
    path: Path, clock: FixedClock, auth_log: pytest.LogCaptureFixture
) -> None:
    token, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    path.write_text('{"version": 2, "tokens": [')  # a hand edit, half done
    for _ in range(5):
        assert resolver.resolve(token) == Principal(kind="provider", name="acme-shop")
    assert len(errors(auth_log)) == 1
    assert str(path) in errors(auth_log)[0] and "keeping the 1 tokens" in errors(auth_log)[0]
    assert resolver.reload() is False  # SIGHUP on a bad file: refused, old entries kept
    assert resolver.resolve(token) is not None
    path.write_text(document())  # the edit finished: the file's own entries now
    assert resolver.resolve(token) is None
    assert resolver.resolve("ks_provider_" + "A" * 43) is not None


def test_s6_vanished_file_means_no_static_principals_until_it_is_back(
    path: Path, clock: FixedClock, auth_log: pytest.LogCaptureFixture
) -> None:
    token, _ = tokens.create(path, "provider", "acme-shop", now=T0)
    resolver = TokenFile.load(path, clock)
    saved = path.read_bytes()
    path.unlink()
    assert resolver.resolve(token) is None
    assert resolver.resolve(token) is None
    assert resolver.reload() is True
    assert len(errors(auth_log)) == 1 and "is gone" in errors(auth_log)[0]
    path.write_bytes(saved)
    assert resolver.resolve(token) is not None


# --- migrate -------------------------------------------------------------------------------


def test_s6_migrate_hashes_a_v1_file_in_place_and_tokens_keep_resolving(
    path: Path, clock: FixedClock
) -> None:
    plain = {"provider": "dev-provider-0123456789abcdef", "console": "dev-console-0123456789abcd"}
    v1(
        path,
        [
            {"token": plain["provider"], "kind": "provider", "name": "dev-shop"},
            {"token": plain["console"], "kind": "console", "role": "ADMINISTRATOR"},
        ],
    )
    assert tokens.migrate(path, now=T0) == 2
    raw = path.read_text()
    assert all(t not in raw for t in plain.values())
    assert mode(path) == 0o600
    resolver = TokenFile.load(path, clock)
    assert resolver.resolve(plain["provider"]) == Principal(kind="provider", name="dev-shop")
    assert resolver.resolve(plain["console"]) == Principal(
        kind="console", name="console", role="ADMINISTRATOR"
    )
    assert [e["created"] for e in tokens.entries(path)] == ["2026-12-03T10:00:00Z"] * 2
    assert tokens.migrate(path) == 0  # already version 2: left alone
    assert path.read_text() == raw


def test_s6_migrate_refuses_a_bad_v1_entry_without_quoting_it(path: Path) -> None:
    v1(path, [{"token": "short", "kind": "provider"}])
    with pytest.raises(ConfigError, match=r"tokens\[0\]\.token must be") as caught:
        tokens.migrate(path)
    assert "short" not in caught.value.problem.replace("at least", "")


# --- concurrent writers and file modes ---------------------------------------------------


def test_s6_concurrent_creates_lose_no_entry(path: Path, clock: FixedClock) -> None:
    made: list[str] = []

    def worker() -> None:
        for _ in range(10):
            made.append(tokens.create(path, "provider", "acme-shop", now=T0)[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens.entries(path)) == len(made) == 80
    resolver = TokenFile.load(path, clock)
    assert all(resolver.resolve(t) is not None for t in made)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_s6_files_are_0600_in_a_0700_directory(path: Path, tmp_path: Path) -> None:
    tokens.create(path, "provider", "acme-shop", now=T0)
    tokens.revoke(path, "acme-shop")
    credentials = tmp_path / "client" / "credentials.json"
    tokens.save_credential(credentials, "provider", "ks_provider_x")
    lock = path.with_name("tokens.json.lock")
    assert [mode(p) for p in (path, lock, credentials)] == [0o600] * 3
    assert mode(path.parent) == mode(credentials.parent) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]


def test_s6_credentials_are_saved_and_read_by_key(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    tokens.save_credential(credentials, "provider", "p1")
    tokens.save_credential(credentials, "peer", "q1")
    tokens.save_credential(credentials, "provider", "p2")
    assert json.loads(credentials.read_text()) == {"peer": "q1", "provider": "p2"}
    assert tokens.read_credential(credentials, "provider") == "p2"
    with pytest.raises(ConfigError, match=r"no credential 'portal' .*\(it has: peer, provider\)"):
        tokens.read_credential(credentials, "portal")
    with pytest.raises(ConfigError, match="credentials file not found"):
        tokens.read_credential(tmp_path / "none.json", "provider")
    credentials.write_text('{"provider": 1}')
    with pytest.raises(ConfigError, match="must be a JSON object"):
        tokens.save_credential(credentials, "portal", "x")


# --- the command line ---------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSLOT_")}
    return subprocess.run(
        [sys.executable, "-m", "keyslot_server.tokens", *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_s6_cli_create_list_revoke_round_trip(path: Path, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    made = cli(
        *("--file", str(path), "create", "--kind", "console", "--name", "alice"),
        *("--role", "ADMINISTRATOR", "--expires-in-days", "30"),
        *("--save-to", str(credentials), "--as", "console-admin"),
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("ks_console_")
    assert "will not be shown again" in made.stderr and token not in made.stderr
    assert len(made.stderr.strip().splitlines()) == 1
    assert tokens.read_credential(credentials, "console-admin") == token
    [entry] = tokens.entries(path)

    listed = cli("--file", str(path), "list")
    assert listed.returncode == 0, listed.stderr
    assert all(len(line) <= 100 for line in listed.stdout.splitlines())
    for shown in (entry["id"], "console", "alice", "ADMINISTRATOR", "active"):
        assert shown in listed.stdout
    for secret in (token, token.removeprefix("ks_console_"), entry["sha256"]):
        assert secret not in listed.stdout

    revoked = cli("--file", str(path), "revoke", entry["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert tokens.entries(path) == []


def test_s6_cli_list_json_shows_state_and_no_hash(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, entry = tokens.create(path, "provider", "acme-shop", now=T0)
    assert tokens.main(["--file", str(path), "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {k: v for k, v in entry.items() if k != "sha256"} | {"state": "active"}


def test_s6_cli_nothing_matched_exits_1_and_config_errors_exit_2(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens.create(path, "provider", "acme-shop", now=T0)
    assert tokens.main(["--file", str(path), "revoke", "nobody"]) == 1
    assert "nothing matched" in capsys.readouterr().err
    path.write_text("{")
    assert tokens.main(["--file", str(path), "list"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: tokens file is not JSON") and err.count("\n") == 1
    v1(path, [{"token": "dev-provider-0123456789abcdef", "kind": "provider"}])
    assert tokens.main(["--file", str(path), "migrate"]) == 0
    assert "1 plaintext token hashed" in capsys.readouterr().out
