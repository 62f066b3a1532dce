"""The engine the services run on in tests, and the one PostgreSQL cluster a test process shares.

``KEYSLOT_TEST_ENGINE`` picks the engine (``sqlite``, the default, or
``postgres``); `make test` runs the e2e suite once on each. On PostgreSQL
every pair of services gets two fresh databases (license, device) in one
throwaway cluster per process: started on first use with fsync off, in a
directory the postgres user can reach (``scratch_parent()``: memory or
/tmp, not pytest's 0700 temp root), stopped and removed at the end of the
session (conftest) or at exit (a script such as ``python -m tests.chaos``).
The unit tests' ``pg_cluster`` fixture uses the same cluster.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyslot_server.pgcluster import Cluster

ENGINE_VARIABLE = "KEYSLOT_TEST_ENGINE"
ENGINES = ("sqlite", "postgres")
# A service opens a connection per gRPC worker thread (16) and per sweeper; the session's pair,
# a module's pair and a test's fresh pair can be alive at once, and a kill -9 leaves its
# connections to be noticed: room for several times that.
MAX_CONNECTIONS = 300

_lock = threading.Lock()
_cluster: Cluster | None = None
_databases = itertools.count(1)


def engine(environ: Mapping[str, str] = os.environ) -> str:
    """The engine ``$KEYSLOT_TEST_ENGINE`` names: ``sqlite`` when unset."""
    name = environ.get(ENGINE_VARIABLE) or "sqlite"
    if name not in ENGINES:
        raise ValueError(f"{ENGINE_VARIABLE}={name}: expected one of {', '.join(ENGINES)}")
    return name


def cluster() -> Cluster:
    """The process's cluster, started on first use.

    Raises MissingBinaries (keyslot_server.pgcluster) without a PostgreSQL
    server on the machine; conftest turns that into a skip, or a failure
    under CI=true.
    """
    global _cluster
    with _lock:
        if _cluster is None:
            # psycopg costs 0.1 s to import: only runs that use PostgreSQL pay it.
            from keyslot_server.pgcluster import Cluster, scratch_parent

            directory = tempfile.mkdtemp(prefix="keyslot-pg-", dir=scratch_parent())
            try:
                _cluster = Cluster.start(directory, durable=False, max_connections=MAX_CONNECTIONS)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            atexit.register(stop)  # outside pytest; a second stop() does nothing
        return _cluster


def started() -> bool:
    """Whether this process has started its cluster (conftest reports it)."""
    return _cluster is not None


def new_database(purpose: str) -> tuple[str, str]:
    """A fresh database (a copy of the cluster's template): its name and URL.

    The name holds the process id and a counter, so no two are alike even
    when several processes share a machine.
    """
    name = f"{purpose}_{os.getpid()}_{next(_databases)}"
    return name, cluster().create_database(name)


def drop_database(name: str) -> None:
    """Drops ``name`` (its open sessions are ended) if the cluster still runs."""
    with _lock:
        running = _cluster
    if running is not None:
        running.drop_database(name)


def stop() -> None:
    """Stops the cluster and removes its directory (once; later calls do nothing)."""
    global _cluster
    with _lock:
        running, _cluster = _cluster, None
    if running is not None:
        running.stop()
