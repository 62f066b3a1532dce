"""Configuration errors: one line naming the file and the problem, exit 2.

A service checks every file it is configured with (tokens, certificates,
keys) before it creates or opens a database; a problem stops it with
``ConfigError``, which ``main`` prints as one line without a traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_CONFIG = 2  # what argparse uses for a bad flag: the same class of mistake


class ConfigError(Exception):
    """A configuration file that is missing, unreadable or malformed."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def read_bytes(path: str | Path, what: str) -> bytes:
    """The bytes of a configuration file, or ConfigError saying why not."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise ConfigError(path, f"{what} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(path, f"{what} is not readable by this user") from None
    except OSError as err:
        raise ConfigError(path, f"{what} cannot be read: {err.strerror}") from None
