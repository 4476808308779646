"""API keys: `sk-` + 64 lowercase hex from a CSPRNG; stored as a SHA-256 hash only."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_RE = re.compile(r"^sk-[0-9a-f]{64}$")


def generate_key() -> str:
    return "sk-" + secrets.token_hex(32)


def generate_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def well_formed(key: str) -> bool:
    return KEY_RE.fullmatch(key) is not None


def hash_key(key: str) -> str:
    # 256 random bits need no salt or slow hash: a SHA-256 preimage is out of reach.
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def display_form(key: str) -> str:
    return f"{key[:7]}…{key[-4:]}"
