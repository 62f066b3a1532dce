"""Activation codes: generation (S3); their formats are keyslot_server.formats's (S4)."""

from __future__ import annotations

import secrets

from keyslot_server import formats
from license_service.errors import LicenseError


def generate_code() -> str:
    """A fresh code from the OS's cryptographic generator, normalised form."""
    return "".join(secrets.choice(formats.CODE_ALPHABET) for _ in range(formats.CODE_LENGTH))


def normalize_code(text: str, field: str = "code") -> str:
    """The normal (stored) form of a typed code; INVALID_ARGUMENT naming ``field``."""
    return formats.require(LicenseError, field, formats.normalize_code, text)
