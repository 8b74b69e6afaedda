"""Device and gateway tokens: made from 32 random bytes, stored only as SHA-256.

A slow password hash (bcrypt, scrypt, Argon2) exists to make guessing a
human-chosen password from its stolen hash expensive. These tokens are 256
random bits: no dictionary holds them and 2^255 guesses are out of reach
however fast the hash, so one SHA-256 protects them as well as a KDF would. And
it is deterministic, so a request's token is found by its hash in a dict, in
constant time per request, where a salted KDF would need a per-token compare
costing milliseconds of CPU on every reading.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """What is stored and looked up: the SHA-256 digest of the token."""
    return hashlib.sha256(token.encode()).digest()
