"""Files that hold secrets are their owner's only: 0600 files in 0700 directories.

The license database holds activation codes in clear, the device database
credential hashes, the tokens file bearer tokens; nobody else on the machine
may read them (or list their names).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700
# SQLite's companions of a database file, created next to it.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_umask() -> int:
    """Sets the process umask to 0o077 (files 0600, directories 0700); returns the old one.

    A umask rather than a chmod per file: SQLite creates -wal, -shm and
    journal files itself, later, and the umask covers those and any key
    file too.
    """
    return os.umask(PRIVATE_UMASK)


def private_dir(path: str | Path, *, tighten_existing: bool = False) -> Path:
    """``path`` as a directory, each missing part created 0700 (whatever the umask).

    An existing directory is left as it is unless ``tighten_existing`` (it is
    ours alone, like devrun's var/): an operator's --db in a shared directory
    must not change that directory's mode.
    """
    path = Path(path)
    for part in reversed([path, *path.parents]):
        if not part.exists():
            part.mkdir(mode=DIR_MODE, exist_ok=True)
            part.chmod(DIR_MODE)  # mkdir's mode passes through the umask; this does not
    if tighten_existing:
        path.chmod(DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """``path`` as an existing file of mode 0600: created empty if missing, tightened if not."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        # An older file may be 0644 (and a new one's mode met the umask).
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_private(path: str | Path, text: str) -> Path:
    """Writes ``text`` to a 0600 file: never readable by others, not even while written."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # before the first byte: an existing file may be 0644
        with os.fdopen(fd, "w", closefd=False) as out:
            out.write(text)
    finally:
        os.close(fd)
    return path


def private_database(path: str | Path) -> Path:
    """A SQLite file and its directory made private before SQLite opens it.

    SQLite gives -wal, -shm and journal files the database file's mode, so a
    0600 database gets 0600 companions even in a process without the umask;
    companions left by an older run are tightened too.
    """
    path = Path(path)
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.chmod(FILE_MODE)
    return path
