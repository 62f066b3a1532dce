"""Activation codes: generation, normalisation and display format (S3, S4)."""

from __future__ import annotations

import re
import secrets

from license_service.errors import LicenseError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LENGTH = 20  # 36**20 ~ 2**103: at least 100 bits of entropy (S3)
# ASCII space and hyphen only: \s would also drop tabs, newlines and Unicode blanks (S4).
_IGNORED = re.compile(r"[ -]+")
_VALID = re.compile(r"[A-Z0-9]{20}")
MAX_INPUT = 64  # longer input is refused before any work is done (S4)


def generate_code() -> str:
    """A fresh code from the OS's cryptographic generator, normalised form."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize_code(text: str, field: str = "code") -> str:
    """The 20-character stored form of user input; case, spaces and hyphens ignored.

    Anything else (other characters, wrong length, empty) is INVALID_ARGUMENT naming ``field``.
    """
    if not text or not text.strip():
        raise LicenseError.invalid(field, "is required")
    if len(text) > MAX_INPUT:
        raise LicenseError.invalid(field, f"must be at most {MAX_INPUT} characters")
    compact = _IGNORED.sub("", text)
    # Checked before upper(): it maps some non-ASCII letters to ASCII ("ß" -> "SS").
    compact = compact.upper() if compact.isascii() else ""
    if not _VALID.fullmatch(compact):
        raise LicenseError.invalid(
            field, "must be 20 letters A-Z and digits, shown as ABCDE-12345-FGHIJ-67890"
        )
    return compact


def format_code(code: str) -> str:
    """The display form: four groups of five separated by hyphens."""
    return "-".join(code[i : i + 5] for i in range(0, LENGTH, 5))
