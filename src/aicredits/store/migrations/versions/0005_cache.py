"""response caches: cache_entries (exact and semantic, per account unless shared) and
cache_savings (what hits saved each account); both go with their account

Revision ID: 0005_cache
Revises: 0003_holds
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_cache"
down_revision = "0003_holds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("context", sa.String(64), nullable=True),
        sa.Column("query", sa.Text, nullable=True),
        sa.Column("vector", sa.LargeBinary, nullable=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("charge", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cache_entries_account", "cache_entries", ["account_id", "model"])
    op.create_index("ix_cache_entries_model", "cache_entries", ["model"])
    op.create_index("ix_cache_entries_created", "cache_entries", ["created_at"])
    op.create_index("ix_cache_entries_expires", "cache_entries", ["expires_at"])
    op.create_index("ix_cache_entries_used", "cache_entries", ["last_used_at"])
    op.create_table(
        "cache_savings",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("hits", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("saved", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_savings")
    op.drop_table("cache_entries")
