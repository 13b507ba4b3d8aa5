"""Shared secrets given as text or bytes: one rule for how short they may be."""

from __future__ import annotations

from llmagentos.exceptions import ConfigError

__all__ = ["MIN_SECRET_BYTES", "secret_bytes"]

# 128 bits: an HMAC key shorter than this is guessable offline from one signed value.
MIN_SECRET_BYTES = 16


def secret_bytes(secret: str | bytes | None, *, field: str) -> bytes | None:
    """``secret`` as bytes, ``None`` when unset or empty.

    Raises:
        ConfigError: naming ``field``, when the secret is shorter than 16 bytes.
    """
    if not secret:
        return None
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(field, f"must be at least {MIN_SECRET_BYTES} bytes (got {len(key)})")
    return key
