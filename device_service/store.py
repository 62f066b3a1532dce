"""The device service's SQLite store: schema and transactions (sqlite-utils).

Every multi-row change runs in ONE ``with self.write()`` (BEGIN IMMEDIATE)
transaction, so the D3 slot count and the row it guards are written under
the same write lock.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import sqlite_utils

from device_service import pg_schema, rules
from device_service.check_in_cache import WATCHED, CheckInCache, CheckInView
from device_service.errors import DeviceError
from keyslot_server import formats, migrations
from keyslot_server.auth import Principal, hash_token
from keyslot_server.budget import create_table as create_failure_table
from keyslot_server.db import Database, unit  # unit: also for the use cases (handshake)
from keyslot_server.migrations import Migration, migrate
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.requests import create_table as create_request_table
from keyslot_server.retention import HISTORY, Prune, request_log_rule

# Slot states (D3). RELEASED slots are history and never counted.
PENDING, ACTIVE, RELEASED = "PENDING", "ACTIVE", "RELEASED"

Row = dict[str, Any]
T = TypeVar("T")

# Resolved credentials kept in memory (about 300 B each); emptied when full.
PRINCIPAL_CACHE_SIZE = 50_000
# Check-in views kept in memory (about 4 KB each, see check_in_cache); emptied when full.
CHECK_IN_CACHE_SIZE = 10_000


def new_id(prefix: str) -> str:
    """A random id with a readable prefix (128 bits)."""
    return f"{prefix}_{secrets.token_hex(16)}"


# The devices table's columns, as the last migration leaves them (test_migrations checks).
DEVICE_COLUMNS = frozenset(
    {
        "device_id",
        "account_id",
        "platform",
        "app_version",
        "region",
        "display_name",
        "current_code",
        "connect_us",
        "update_us",
        "disconnect_us",
        "last_check_in_us",
    }
)


# --- schema: versioned migrations (keyslot_server.migrations) ------------------------------
# Each version is history: never edit a released one; a change is a new version at the end.
# Versions 1-3 predate the migrations table: each finds its work done on a database of a
# release that already had it (IF NOT EXISTS, a column added only when missing).


def _v1_baseline(db: sqlite_utils.Database) -> None:
    """The schema as it stood at 235f001; a file older still also gets subscriptions.per_user
    (D11), as 235f001 gave it at start."""
    db["accounts"].create(
        {"account_id": str, "display_name": str, "kind": int, "create_us": int},
        pk="account_id",
        not_null={"display_name", "kind", "create_us"},
        if_not_exists=True,
    )
    # Issued credentials, by SHA-256 of the token only (S1).
    db["credentials"].create(
        {
            "token_hash": str,
            "kind": str,  # account | member | device
            "account_id": str,
            "member_id": str,
            "device_id": str,
            "role": str,
            "create_us": int,
        },
        pk="token_hash",
        not_null={"kind", "account_id", "create_us"},
        if_not_exists=True,
    )
    db["members"].create(
        {
            "member_id": str,
            "account_id": str,
            "display_name": str,
            "role": int,
            "create_us": int,
        },
        pk="member_id",
        not_null={"account_id", "display_name", "role", "create_us"},
        if_not_exists=True,
    )
    # per_user: a per-user code (D11), holding a slot for the account itself.
    db["subscriptions"].create(
        {"account_id": str, "code": str, "add_us": int, "per_user": int},
        pk=("account_id", "code"),
        not_null={"add_us"},
        defaults={"per_user": 0},
        if_not_exists=True,
    )
    if "per_user" not in db["subscriptions"].columns_dict:  # a file from before D11
        db["subscriptions"].add_column("per_user", int, not_null_default=0)
    # Connection codes are credentials too: stored by hash (D1).
    db["connection_codes"].create(
        {
            "code_hash": str,
            "account_id": str,
            "create_us": int,
            "expire_us": int,
            "used_us": int,
            "device_id": str,
        },
        pk="code_hash",
        not_null={"account_id", "create_us", "expire_us"},
        if_not_exists=True,
    )
    db["devices"].create(
        {
            "device_id": str,
            "account_id": str,
            "platform": int,
            "app_version": str,
            "region": str,
            "display_name": str,
            "current_code": str,
            "connect_us": int,
            "update_us": int,
            "disconnect_us": int,
            "last_check_in_us": int,
        },
        pk="device_id",
        not_null={"account_id", "platform", "app_version", "region", "display_name"},
        defaults={"current_code": ""},
        if_not_exists=True,
    )
    db["slots"].create(
        {
            "slot_id": str,
            "code": str,
            "device_id": str,
            "state": str,
            "state_us": int,
            "handshake_id": str,
        },
        pk="slot_id",
        not_null={"code", "device_id", "state", "state_us"},
        if_not_exists=True,
    )
    db["deliveries"].create(
        {
            "delivery_id": str,
            "account_id": str,
            "device_id": str,
            "code": str,
            "state": str,
            "failure_reason": str,
            "grant_id": str,
            "handshake_id": str,
            "create_us": int,
            "expire_us": int,
            "end_us": int,
        },
        pk="delivery_id",
        not_null={"account_id", "device_id", "code", "state", "create_us", "expire_us"},
        defaults={"failure_reason": "", "grant_id": ""},
        if_not_exists=True,
    )
    # Handshake intent rows (H4): written before each remote step.
    db["handshakes"].create(
        {
            "handshake_id": str,
            "purpose": str,  # ACTIVATE | SEND | RESERVE
            "step": str,  # PREPARING .. COMMITTED | ABORTED
            "code": str,
            "device_id": str,
            "account_id": str,
            "app_version": str,
            "region": str,
            "current_code": str,
            "caller_channel": str,
            "caller_role": str,
            "grant_id": str,
            "grant_expire_us": int,
            "deadline_us": int,  # a PREPARED row past it is aborted (delivery window)
            "owner_id": str,  # the delivery (or reserve) this handshake drives
            "outcome": str,  # what the owner becomes when aborted
            "failure_reason": str,
            "failure_message": str,
            "create_us": int,
            "update_us": int,
        },
        pk="handshake_id",
        not_null={"purpose", "step", "code", "device_id", "create_us", "update_us"},
        defaults={"grant_id": "", "owner_id": "", "outcome": "", "failure_reason": ""},
        if_not_exists=True,
    )
    # The first answer per target of an idempotent call (H1): keyslot_server.requests.
    create_request_table(db, "request_outcomes")
    db["outbox"].create(
        {
            "message_id": str,
            "account_id": str,
            "email": str,
            "subject": str,
            "body": str,
            "link_token": str,
            "link_expire_us": int,
            "create_us": int,
        },
        pk="message_id",
        not_null={"account_id", "email", "create_us"},
        if_not_exists=True,
    )
    # Reserve codes (D8-D10): one RESERVE handshake each; no slot while waiting.
    db["reserves"].create(
        {
            "reserve_id": str,
            "device_id": str,
            "account_id": str,
            "code": str,
            "state": str,  # WAITING | ACTIVATED | FAILED | REMOVED
            "failure_reason": str,
            "failure_message": str,
            "handshake_id": str,  # the RESERVE handshake now carrying it
            "grant_id": str,
            "max_devices": int,
            "takeover_us": int,  # when the sweeper looks at it next (NULL: at once)
            "add_us": int,
            "state_us": int,
        },
        pk="reserve_id",
        not_null={"device_id", "code", "state", "add_us", "state_us"},
        defaults={"failure_reason": "", "failure_message": "", "grant_id": ""},
        if_not_exists=True,
    )
    ddl = [
        # At most one live (waiting or failed) reserve per device (D8).
        "CREATE UNIQUE INDEX IF NOT EXISTS reserves_one_live ON reserves(device_id)"
        " WHERE state IN ('WAITING', 'FAILED')",
        "CREATE INDEX IF NOT EXISTS reserves_due ON reserves(state, takeover_us)",
        # A device's reserves in any state: the shown reserve (check-in, license
        # details) may be an ACTIVATED one, which reserves_one_live does not hold.
        "CREATE INDEX IF NOT EXISTS reserves_device ON reserves(device_id, state)",
        "CREATE INDEX IF NOT EXISTS slots_code_state ON slots(code, state)",
        "CREATE INDEX IF NOT EXISTS slots_device_state ON slots(device_id, state)",
        "CREATE INDEX IF NOT EXISTS slots_handshake ON slots(handshake_id)",
        # One held slot per (code, device): a device never counts twice (D3).
        "CREATE UNIQUE INDEX IF NOT EXISTS slots_one_held ON slots(code, device_id)"
        " WHERE state != 'RELEASED'",
        "CREATE INDEX IF NOT EXISTS devices_account ON devices(account_id, connect_us)",
        # The listings' keyset pages (_page): an index on the filter, then the sort key.
        "CREATE INDEX IF NOT EXISTS devices_connected ON devices(account_id, connect_us,"
        " device_id) WHERE disconnect_us IS NULL",
        "CREATE INDEX IF NOT EXISTS subscriptions_added ON subscriptions(account_id, add_us, code)",
        "CREATE INDEX IF NOT EXISTS deliveries_device_create ON deliveries(device_id, create_us)",
        "CREATE INDEX IF NOT EXISTS deliveries_account ON deliveries(account_id, create_us)",
        "CREATE INDEX IF NOT EXISTS deliveries_device ON deliveries(device_id, state)",
        "CREATE INDEX IF NOT EXISTS deliveries_code ON deliveries(code, account_id)",
        "CREATE INDEX IF NOT EXISTS handshakes_step ON handshakes(step)",
        "CREATE INDEX IF NOT EXISTS credentials_device ON credentials(device_id)",
        "CREATE INDEX IF NOT EXISTS outbox_create ON outbox(create_us)",
        # The download-link limits (D2) count an account's and an address's latest mails.
        "CREATE INDEX IF NOT EXISTS outbox_account ON outbox(account_id, create_us)",
        "CREATE INDEX IF NOT EXISTS outbox_email ON outbox(lower(email), create_us)",
    ]
    for statement in ddl:
        db.execute(statement)
    create_failure_table(db)  # S3 (keyslot_server.budget): connection-code redemptions
    # Retention: the indexes that make each prune a search, never a scan of the table.
    for statement in (
        "CREATE INDEX IF NOT EXISTS handshakes_finished ON handshakes(update_us)"
        " WHERE step IN ('COMMITTED', 'ABORTED')",
        "CREATE INDEX IF NOT EXISTS slots_released ON slots(state_us) WHERE state = 'RELEASED'",
        "CREATE INDEX IF NOT EXISTS deliveries_ended ON deliveries(end_us)"
        " WHERE end_us IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS reserves_state_time ON reserves(state, state_us)",
        "CREATE INDEX IF NOT EXISTS connection_codes_expire ON connection_codes(expire_us)",
        "CREATE INDEX IF NOT EXISTS outbox_gone ON outbox(COALESCE(link_expire_us, create_us))",
    ):
        db.execute(statement)


def _v2_handshake_traceparent(db: sqlite_utils.Database) -> None:
    """The W3C traceparent of the call that began a handshake: later steps log in its trace."""
    if "traceparent" not in db["handshakes"].columns_dict:
        db["handshakes"].add_column("traceparent", str, not_null_default="")


def _v3_pending_deliveries_index(db: sqlite_utils.Database) -> None:
    """Counts the pending deliveries (pending_deliveries) without reading the history."""
    db.execute(
        "CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(state) WHERE state = 'PENDING'"
    )


# The device database's schema, version by version (README "Upgrades").
MIGRATIONS = (
    Migration(1, "baseline: the schema of 235f001", _v1_baseline, pg_schema.BASELINE),
    Migration(
        2,
        "handshakes.traceparent",
        _v2_handshake_traceparent,
        ("ALTER TABLE handshakes ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        3,
        "index deliveries_pending",
        _v3_pending_deliveries_index,
        ("CREATE INDEX deliveries_pending ON deliveries(state) WHERE state = 'PENDING'",),
    ),
)


class DeviceStore(Database):
    """Accounts, devices, slots, deliveries and reserves in one SQLite file."""

    def __init__(
        self,
        path: str,
        synchronous: str = "FULL",
        check_in_cache_size: int = CHECK_IN_CACHE_SIZE,
        observer: Observer = NOBODY,
        units: int = 1,
    ) -> None:
        super().__init__(path, synchronous, observer, units=units)
        migrate(self, MIGRATIONS)  # creates or upgrades the schema; refuses a newer one
        self.check_ins = CheckInCache(check_in_cache_size)
        if check_in_cache_size > 0:
            self.watch_changes(WATCHED, self.check_ins.changed)
        # Resolved credentials by token hash: every call authenticates, and this
        # process is the only writer of credentials (see revoke_device_credentials).
        self._principals: dict[str, Principal] = {}
        self._principals_generation = 0
        self._principals_lock = threading.Lock()
        self._check_in_sql: str | None = None

    # --- credentials (S1) ---------------------------------------------------------

    @unit
    def add_credential(
        self,
        token: str,
        kind: str,
        account_id: str,
        now_us: int,
        *,
        member_id: str = "",
        device_id: str = "",
        role: str = "",
    ) -> None:
        """Stores an issued credential by its hash; the token itself is never stored."""
        with self.write() as db:
            db["credentials"].insert(
                {
                    "token_hash": hash_token(token),
                    "kind": kind,
                    "account_id": account_id,
                    "member_id": member_id,
                    "device_id": device_id,
                    "role": role,
                    "create_us": now_us,
                }
            )

    def resolve_credential(self, token: str) -> Principal | None:
        """Account, member and device credentials issued by this service (by hash).

        A token shaped like a connection code resolves to the "connection"
        principal, which may call ConnectDevice only: the code is the app's
        credential until it has its own (D1). Whether the code exists, is
        used or expired is ConnectDevice's answer, not UNAUTHENTICATED.
        """
        # Issued tokens have a "prefix_": never a connection code, no need to parse.
        if "_" not in token and rules.normalize_connection_code(token) is not None:
            return Principal(kind="connection", name="connection-code")
        # Looking up the hash makes the comparison independent of the token's bytes.
        token_hash = hash_token(token)
        cached = self._principals.get(token_hash)
        if cached is not None:
            return cached
        generation = self._principals_generation
        principal = self._principal_of(
            self.one("SELECT * FROM credentials WHERE token_hash = ?", (token_hash,))
        )
        with self._principals_lock:
            # Not cached if a revocation committed since the read began.
            if principal is not None and generation == self._principals_generation:
                if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                    self._principals.clear()
                self._principals[token_hash] = principal
        return principal

    @unit
    def revoke_device_credentials(self, device_id: str) -> None:
        """Deletes a device's credentials; call inside ``write()``.

        Once the write commits, the cache of resolved credentials is emptied, so
        the token fails from the next call on.
        """
        with self.write() as db:
            db.execute("DELETE FROM credentials WHERE device_id = ?", (device_id,))
            self.on_commit(self._forget_principals)

    def _forget_principals(self) -> None:
        with self._principals_lock:
            self._principals_generation += 1
            self._principals.clear()

    @staticmethod
    def _principal_of(row: Row | None) -> Principal | None:
        if row is None:
            return None
        if row["kind"] == "account":
            return Principal(
                kind="portal", name=f"account:{row['account_id']}", account_id=row["account_id"]
            )
        if row["kind"] == "member":
            return Principal(
                kind="console",
                name=f"member:{row['member_id']}",
                role=row["role"],
                account_id=row["account_id"],
                member_id=row["member_id"],
            )
        if row["kind"] == "device":
            return Principal(
                kind="device",
                name=f"device:{row['device_id']}",
                account_id=row["account_id"],
                device_id=row["device_id"],
            )
        return None

    # --- accounts, members and connection codes (D1) ------------------------------------

    @unit
    def create_account(
        self, account_id: str, display_name: str, kind: int, token: str, now_us: int
    ) -> Row:
        """An account and its credential, in one write; returns the account."""
        with self.write() as db:
            db["accounts"].insert(
                {
                    "account_id": account_id,
                    "display_name": display_name,
                    "kind": kind,
                    "create_us": now_us,
                }
            )
            self.add_credential(token, "account", account_id, now_us)
        row = self.account(account_id)
        assert row is not None
        return row

    @unit
    def add_member(self, member: Row, token: str, role_name: str) -> Row:
        """A console member and its credential, in one write; returns the member."""
        with self.write() as db:
            db["members"].insert(member)
            self.add_credential(
                token,
                "member",
                member["account_id"],
                member["create_us"],
                member_id=member["member_id"],
                role=role_name,
            )
        row = self.member(member["member_id"])
        assert row is not None
        return row

    def member(self, member_id: str) -> Row | None:
        return self.one("SELECT * FROM members WHERE member_id = ?", (member_id,))

    @unit
    def create_connection_code(
        self, code_hash: str, account_id: str, create_us: int, expire_us: int
    ) -> None:
        """Stores a connection code by its hash (D1)."""
        with self.write() as db:
            db["connection_codes"].insert(
                {
                    "code_hash": code_hash,
                    "account_id": account_id,
                    "create_us": create_us,
                    "expire_us": expire_us,
                    "used_us": None,
                    "device_id": None,
                }
            )

    def connection_code(self, code_hash: str) -> Row | None:
        return self.one("SELECT * FROM connection_codes WHERE code_hash = ?", (code_hash,))

    @unit
    def connect_device(
        self,
        code_hash: str,
        device: Row,
        token: str,
        now_us: int,
        check: Callable[[Row | None], None],
    ) -> Row:
        """Uses a connection code for a new device and issues its credential, in one write.

        ``check`` refuses the code as read under the write lock (unknown, used,
        expired); the device joins the code's account. Returns the device.
        """
        with self.write() as db:
            code = self.connection_code(code_hash)
            check(code)
            assert code is not None
            device_id = device["device_id"]
            db["connection_codes"].update(code_hash, {"used_us": now_us, "device_id": device_id})
            db["devices"].insert({**device, "account_id": code["account_id"]})
            self.add_credential(token, "device", code["account_id"], now_us, device_id=device_id)
        row = self.device(device_id)
        assert row is not None
        return row

    @unit
    def disconnect_device(
        self, device_id: str, now_us: int, fence: Callable[[], list[str]]
    ) -> list[str]:
        """Disconnects a device in one write (the D3 fence); returns what ``fence`` returns.

        Inside the transaction that sets disconnect_time: every slot of the
        device is released, ``fence`` runs (the handshakes' and the reserve's
        part), and the device's credentials stop working. A concurrent
        disconnect that won leaves nothing to do ([]).
        """
        with self.write() as db:
            device = self.device(device_id)
            if device is None or device["disconnect_us"] is not None:
                return []
            db["devices"].update(
                device_id, {"disconnect_us": now_us, "update_us": now_us, "current_code": ""}
            )
            self.set_slot_state("device_id = ?", (device_id,), RELEASED, now_us)
            decided = fence()
            self.revoke_device_credentials(device_id)
        return decided

    @unit
    def count_failures(self, charges: list[Callable[[], T]]) -> list[T]:
        """Charges failure budgets (keyslot_server.budget) in one write: an unknown
        connection code counts on every budget or on none (S3)."""
        with self.write():
            return [charge() for charge in charges]

    # --- listings (keyset pages: a token carries the last row's sort key) ---------------

    def _page(
        self,
        listing: str,
        table: str,
        where: str,
        params: tuple,  # type: ignore[type-arg]
        order: tuple[tuple[str, type], ...],
        page_size: int,
        page_token: str,
        *,
        descending: bool = False,
    ) -> tuple[list[Row], str]:
        """One page of ``table``'s rows matching ``where``, in ``order`` (its columns, unique
        together, and their types), starting after the row the token names.

        A keyset page: an index search from the last key, never an OFFSET scan, and rows
        inserted between two pages shift no row into or out of the next one.
        """
        size, after = rules.page(page_size, page_token, tuple(t for _, t in order), listing)
        columns = [c for c, _ in order]
        if after is not None:
            compare = "<" if descending else ">"
            where += f" AND ({', '.join(columns)}) {compare} ({', '.join('?' * len(columns))})"
            params = (*params, *after)
        direction = " DESC" if descending else ""
        by = ", ".join(c + direction for c in columns)
        extra = ", rowid" if "rowid" in columns else ""  # "*" leaves rowid out
        rows = self.query(
            f"SELECT *{extra} FROM {table} WHERE {where} ORDER BY {by} LIMIT ?",
            (*params, size + 1),
        )
        more, rows = len(rows) > size, rows[:size]
        last = tuple(rows[-1][c] for c in columns) if more else ()
        token = formats.encode_page_token(last, listing) if more else ""
        for row in rows if extra else ():
            del row["rowid"]
        return rows, token

    def list_devices(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[Row], str]:
        """The account's connected devices, the first connected first."""
        return self._page(
            "devices",
            "devices",
            "account_id = ? AND disconnect_us IS NULL",
            (account_id,),
            (("connect_us", int), ("device_id", str)),
            page_size,
            page_token,
        )

    def list_subscriptions(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[Row], str]:
        """The account's subscriptions, the first added first."""
        return self._page(
            "subscriptions",
            "subscriptions",
            "account_id = ?",
            (account_id,),
            (("add_us", int), ("code", str)),
            page_size,
            page_token,
        )

    def list_deliveries(
        self,
        *,
        account_id: str = "",
        device_id: str = "",
        state: str = "",
        page_size: int,
        page_token: str,
    ) -> tuple[list[Row], str]:
        """An account's or a device's deliveries (optionally in one state), newest first."""
        if account_id:
            where, params = "account_id = ?", (account_id,)
        else:
            where, params = "device_id = ?", (device_id,)
        if state:
            where += " AND state = ?"
            params += (state,)
        return self._page(
            "deliveries",
            "deliveries",
            where,
            params,
            (("create_us", int), ("rowid", int)),  # rowid: insertion order within a tick
            page_size,
            page_token,
            descending=True,
        )

    def list_outbox(self, page_size: int, page_token: str) -> tuple[list[Row], str]:
        """Every outgoing message, the oldest first."""
        return self._page(
            "outbox",
            "outbox",
            "1 = 1",
            (),
            (("create_us", int), ("rowid", int)),
            page_size,
            page_token,
        )

    # --- subscriptions -----------------------------------------------------------------

    @unit
    def add_subscription(self, account_id: str, code: str, now_us: int) -> bool:
        """Puts a code on the account; False when it is there already (read in the write)."""
        with self.write() as db:
            if self.subscription(account_id, code):
                return False
            db["subscriptions"].insert({"account_id": account_id, "code": code, "add_us": now_us})
        return True

    def subscription_devices(
        self, account_id: str, code: str
    ) -> list[tuple[Row, Row | None, Row | None]]:
        """The account's devices holding a slot of ``code`` or sent it: each with its
        latest slot and delivery of the code."""
        devices = self.query(
            "SELECT * FROM devices WHERE account_id = ? AND device_id IN ("
            " SELECT device_id FROM slots WHERE code = ? AND state != 'RELEASED'"
            " UNION SELECT device_id FROM deliveries WHERE code = ? AND account_id = ?)"
            " ORDER BY connect_us, device_id",
            (account_id, code, code, account_id),
        )
        out = []
        for d in devices:
            slot = self.one(
                "SELECT * FROM slots WHERE code = ? AND device_id = ?"
                " ORDER BY state = 'RELEASED', state_us DESC LIMIT 1",
                (code, d["device_id"]),
            )
            delivery = self.one(
                "SELECT * FROM deliveries WHERE code = ? AND device_id = ?"
                " ORDER BY create_us DESC, rowid DESC LIMIT 1",
                (code, d["device_id"]),
            )
            out.append((d, slot, delivery))
        return out

    def devices_without_code(self, account_id: str) -> list[Row]:
        """The account's connected devices with no current code of their own (D11)."""
        return self.query(
            "SELECT * FROM devices WHERE account_id = ? AND disconnect_us IS NULL"
            " AND current_code = '' ORDER BY connect_us, device_id",
            (account_id,),
        )

    @unit
    def remove_subscription(self, account_id: str, code: str, now_us: int) -> bool:
        """Takes a code off the account and frees the account's own slot of it (a
        per-user code, D11), in one write; False when the code was not on it."""
        with self.write() as db:
            if self.subscription(account_id, code) is None:
                return False
            db.execute(
                "DELETE FROM subscriptions WHERE account_id = ? AND code = ?", (account_id, code)
            )
            # Devices keep the codes they hold.
            self.set_slot_state("device_id = ? AND code = ?", (account_id, code), RELEASED, now_us)
        return True

    @unit
    def add_per_user_subscription(self, account_id: str, code: str, now_us: int) -> None:
        """Records a per-user code on the account (D11; inside its handshake's commit)."""
        with self.write() as db:
            db["subscriptions"].insert(
                {"account_id": account_id, "code": code, "add_us": now_us, "per_user": 1}
            )

    # --- deliveries (D4) -----------------------------------------------------------------

    @unit
    def insert_delivery(self, row: Row) -> None:
        with self.write() as db:
            db["deliveries"].insert(row)

    @unit
    def end_delivery(
        self, delivery_id: str, state: str, now_us: int, failure_reason: str | None = None
    ) -> None:
        """Moves a delivery to its end state (DELIVERED, CANCELLED, EXPIRED, FAILED)."""
        values: Row = {"state": state, "end_us": now_us}
        if failure_reason is not None:
            values["failure_reason"] = failure_reason
        with self.write() as db:
            db["deliveries"].update(delivery_id, values)

    # --- outgoing mail (D2) ---------------------------------------------------------------

    @unit
    def add_outbox_message(self, row: Row, check: Callable[[], None]) -> None:
        """Records a mail; ``check`` runs under the insert's write lock (the send limits),
        so parallel sends cannot both pass it."""
        with self.write() as db:
            check()
            db["outbox"].insert(row)

    # --- reads -----------------------------------------------------------------------

    def account(self, account_id: str) -> Row | None:
        return self.one("SELECT * FROM accounts WHERE account_id = ?", (account_id,))

    def require_account(self, account_id: str) -> None:
        """ACCOUNT_NOT_FOUND unless the account exists (read in the caller's write)."""
        if self.account(account_id) is None:
            raise DeviceError.not_found(
                "ACCOUNT_NOT_FOUND", "no such account", accountId=account_id
            )

    def account_codes(self, account_id: str) -> list[str]:
        """The account's per-user codes (D11), the first added first."""
        rows = self.query(
            "SELECT code FROM subscriptions WHERE account_id = ? AND per_user = 1"
            " ORDER BY add_us, code",
            (account_id,),
        )
        return [r["code"] for r in rows]

    def device(self, device_id: str) -> Row | None:
        return self.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))

    @unit
    def update_device(self, device_id: str, changes: Row) -> None:
        """Sets columns of one device in its own write (plain SQL: the hot path)."""
        columns = ", ".join(f"{name} = ?" for name in changes if name in DEVICE_COLUMNS)
        if len(changes) != columns.count("?"):
            raise ValueError(f"not device columns: {sorted(set(changes) - DEVICE_COLUMNS)}")
        with self.write():
            self.send(
                f"UPDATE devices SET {columns} WHERE device_id = ?",  # noqa: S608 - names checked
                (*changes.values(), device_id),
            )

    def delivery(self, delivery_id: str) -> Row | None:
        return self.one("SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,))

    def handshake(self, handshake_id: str) -> Row | None:
        return self.one("SELECT * FROM handshakes WHERE handshake_id = ?", (handshake_id,))

    def subscription(self, account_id: str, code: str) -> Row | None:
        return self.one(
            "SELECT * FROM subscriptions WHERE account_id = ? AND code = ?", (account_id, code)
        )

    def reserve(self, reserve_id: str) -> Row | None:
        return self.one("SELECT * FROM reserves WHERE reserve_id = ?", (reserve_id,))

    def live_reserve(self, device_id: str) -> Row | None:
        """The device's WAITING or FAILED reserve, if any (D8: at most one)."""
        return self.one(
            "SELECT * FROM reserves WHERE device_id = ? AND state IN ('WAITING', 'FAILED')",
            (device_id,),
        )

    def shown_reserve(self, device_id: str) -> Row | None:
        """The reserve the license details show: the live one, else the one now current."""
        return self.one(
            f"SELECT r.* FROM reserves r JOIN devices d USING (device_id) WHERE {_SHOWN_RESERVE}",
            (device_id,),
        )

    def check_in_view(self, device_id: str) -> CheckInView:
        """The device, its shown reserve and its PENDING deliveries, in one statement.

        A check-in needs all three. One statement instead of three matters
        under load: every SQLite call gives up the GIL and waits to get it
        back behind the other worker threads (the same three reads cost about
        37 us of CPU on one thread and about 150 us with 16 threads running).
        Outside ``write()`` the view comes from ``check_ins`` when kept there;
        inside, it is read on the write connection and never kept (it may
        show work that is not committed yet).
        """
        writing = self.in_write()
        if not writing:
            kept = self.check_ins.get(device_id)
            self.observer.cache_read("check_in", kept is not None, kept is None)
            if kept is not None:
                return kept
        generation = self.check_ins.generation
        if self._check_in_sql is None:
            self._check_in_sql = _check_in_sql(self)
        row = self.one(self._check_in_sql, (device_id,))
        if row is None:
            return CheckInView(None, None, [])
        reserve, pending = row.pop("_reserve"), row.pop("_pending")
        deliveries = sorted(json.loads(pending), key=lambda d: d["create_us"])
        view = CheckInView(row, json.loads(reserve) if reserve else None, deliveries)
        if not writing:
            self.check_ins.keep(device_id, view, generation)
        return view

    @unit
    def remove_current_code(self, device_id: str, now_us: int) -> None:
        """The device's current code goes and its ACTIVE slot with it, in one write.

        Read inside the write: a completion or take-over that committed another
        code since the caller looked is the one removed, never left holding a
        slot behind an empty current code (D3).
        """
        with self.write() as db:
            device = self.device(device_id)
            if device is None or not device["current_code"]:
                return
            self.set_slot_state(
                "device_id = ? AND code = ? AND state = 'ACTIVE'",
                (device_id, device["current_code"]),
                RELEASED,
                now_us,
            )
            db["devices"].update(device_id, {"current_code": "", "update_us": now_us})

    def holds(self, holder_id: str, code: str) -> bool:
        """Whether a device (or an account, D11) holds or is receiving a slot of ``code``."""
        return (
            self.one(
                "SELECT 1 AS held FROM slots"
                " WHERE code = ? AND device_id = ? AND state != 'RELEASED'",
                (code, holder_id),
            )
            is not None
        )

    def used_slots(self, code: str) -> int:
        """Active plus pending slots of a code (D3)."""
        row = self.one(
            "SELECT COUNT(*) AS n FROM slots WHERE code = ? AND state IN ('PENDING', 'ACTIVE')",
            (code,),
        )
        return int(row["n"]) if row else 0

    def pending_delivery_of(self, device_id: str) -> Row | None:
        """The device's delivery still PENDING, if any (D5 DELIVERY_PENDING)."""
        return self.one(
            "SELECT * FROM deliveries WHERE device_id = ? AND state = 'PENDING' LIMIT 1",
            (device_id,),
        )

    # --- slots (D3) ----------------------------------------------------------------

    @unit
    def claim_slot(
        self,
        code: str,
        device_id: str,
        max_devices: int,
        now_us: int,
        *,
        state: str = PENDING,
        handshake_id: str = "",
        for_account: bool = False,
        then: Callable[[], None] | None = None,
    ) -> str:
        """Claims a slot of ``code`` for ``device_id`` or refuses NO_FREE_SLOTS (D3).

        ``for_account``: the holder is an account taking a per-user code (D11);
        ``device_id`` is then the account id.

        The device's connected state, the count of active plus pending slots
        and the insert run in one BEGIN IMMEDIATE transaction (joined if the
        caller already holds one),
        so concurrent claims serialise on SQLite's write lock and never
        exceed ``max_devices``. ``then`` runs in the same transaction after the
        insert (a handshake's step change that must happen with the claim).
        """
        with self.write() as db:
            # One read of all three facts (one round trip on PostgreSQL): the
            # disconnect fence (D3; a slot is claimed only for a connected device,
            # read under the same write lock as DisconnectDevice's release of its
            # slots), a slot the holder already has, and the code's used slots.
            facts = self.one(
                "SELECT (SELECT disconnect_us IS NULL FROM devices WHERE device_id = ?)"
                " AS connected,"
                " EXISTS (SELECT 1 FROM slots WHERE code = ? AND device_id = ?"
                " AND state != 'RELEASED') AS held,"
                " (SELECT COUNT(*) FROM slots WHERE code = ?"
                " AND state IN ('PENDING', 'ACTIVE')) AS used",
                (device_id, code, device_id, code),
            )
            assert facts is not None
            if for_account:
                self.require_account(device_id)
            elif not facts["connected"]:
                raise DeviceError.refused(
                    "DEVICE_NOT_CONNECTED", "the device was disconnected", deviceId=device_id
                )
            if facts["held"]:
                raise DeviceError.refused(
                    "DELIVERY_PENDING",
                    "the device already holds or is receiving this code",
                    code=code,
                    deviceId=device_id,
                )
            used = int(facts["used"])
            if used >= max_devices:
                raise DeviceError.refused(
                    "NO_FREE_SLOTS",
                    f"all {max_devices} slots of the code are taken",
                    code=code,
                    maxDevices=str(max_devices),
                )
            slot_id = new_id("slot")
            db["slots"].insert(
                {
                    "slot_id": slot_id,
                    "code": code,
                    "device_id": device_id,
                    "state": state,
                    "state_us": now_us,
                    "handshake_id": handshake_id,
                }
            )
            if then is not None:
                then()
            return slot_id

    @unit
    def set_slot_state(self, where: str, params: tuple, state: str, now_us: int) -> int:  # type: ignore[type-arg]
        """Moves held slots matching ``where`` to ``state``; returns how many."""
        with self.write() as db:
            cur = db.execute(
                f"UPDATE slots SET state = ?, state_us = ? WHERE state != 'RELEASED' AND ({where})",
                (state, now_us, *params),
            )
            return cur.rowcount

    # --- handshakes (H1-H4) -------------------------------------------------------------

    @unit
    def insert_handshake(self, row: Row) -> None:
        """Writes a handshake's intent row."""
        with self.write() as db:
            db["handshakes"].insert(row)

    @unit
    def move_handshake(self, handshake_id: str, frm: tuple[str, ...], values: Row) -> bool:
        """Compare-and-set of a handshake's step: sets ``values`` only while its step is
        one of ``frm``; False when another writer moved it first."""
        cols = ", ".join(f"{k} = ?" for k in values)
        marks = ", ".join("?" for _ in frm)
        with self.write() as db:
            cur = db.execute(
                f"UPDATE handshakes SET {cols} WHERE handshake_id = ? AND step IN ({marks})",
                (*values.values(), handshake_id, *frm),
            )
            return cur.rowcount == 1

    @unit
    def end_handshake(self, handshake_id: str, ends: tuple[str, ...], values: Row) -> Row | None:
        """Sets ``values`` on a handshake whose step is not one of ``ends`` and returns
        it as it is after; None when it already reached one of them (or is unknown)."""
        cols = ", ".join(f"{k} = ?" for k in values)
        marks = ", ".join("?" for _ in ends)
        with self.write():
            return self.one(
                f"UPDATE handshakes SET {cols}"  # noqa: S608 - names come from code
                f" WHERE handshake_id = ? AND step NOT IN ({marks}) RETURNING *",
                (*values.values(), handshake_id, *ends),
            )

    @unit
    def update_handshake(self, handshake_id: str, values: Row) -> None:
        with self.write() as db:
            db["handshakes"].update(handshake_id, values)

    @unit
    def note_grant(self, handshake_id: str, grant_id: str) -> None:
        """Records the grant a prepare made, unless the row already names one."""
        with self.write() as db:
            db.execute(
                "UPDATE handshakes SET grant_id = ? WHERE handshake_id = ? AND grant_id = ''",
                (grant_id, handshake_id),
            )

    def handshakes_of(self, device_id: str, steps: tuple[str, ...]) -> list[str]:
        """The ids of a holder's handshakes in one of ``steps``."""
        marks = ", ".join("?" for _ in steps)
        rows = self.query(
            f"SELECT handshake_id FROM handshakes WHERE device_id = ? AND step IN ({marks})",
            (device_id, *steps),
        )
        return [r["handshake_id"] for r in rows]

    # --- counts for the metrics (each a search of an index, never a scan of history) ------

    def held_slots(self) -> int:
        """Slots held (PENDING or ACTIVE) over every code (D3)."""
        row = self.one(
            "SELECT COUNT(*) AS n FROM slots INDEXED BY slots_one_held WHERE state != 'RELEASED'"
        )
        return int(row["n"]) if row else 0

    def connected_devices(self) -> int:
        row = self.one("SELECT COUNT(*) AS n FROM devices WHERE disconnect_us IS NULL")
        return int(row["n"]) if row else 0

    def pending_deliveries(self) -> int:
        """Sent subscriptions waiting for their device's completion (D4)."""
        row = self.one(
            "SELECT COUNT(*) AS n FROM deliveries INDEXED BY deliveries_pending"
            " WHERE state = 'PENDING'"
        )
        return int(row["n"]) if row else 0

    def live_reserves(self) -> dict[str, int]:
        """Reserves WAITING for their take-over, and FAILED ones still shown (D8-D10)."""
        rows = self.query(
            "SELECT state, COUNT(*) AS n FROM reserves WHERE state IN ('WAITING', 'FAILED')"
            " GROUP BY state"
        )
        return {"WAITING": 0, "FAILED": 0} | {r["state"]: r["n"] for r in rows}

    def unfinished_steps(self) -> dict[str, int]:
        """Handshakes not yet ended, by step: what recovery and the callers still drive (H4)."""
        steps = ("PREPARING", "PREPARED", "COMMITTING", "ABORTING")
        rows = self.query(
            "SELECT step, COUNT(*) AS n FROM handshakes"
            " WHERE step IN ('PREPARING', 'PREPARED', 'COMMITTING', 'ABORTING') GROUP BY step"
        )
        return dict.fromkeys(steps, 0) | {r["step"]: r["n"] for r in rows}

    def unfinished_handshakes(self) -> list[Row]:
        """Every handshake not yet ended (id, step, purpose), the oldest first."""
        return self.query(
            "SELECT handshake_id, step, purpose FROM handshakes"
            " WHERE step IN ('PREPARING', 'PREPARED', 'COMMITTING', 'ABORTING')"
            " ORDER BY create_us"
        )

    def handshakes_past_deadline(self, now_us: int) -> list[str]:
        """PREPARED handshakes whose deadline (the delivery window, D4) has passed."""
        rows = self.query(
            "SELECT handshake_id FROM handshakes WHERE step = 'PREPARED'"
            " AND deadline_us IS NOT NULL AND deadline_us <= ?",
            (now_us,),
        )
        return [r["handshake_id"] for r in rows]

    # --- reserves (D8-D10) ---------------------------------------------------------------

    @unit
    def insert_reserve(self, row: Row) -> None:
        with self.write() as db:
            db["reserves"].insert(row)

    @unit
    def update_reserve(self, reserve_id: str, values: Row) -> None:
        with self.write() as db:
            db["reserves"].update(reserve_id, values)

    @unit
    def end_live_reserve(self, reserve_id: str, state: str, now_us: int) -> None:
        """A live (WAITING or FAILED) reserve moves to ``state``; any other stays."""
        with self.write() as db:
            fresh = self.reserve(reserve_id)
            if fresh is not None and fresh["state"] in ("WAITING", "FAILED"):
                db["reserves"].update(reserve_id, {"state": state, "state_us": now_us})

    @unit
    def fail_reserve(self, reserve_id: str, reason: str, message: str, now_us: int) -> None:
        """A live reserve fails with the reason (one removed or activated meanwhile stays)."""
        with self.write() as db:
            db.execute(
                "UPDATE reserves SET state = 'FAILED', failure_reason = ?, failure_message = ?,"
                " state_us = ? WHERE reserve_id = ? AND state IN ('WAITING', 'FAILED')",
                (reason, message, now_us, reserve_id),
            )

    @unit
    def fail_waiting_reserve(self, device_id: str, reason: str, message: str, now_us: int) -> None:
        """The device's WAITING reserve fails (inside DisconnectDevice's write)."""
        with self.write() as db:
            db.execute(
                "UPDATE reserves SET state = 'FAILED', failure_reason = ?, failure_message = ?,"
                " state_us = ? WHERE device_id = ? AND state = 'WAITING'",
                (reason, message, now_us, device_id),
            )

    @unit
    def set_takeover_moment(
        self, reserve_id: str, takeover_us: int, *, waiting_only: bool = False
    ) -> None:
        """When the sweeper looks at the reserve next (D9)."""
        with self.write() as db:
            db.execute(
                "UPDATE reserves SET takeover_us = ? WHERE reserve_id = ?"
                + (" AND state = 'WAITING'" if waiting_only else ""),
                (takeover_us, reserve_id),
            )

    def due_reserves(self, now_us: int) -> list[Row]:
        """The sweeper's take-overs (with the device's current code): those to run at
        once, then those whose moment came."""
        # Two searches of reserves_due (state, takeover_us): with the two moments
        # OR-ed in one WHERE, SQLite read every WAITING reserve on every pass.
        return self.query(DUE_AT_ONCE) + self.query(DUE_BY, (now_us,))

    # --- outgoing mail (D2) ---------------------------------------------------------------

    def nth_latest_mail_us(self, by: str, value: str, n: int, since_us: int) -> int | None:
        """When the ``n``-th latest mail after ``since_us`` was recorded, or None if fewer.

        ``by`` is "account" (an account id) or "email" (an address, in any
        account and any case). Read inside the write that records the next
        mail, so concurrent sends cannot both pass the count.
        """
        where = {"account": "account_id = ?", "email": "lower(email) = lower(?)"}[by]
        row = self.one(
            f"SELECT create_us FROM outbox WHERE {where} AND create_us > ?"
            " ORDER BY create_us DESC LIMIT 1 OFFSET ?",
            (value, since_us, n - 1),
        )
        return None if row is None else int(row["create_us"])

    # --- retention (what history is kept, and for how long) ------------------------------

    def retention_rules(self, retention: timedelta) -> tuple[Prune, ...]:
        """What the sweeper prunes, in this order (README "Retention").

        ``retention`` (at least 24 h, H1) applies to what only retries and
        recovery read; deliveries are the account's history and stay ``HISTORY``.
        The order matters: a request outcome goes before the handshake it
        names, a handshake before the delivery or reserve it drives, so a
        replay (H1) never finds half of its first answer.
        """
        history = max(retention, HISTORY)
        return (
            # H1: a retry within ``retention`` gets its first answer.
            request_log_rule("request_outcomes", retention),
            # Finished only (H4: recovery drives the others), and none a retained
            # outcome replays or a live reserve runs on (D9, D10).
            Prune(
                "handshakes",
                "handshakes",
                "update_us",
                retention,
                index="handshakes_finished",
                scope="step IN ('COMMITTED', 'ABORTED')",
                guard="NOT EXISTS (SELECT 1 FROM request_outcomes o"
                " WHERE o.ref = handshakes.handshake_id)"
                " AND NOT EXISTS (SELECT 1 FROM reserves r WHERE r.device_id = handshakes.device_id"
                " AND r.state IN ('WAITING', 'FAILED')"
                " AND r.handshake_id = handshakes.handshake_id)",
            ),
            Prune(
                "removed reserves",
                "reserves",
                "state_us",
                retention,
                index="reserves_state_time",
                scope="state = 'REMOVED'",
                guard=_HANDSHAKE_GONE.format(table="reserves"),
            ),
            # An ACTIVATED reserve is shown while its code is the device's current one.
            Prune(
                "replaced reserves",
                "reserves",
                "state_us",
                retention,
                index="reserves_state_time",
                scope="state = 'ACTIVATED'",
                guard="NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = reserves.device_id"
                " AND d.current_code = reserves.code) AND "
                + _HANDSHAKE_GONE.format(table="reserves"),
            ),
            # D4: ended deliveries are the "my devices" history (ListDeliveries).
            Prune(
                "deliveries",
                "deliveries",
                "end_us",
                history,
                index="deliveries_ended",
                guard="state != 'PENDING' AND " + _HANDSHAKE_GONE.format(table="deliveries"),
            ),
            # D3 counts held slots only; a released one is history.
            Prune(
                "released slots",
                "slots",
                "state_us",
                retention,
                index="slots_released",
                scope="state = 'RELEASED'",
            ),
            # D1: after ``retention`` a used or expired code is just unknown.
            Prune(
                "connection codes",
                "connection_codes",
                "expire_us",
                retention,
                index="connection_codes_expire",
            ),
            # D2: a message stays while its link works and ``retention`` after
            # (per-address send limits count it over a window of hours).
            Prune(
                "outbox messages",
                "outbox",
                "COALESCE(link_expire_us, create_us)",
                retention,
                index="outbox_gone",
            ),
        )


# The sweeper's due take-overs (due_reserves): those to run at once, then those whose moment came.
_DUE = (
    "SELECT r.*, d.current_code FROM reserves r JOIN devices d USING (device_id)"
    " WHERE r.state = 'WAITING' AND d.disconnect_us IS NULL AND r.takeover_us "
)
DUE_AT_ONCE = _DUE + "IS NULL"
DUE_BY = _DUE + "<= ? ORDER BY r.takeover_us"


# The reserve shown with a device (``r`` joined with its device ``d``, by ``r.device_id = ?``).
_SHOWN_RESERVE = (
    "r.device_id = ? AND (r.state IN ('WAITING', 'FAILED')"
    " OR (r.state = 'ACTIVATED' AND r.code = d.current_code))"
    " ORDER BY r.state = 'ACTIVATED', r.add_us DESC LIMIT 1"
)


# A delivery or reserve goes only after the handshake that drove it (H1 replays read both).
_HANDSHAKE_GONE = (
    "NOT EXISTS (SELECT 1 FROM handshakes h WHERE h.handshake_id = {table}.handshake_id)"
)


def _check_in_sql(db: Database) -> str:
    """check_in_view's statement; the reserve and the deliveries come back as JSON
    objects (text) with every column of their tables (read from the schema)."""

    def columns(table: str) -> list[str]:
        if db.postgres:
            rows = db.query(
                "SELECT column_name AS name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?"
                " AND column_name != 'rowid' ORDER BY ordinal_position",
                (table,),
            )
        else:
            rows = db.query("SELECT name FROM pragma_table_info(?)", (table,))
        return [r["name"] for r in rows]

    def as_json(table: str, alias: str) -> str:
        pairs = ", ".join(f"'{c}', {alias}.{c}" for c in columns(table))
        return f"json_build_object({pairs})" if db.postgres else f"json_object({pairs})"

    shown = _SHOWN_RESERVE.replace("r.device_id = ?", "r.device_id = d.device_id")
    pending_rows = (
        "(SELECT * FROM deliveries WHERE device_id = d.device_id AND state = 'PENDING'"
        " ORDER BY create_us) p"
    )
    if db.postgres:  # json_agg is NULL for no rows; the columns come back as text, as on SQLite
        reserve = f"(SELECT CAST({as_json('reserves', 'r')} AS text) FROM reserves r WHERE {shown})"
        pending = (
            f"(SELECT CAST(COALESCE(json_agg({as_json('deliveries', 'p')} ORDER BY p.create_us),"
            f" '[]') AS text) FROM {pending_rows})"
        )
    else:
        reserve = f"(SELECT {as_json('reserves', 'r')} FROM reserves r WHERE {shown})"
        pending = (
            f"(SELECT json_group_array(json({as_json('deliveries', 'p')})) FROM {pending_rows})"
        )
    return (
        f"SELECT d.*, {reserve} AS _reserve, {pending} AS _pending"
        " FROM devices d WHERE d.device_id = ?"
    )


if __name__ == "__main__":  # python -m device_service.store [--db FILE] [--dry-run]
    sys.exit(migrations.main("device", MIGRATIONS))
