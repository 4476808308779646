"""billing history, request log and admin: keyset-page indexes on ledger_entries and
usage_records, admin API keys, daily rollups of closed days

Revision ID: 0004_history
Revises: 0005_cache
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_history"
down_revision = "0005_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # pages are (created_at, id) keysets within one account, newest first
    op.create_index("ix_ledger_account_time", "ledger_entries", ["account_id", "created_at", "id"])
    op.create_index("ix_ledger_account_kind_time", "ledger_entries", ["account_id", "kind", "created_at", "id"])
    op.drop_index("ix_usage_account_time", table_name="usage_records")
    op.create_index("ix_usage_account_time_id", "usage_records", ["account_id", "created_at", "id"])

    op.create_table(
        "admin_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("display", sa.String(40), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_admin_keys_account", "admin_keys", ["account_id"])

    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.Integer, primary_key=True),
        sa.Column("tz", sa.String(64), primary_key=True),
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("cache_hits", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ledger_daily",
        sa.Column("account_id", sa.Integer, primary_key=True),
        sa.Column("tz", sa.String(64), primary_key=True),
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("entries", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rollup_state",
        sa.Column("account_id", sa.Integer, primary_key=True),
        sa.Column("tz", sa.String(64), primary_key=True),
        sa.Column("end_day", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.drop_table("ledger_daily")
    op.drop_table("usage_daily")
    op.drop_index("ix_admin_keys_account", table_name="admin_keys")
    op.drop_table("admin_keys")
    op.drop_index("ix_usage_account_time_id", table_name="usage_records")
    op.create_index("ix_usage_account_time", "usage_records", ["account_id", "created_at"])
    op.drop_index("ix_ledger_account_kind_time", table_name="ledger_entries")
    op.drop_index("ix_ledger_account_time", table_name="ledger_entries")
