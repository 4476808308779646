"""API keys: `sk-` + 64 lowercase hex from a CSPRNG; stored as a SHA-256 hash only."""

from __future__ import annotations

import hashlib
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


def display_form(key: str) -> str:
    return f"{key[:7]}…{key[-4:]}"


# ---------------------------------------------------------------- admin API keys
# A kind of their own: `sk-admin-` + 64 lowercase hex, for /admin/api only. An inference key
# never matches ADMIN_KEY_RE and an admin key never matches KEY_RE, so neither is mistaken
# for the other (each endpoint refuses the other kind with 401).
ADMIN_PREFIX = "sk-admin-"
ADMIN_KEY_RE = re.compile(r"^sk-admin-[0-9a-f]{64}$")


def generate_admin_key() -> str:
    return ADMIN_PREFIX + secrets.token_hex(32)


def generate_admin_key_id() -> str:
    return "adm_" + secrets.token_hex(8)


def admin_well_formed(key: str) -> bool:
    return ADMIN_KEY_RE.fullmatch(key) is not None


def admin_display_form(key: str) -> str:
    return f"{key[:13]}…{key[-4:]}"
