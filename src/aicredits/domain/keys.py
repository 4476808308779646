"""API keys: `sk-` + 64 lowercase hex from a CSPRNG; stored as a SHA-256 hash only."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from fnmatch import fnmatchcase

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


# ---------------------------------------------------------------- a key's model allow-list
# Glob patterns (fnmatch: `*` matches any run of characters, `/` included; `?` one; `[...]` a set),
# stored comma-separated. A key without a list may call every model.
MAX_MODEL_PATTERNS = 50
MODEL_PATTERN_RE = re.compile(r"^[A-Za-z0-9._:/*?\[\]!-]{1,200}$")


def parse_model_patterns(text: str | None) -> tuple[str, ...] | None:
    """'openai/*, demo/*' -> ('openai/*', 'demo/*'); None or blank -> None (every model).
    ValueError with a message fit for the operator on a malformed pattern."""
    if text is None or not text.strip():
        return None
    patterns = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if len(patterns) > MAX_MODEL_PATTERNS:
        raise ValueError(f"at most {MAX_MODEL_PATTERNS} model patterns")
    for p in patterns:
        if not MODEL_PATTERN_RE.match(p):
            raise ValueError(f"'{p}' is not a model id or glob pattern (letters, digits, . _ : / - and * ? [ ])")
    return patterns


def model_allowed(patterns: tuple[str, ...] | None, model: str) -> bool:
    return not patterns or any(fnmatchcase(model, p) for p in patterns)


# ---------------------------------------------------------------- a key's expiry
EXPIRES_RE = re.compile(r"^(\d{1,6})([hdw])$")
UNIT_MS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_expiry(text: str | None, now_ms: int) -> int | None:
    """`--expires`: a duration from now (`12h`, `30d`, `2w`), or an ISO 8601 date or date-time
    (`2026-12-31`: the start of that day, UTC; a time without an offset is UTC), as epoch ms;
    None or blank: never. ValueError with a message fit for the operator."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    m = EXPIRES_RE.match(text)
    if m:
        amount = int(m.group(1))
        if amount < 1:
            raise ValueError("the duration must be at least 1")
        return now_ms + amount * UNIT_MS[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is neither a duration (12h, 30d, 2w) nor an ISO date (2026-12-31, "
                         "2026-12-31T18:00:00+05:30)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    at = int(when.timestamp() * 1000)
    if at <= now_ms:
        raise ValueError(f"'{text}' is in the past")
    return at


def expiry_text(at_ms: int) -> str:
    """An expiry as shown to people: `2026-12-31T00:00:00Z`."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
