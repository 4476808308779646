"""Tables (SQLAlchemy Core). Money columns are BIGINT micro-INR; times are epoch milliseconds."""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        ForeignKey,
                        Index,
                        Integer,
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
    Index("ix_api_keys_account", "account_id"),
)

holds = Table(
    "holds", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
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
    Index("ix_usage_account_time", "account_id", "created_at"),
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
