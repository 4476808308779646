"""SQL of the billing hot path, shared by the SQLite and PostgreSQL stores ('?' placeholders;
the PostgreSQL store numbers them)."""

from __future__ import annotations

import re

USAGE_COLUMNS = (
    "call_id", "request_id", "account_id", "key_id", "model", "provider", "deployment", "endpoint", "stream",
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "units", "cost", "hold", "latency_ms", "overhead_ms", "status", "cache", "end_state",
    "error", "created_at",
)

# a disabled account's keys are found as no key at all
FIND_KEY = ("SELECT k.id, k.account_id, k.name, k.limit_micros, k.revoked_at, k.rpm, k.tpm FROM api_keys k "
            "JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ? AND a.disabled_at IS NULL")
WALLET = "SELECT balance, held FROM wallets WHERE account_id = ?"
KEY_STATE = "SELECT limit_micros, spent, held, revoked_at FROM api_keys WHERE id = ?"
HOLD_WALLET = "UPDATE wallets SET held = held + ? WHERE account_id = ?"
HOLD_KEY = "UPDATE api_keys SET held = held + ? WHERE id = ?"
INSERT_HOLD = ("INSERT INTO holds (call_id, account_id, key_id, amount, created_at, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?)")
DELETE_HOLD = "DELETE FROM holds WHERE call_id = ? RETURNING amount"
CHARGE_WALLET = ("UPDATE wallets SET held = held - ?, balance = balance - ?, total_spent = total_spent + ?, "
                 "updated_at = ? WHERE account_id = ? RETURNING balance, held")
# last_used_at rides on the settle's own key update: no extra write on the hot path
CHARGE_KEY = "UPDATE api_keys SET held = held - ?, spent = spent + ?, last_used_at = ? WHERE id = ?"
INSERT_CHARGE = ("INSERT INTO ledger_entries (account_id, kind, amount, balance_after, call_id, key_id, note, "
                 "created_at) VALUES (?, 'charge', ?, ?, ?, ?, ?, ?)")
INSERT_USAGE = (f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in USAGE_COLUMNS)})")
EXPIRED_HOLDS = "SELECT call_id, account_id, key_id, amount FROM holds WHERE expires_at < ?"
CREDITS = ("SELECT w.balance, w.held, w.total_added, w.total_spent FROM wallets w WHERE w.account_id = ?")
KEY_CREDITS = "SELECT name, limit_micros, spent, held FROM api_keys WHERE id = ?"


def numbered(sql: str) -> str:
    """'?' placeholders as PostgreSQL's $1, $2, ..."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


def usage_values(usage: dict) -> tuple:
    return tuple(usage.get(c) for c in USAGE_COLUMNS)


def key_headroom(limit_micros, spent, held) -> int | None:
    return None if limit_micros is None else limit_micros - spent - held


def credits_view(wallet_row, key_row) -> dict:
    balance, held, added, spent = wallet_row
    out = {"balance": balance, "held": held, "total_added": added, "total_spent": spent, "key": None}
    if key_row is not None:
        name, limit, kspent, kheld = key_row
        out["key"] = {"name": name, "limit": limit, "spent": kspent, "held": kheld}
    return out
