"""A throwaway PostgreSQL cluster: for the tests, the bench and a local run on PostgreSQL.

``Cluster.start(directory, durable=...)`` runs initdb and pg_ctl from the
machine's PostgreSQL server binaries in ``directory``, listening on
127.0.0.1 only, on a free port, with its unix socket inside ``directory``.
It holds two roles: ``postgres`` (the superuser) and ``keyslot``, which the
services use (login, CREATEDB, no superuser: as in a deployment) and which
owns the template database every test database is copied from.

Authentication: scram-sha-256 passwords on 127.0.0.1, random per cluster,
kept in a 0600 passfile in ``directory`` that ``url()`` names. The URLs hold
no password, so printing them leaks nothing, and no other local user can
log in (trust on 127.0.0.1 would let anyone on the machine in as superuser).

The server refuses to run as root: as root, initdb and pg_ctl run as the
``postgres`` user (runuser), ``directory`` is given to that user, and it
must be reachable by it (every parent searchable: a directory under /tmp,
not under a 0700 one such as root's var/ or pytest's temp root).

``durable=False`` turns fsync, synchronous_commit and full_page_writes off
(tests: a crash of the machine loses the cluster, which is thrown away
anyway); ``durable=True`` keeps them on (the bench, a local run).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from keyslot_server.files import write_private

SUPERUSER = "postgres"
ROLE = "keyslot"
TEMPLATE = "keyslot_template"
MEMORY_DIR = Path("/dev/shm")
# Where Debian and Ubuntu put each major version's server binaries.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
BINDIR_VARIABLE = "KEYSLOT_PG_BINDIR"
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql-15, "
    f"or postgresql), or set {BINDIR_VARIABLE} to the directory holding initdb"
)
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# A unix socket path is at most 107 bytes (sun_path), the socket's own name included.
_SOCKET_PATH_MAX = 107
_START_ATTEMPTS = 3  # a free port taken by someone else before the server binds it


# Tries of a DROP DATABASE an autovacuum worker is in the way of, 0.1 s apart.
_DROP_ATTEMPTS = 50


class ClusterError(RuntimeError):
    """A cluster could not be made, started or used; the message says why in a line."""


class MissingBinaries(ClusterError):
    """No PostgreSQL server binaries on this machine (the message says what to install)."""


def find_bindir(environ: Mapping[str, str] = os.environ, debian_root: Path = DEBIAN_ROOT) -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    In order: ``$KEYSLOT_PG_BINDIR``; ``pg_config --bindir``; the newest
    ``/usr/lib/postgresql/<major>/bin``; the directory ``initdb`` on PATH
    resolves to. Raises MissingBinaries with what to install.
    """
    if environ.get(BINDIR_VARIABLE):
        bindir = Path(environ[BINDIR_VARIABLE])
        if _has_server(bindir):
            return bindir
        raise MissingBinaries(f"{BINDIR_VARIABLE}={bindir} holds no initdb/pg_ctl/postgres")
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config", path=environ.get("PATH"))
    if pg_config:
        # libpq-dev's pg_config alone answers /usr/bin, which has no server: checked below.
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    versions = [p for p in debian_root.glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    initdb = shutil.which("initdb", path=environ.get("PATH"))
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    raise MissingBinaries(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_PROGRAMS)


def settings(port: int, socket_dir: Path, *, durable: bool, max_connections: int) -> dict[str, str]:
    """The postgresql.conf lines a cluster gets (appended: the last value of a name wins)."""
    switch = "on" if durable else "off"
    return {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "max_connections": str(max_connections),
        "fsync": switch,
        "synchronous_commit": switch,
        "full_page_writes": switch,
        # Time in SQL comes from the injected clock; UTC keeps any server-side rendering fixed.
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
    }


def unreachable_part(path: Path, uid: int, gids: Sequence[int]) -> Path | None:
    """The first of ``path``'s parents that the user ``uid`` (in ``gids``) cannot search.

    Mode bits only (no ACLs): enough to catch the usual 0700 parent.
    """
    for part in reversed(path.resolve().parents):
        st = part.stat()
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid in gids:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return part
    return None


def scratch_parent(memory: Path = MEMORY_DIR, min_free: int = 1 << 30) -> Path:
    """Where a throwaway non-durable cluster goes: memory (/dev/shm) when it has room, else /tmp.

    On this machine's disk CREATE DATABASE from a template took 120-330 ms even
    with fsync off (creating and removing files is what costs); in memory, 9-19 ms.
    A container's default /dev/shm (64 MB) is too small and falls back.
    """
    try:
        room = os.statvfs(memory)
        if room.f_bavail * room.f_frsize >= min_free and os.access(memory, os.W_OK):
            return memory
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster; ``stop()`` (or leaving a ``with``) stops and removes it."""

    directory: Path
    bindir: Path
    port: int
    durable: bool
    max_connections: int
    # The OS user initdb and pg_ctl run as: "postgres" when we are root, else None (ourselves).
    run_as: str | None
    _admin: psycopg.Connection | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    @property
    def passfile(self) -> Path:
        return self.directory / "passfile"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @classmethod
    def start(
        cls,
        directory: str | Path,
        *,
        durable: bool,
        max_connections: int = 200,
        bindir: Path | None = None,
    ) -> Cluster:
        """initdb in ``directory`` (missing or empty), start the server, make the role and template.

        Raises MissingBinaries when there is no server to run, ClusterError
        when a step fails (with the step's last line of output).
        """
        directory = Path(directory).absolute()
        bindir = bindir or find_bindir()
        run_as = _server_user()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ClusterError(
                f"{directory} is not empty: a new cluster needs a directory of its own"
            )
        if run_as:
            _hand_over(directory, run_as)
        cluster = cls(directory, bindir, 0, durable, max_connections, run_as)
        socket_name = cluster.socket_dir / ".s.PGSQL.65535"
        if len(str(socket_name).encode()) > _SOCKET_PATH_MAX:
            raise ClusterError(
                f"{directory} is too long a path for a unix socket: use a shorter one"
            )
        cluster.socket_dir.mkdir(mode=0o700)
        if run_as:
            _chown(cluster.socket_dir, run_as)
        try:
            cluster._create()
        except BaseException:
            with suppress(ClusterError):  # the first error is the one to report
                cluster.stop()  # and removes the directory: the error holds the log's last line
            raise
        return cluster

    def url(self, dbname: str, *, user: str = ROLE) -> str:
        """A postgresql:// URL for ``dbname`` as ``user``; the password is in its passfile."""
        return (
            f"postgresql://{quote(user)}@127.0.0.1:{self.port}/{quote(dbname)}"
            f"?passfile={quote(str(self.passfile))}"
        )

    def create_database(self, name: str, *, template: str = TEMPLATE) -> str:
        """A new database ``name`` owned by the role, copied from ``template``; returns its URL.

        The template must have no open connection while it is copied.
        """
        self._admin_execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(ROLE)
            )
        )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drops ``name``, closing any connection still open to it.

        FORCE cannot end a session of another role: an autovacuum worker that
        happens to be in the database (it runs as the superuser) refuses the drop
        for the moment it takes, so a refused drop is tried again for a while.
        """
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        for attempt in range(_DROP_ATTEMPTS):
            try:
                self._admin_execute(statement)
                return
            except psycopg.errors.InsufficientPrivilege:
                if attempt == _DROP_ATTEMPTS - 1:
                    raise
                time.sleep(0.1)

    def stop(self, *, remove: bool = True) -> None:
        """Stops the server (fast: open sessions are ended) and removes ``directory``."""
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        finally:
            if remove:
                shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        """The server log's last lines (why a start failed)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _create(self) -> None:
        """initdb, the settings, pg_ctl start (on another free port if ours was taken), roles."""
        superuser_password = secrets.token_urlsafe(24)
        role_password = secrets.token_urlsafe(24)
        self._initdb(superuser_password)
        for attempt in range(_START_ATTEMPTS):
            self.port = free_port()
            conf = settings(
                self.port,
                self.socket_dir,
                durable=self.durable,
                max_connections=self.max_connections,
            )
            with (self.data / "postgresql.conf").open("a") as out:
                out.write("\n# keyslot_server.pgcluster\n")
                out.writelines(f"{name} = {value}\n" for name, value in conf.items())
            try:
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log))
                break
            except ClusterError:
                if attempt + 1 == _START_ATTEMPTS or "already in use" not in self.log_tail():
                    raise
        write_private(
            self.passfile,
            f"127.0.0.1:{self.port}:*:{SUPERUSER}:{superuser_password}\n"
            f"127.0.0.1:{self.port}:*:{ROLE}:{role_password}\n",
        )
        with psycopg.connect(self.url("postgres", user=SUPERUSER), autocommit=True) as su:
            su.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(role_password)
                )
            )
            su.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(TEMPLATE), sql.Identifier(ROLE)
                )
            )

    def _admin_execute(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE run outside a transaction; one connection serves them all.
        with self._lock:
            if self._admin is None or self._admin.closed:
                self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
            self._admin.execute(statement)

    def _initdb(self, superuser_password: str) -> None:
        # The password goes through a file the server user can read, removed at once.
        pwfile = self.directory / "initdb.pw"
        write_private(pwfile, superuser_password + "\n")
        if self.run_as:
            _chown(pwfile, self.run_as)
        try:
            self._run(
                "initdb",
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
                "--no-sync",  # the cluster is new; a machine crash now just means starting over
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            f"pg_ctl {action}", str(self.bindir / "pg_ctl"), "-D", str(self.data), action, *options
        )

    def _run(self, step: str, *command: str) -> None:
        argv = ["runuser", "-u", self.run_as, "--", *command] if self.run_as else list(command)
        # cwd: the server user may not be able to search ours.
        done = subprocess.run(
            argv,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**os.environ, "LC_ALL": "C"},
        )
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip()).splitlines()
            why = output[-1] if output else f"exit status {done.returncode}"
            log = " | ".join(self.log_tail(2).splitlines())  # the cause, then FATAL
            raise ClusterError(f"{step} failed: {why}" + (f" (server log: {log})" if log else ""))


def _server_user() -> str | None:
    """The user the server runs as: ``postgres`` when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ClusterError(
            "running as root, and PostgreSQL refuses root: there is no 'postgres' user to run it"
            " as (the server package creates one)"
        ) from None
    if not shutil.which("runuser"):
        raise ClusterError(
            "running as root needs runuser (util-linux) to run PostgreSQL as postgres"
        )
    return SUPERUSER


def _hand_over(directory: Path, user: str) -> None:
    """Gives ``directory`` to the server user, after checking that user can reach it."""
    entry = pwd.getpwnam(user)
    gids = os.getgrouplist(user, entry.pw_gid)
    blocked = unreachable_part(directory, entry.pw_uid, gids)
    if blocked is not None:
        raise ClusterError(
            f"the {user} user cannot reach {directory}: {blocked} is mode "
            f"{blocked.stat().st_mode & 0o777:o}; put the cluster under /tmp"
        )
    _chown(directory, user)


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
