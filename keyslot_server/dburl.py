"""What ``--db`` names (a SQLite file, the default, or a PostgreSQL URL), how to show it,
and the error a database that cannot be reached raises."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def is_postgres(target: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return target.startswith(("postgresql://", "postgres://"))


def redacted(target: str) -> str:
    """``target`` fit to print or log: a PostgreSQL URL's password replaced by ``***``.

    Other text is returned unchanged. Options such as ``sslmode`` and
    ``passfile`` stay: they name files and modes, not secrets.
    """
    if not is_postgres(target):
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class DatabaseUnavailable(Exception):
    """A unit of work could not be completed now (connection lost, serialization
    retries spent, a lock not granted in time). Nothing of it was kept unless the
    COMMIT's outcome is unknown (the message says so); the caller may retry, and
    a request id makes that retry safe (H1). Answered as UNAVAILABLE."""
