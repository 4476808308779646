"""Tables (SQLAlchemy Core). Money columns are BIGINT micro-INR; times are epoch milliseconds."""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False, default="user"),
    Column("password_hash", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger, nullable=True),   # set: no sign-in, its keys refused
    Column("timezone", String(64), nullable=True),      # NULL: the operator's AICREDITS_TIMEZONE
)

wallets = Table(
    "wallets", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), primary_key=True),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("held", BigInteger, nullable=False, default=0),
    Column("total_added", BigInteger, nullable=False, default=0),
    Column("total_spent", BigInteger, nullable=False, default=0),
    Column("updated_at", BigInteger, nullable=False),
)

ledger_entries = Table(
    "ledger_entries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("call_id", String(64), nullable=True),
    Column("key_id", String(32), nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("kind", "call_id", name="uq_ledger_kind_call"),
    Index("ix_ledger_account_id", "account_id", "id"),
    # the billing history's keyset pages (0004_history)
    Index("ix_ledger_account_time", "account_id", "created_at", "id"),
    Index("ix_ledger_account_kind_time", "account_id", "kind", "created_at", "id"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("display", String(32), nullable=False),
    Column("limit_micros", BigInteger, nullable=True),
    Column("spent", BigInteger, nullable=False, default=0),
    Column("held", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("rpm", Integer, nullable=True),       # requests per rate window; NULL: unlimited
    Column("tpm", BigInteger, nullable=True),    # billed tokens per rate window; NULL: unlimited
    Column("last_used_at", BigInteger, nullable=True),   # the last settled call (set by settle)
    Column("expires_at", BigInteger, nullable=True),     # refused from then on (401); NULL: never (0006)
    Column("models", Text, nullable=True),               # comma-separated glob patterns; NULL: every model
    Index("ix_api_keys_account", "account_id"),
)

holds = Table(
    "holds", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),   # the lease: renewed while its process runs
    Column("accrued", BigInteger, nullable=False, default=0, server_default="0"),  # charge delivered so far
    Column("progress", Text, nullable=True),              # JSON usage row the sweeper writes with `accrued`
    Index("ix_holds_expires", "expires_at"),
    Index("ix_holds_account", "account_id"),
)

usage_records = Table(
    "usage_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False, unique=True),
    Column("request_id", String(128), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("model", String(200), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("deployment", String(128), nullable=False, default=""),
    Column("endpoint", String(32), nullable=False, default="chat"),
    Column("stream", Boolean, nullable=False, default=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cache_read_tokens", Integer, nullable=False, default=0),
    Column("cache_write_tokens", Integer, nullable=False, default=0),
    Column("cache_write_1h_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("units", BigInteger, nullable=False, default=0),
    Column("cost", BigInteger, nullable=False, default=0),
    Column("hold", BigInteger, nullable=False, default=0),
    Column("latency_ms", Integer, nullable=False, default=0),
    Column("overhead_ms", Integer, nullable=False, default=0),
    Column("status", Integer, nullable=False),
    Column("cache", String(8), nullable=False, default="bypass"),
    Column("end_state", String(32), nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # the request log's keyset pages (0004_history replaced (account_id, created_at))
    Index("ix_usage_account_time_id", "account_id", "created_at", "id"),
)


# ------------------------------------------------------------------ the dashboard (0003)
web_sessions = Table(
    "web_sessions", metadata,
    Column("id", String(64), primary_key=True),         # SHA-256 of the cookie's secret
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("csrf_token", String(64), nullable=False),
    Column("data", Text, nullable=False, default="{}"),  # JSON: an OpenID Connect flow's state
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_web_sessions_account", "account_id"),
    Index("ix_web_sessions_expires", "expires_at"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", BigInteger, nullable=False),
    Column("actor_id", Integer, nullable=True),          # the account acting (None: anonymous, system)
    Column("actor", String(320), nullable=False, default=""),   # its email then, or "system", "cli"
    Column("action", String(64), nullable=False),        # e.g. signin, signin.failed, key.created
    Column("target", String(320), nullable=False, default=""),  # what it acted on: key id, email...
    Column("ip", String(64), nullable=True),
    Column("detail", Text, nullable=False, default="{}"),       # JSON, never a secret
    Index("ix_audit_time", "created_at"),
    Index("ix_audit_action_time", "action", "created_at"),
    Index("ix_audit_actor", "actor_id", "id"),
)

auth_tokens = Table(
    "auth_tokens", metadata,
    Column("id", String(64), primary_key=True),         # SHA-256 of the one-time token
    Column("purpose", String(16), nullable=False),       # reset | invite
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("email", String(320), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

oidc_identities = Table(
    "oidc_identities", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(300), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("issuer", "subject", name="uq_oidc_issuer_subject"),
    Index("ix_oidc_account", "account_id"),
)


# ------------------------------------------------------------------ top-ups and payments (0003_payments)
topups = Table(
    "topups", metadata,
    Column("id", String(32), primary_key=True),          # tu_<hex>: Razorpay's receipt and notes.topup_id
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("provider", String(16), nullable=False),      # razorpay | test
    Column("status", String(16), nullable=False),        # created | paid | failed
    Column("credit_micros", BigInteger, nullable=False),  # what the wallet receives
    Column("fee_paise", BigInteger, nullable=False),
    Column("gst_paise", BigInteger, nullable=False),
    Column("amount_paise", BigInteger, nullable=False),  # what the customer pays: credits + fee + GST
    Column("currency", String(3), nullable=False),
    Column("order_id", String(64), nullable=True, unique=True),   # the provider's order (order_...)
    Column("payment_id", String(64), nullable=True),     # the payment that paid it
    Column("error", Text, nullable=True),                # the last failure or refusal, for the admin
    Column("created_at", BigInteger, nullable=False),
    Column("paid_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_topups_account", "account_id", "created_at"),
)

payments = Table(
    "payments", metadata,
    # the provider's payment id: inserting it is what credits a wallet, so a payment credits once
    Column("id", String(64), primary_key=True),
    Column("provider", String(16), nullable=False),
    # one credited payment per top-up, whichever payment of the order arrives
    Column("topup_id", String(32), ForeignKey("topups.id", ondelete="RESTRICT"), nullable=False, unique=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("amount_paise", BigInteger, nullable=False),
    Column("credit_micros", BigInteger, nullable=False),
    Column("method", String(32), nullable=True),
    Column("source", String(16), nullable=False),        # callback | webhook | checkout (test)
    Column("refunded_paise", BigInteger, nullable=False, default=0),
    Column("refund_claimed_micros", BigInteger, nullable=False, default=0),   # what refunds took back
    Column("refund_shortfall_micros", BigInteger, nullable=False, default=0),  # of that, not in the wallet
    Column("created_at", BigInteger, nullable=False),
)

refunds = Table(
    "refunds", metadata,
    Column("id", String(64), primary_key=True),          # the provider's refund id: debited once
    Column("payment_id", String(64), ForeignKey("payments.id", ondelete="RESTRICT"), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("amount_paise", BigInteger, nullable=False),
    Column("claimed_micros", BigInteger, nullable=False),    # the credits this refund takes back
    Column("debited_micros", BigInteger, nullable=False),    # what the wallet gave (ledger `refund` entry)
    Column("shortfall_micros", BigInteger, nullable=False),  # what it could not (balance never below zero)
    Column("created_at", BigInteger, nullable=False),
    Index("ix_refunds_payment", "payment_id"),
)


# ------------------------------------------------------------------ history and admin (0004)
admin_keys = Table(
    "admin_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),  # its admin
    Column("name", String(200), nullable=False, default=""),
    Column("key_hash", String(64), nullable=False, unique=True),     # SHA-256 of sk-admin-<64 hex>
    Column("display", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Index("ix_admin_keys_account", "account_id"),
)

# Daily rollups of closed days (services/history.py): a day is a local calendar day in time
# zone `tz`, numbered from 1970-01-01; rows appear once the day is over and never change
# (usage records and ledger entries are append-only). rollup_state.end_day: days before it
# are rolled up for that account and zone.
usage_daily = Table(
    "usage_daily", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("tz", String(64), primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("cache_hits", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("latency_ms", BigInteger, nullable=False),       # the sum, for the mean
)

ledger_daily = Table(
    "ledger_daily", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("tz", String(64), primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("entries", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("last_id", BigInteger, nullable=False),           # the day's last entry of this kind
)

rollup_state = Table(
    "rollup_state", metadata,
    Column("account_id", Integer, primary_key=True),
    Column("tz", String(64), primary_key=True),
    Column("end_day", Integer, nullable=False),
)


# ------------------------------------------------------------------ response caches (0005)
cache_entries = Table(
    "cache_entries", metadata,
    Column("key", String(64), primary_key=True),          # the exact key (domain/cache_rules.py)
    Column("scope", String(64), nullable=False),          # a:<account>, k:<key id> or shared
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("model", String(200), nullable=False),
    Column("provider", String(64), nullable=False, default=""),
    Column("context", String(64), nullable=True),         # the semantic context key
    Column("query", Text, nullable=True),                 # the embedded last user turn
    Column("vector", LargeBinary, nullable=True),         # its embedding, float32 little-endian
    Column("response", LargeBinary, nullable=False),      # the chat.completion JSON
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("charge", BigInteger, nullable=False, default=0),   # micro-INR of the original call
    Column("hits", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=False),   # LRU eviction
    Index("ix_cache_entries_account", "account_id", "model"),
    Index("ix_cache_entries_model", "model"),
    Index("ix_cache_entries_created", "created_at"),
    Index("ix_cache_entries_expires", "expires_at"),
    Index("ix_cache_entries_used", "last_used_at"),
)

cache_savings = Table(
    "cache_savings", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("hits", BigInteger, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("saved", BigInteger, nullable=False, default=0),    # micro-INR not spent thanks to hits
    Column("updated_at", BigInteger, nullable=False),
)
