"""top-ups, payments (one credit per provider payment id) and refunds

Revision ID: 0003_payments
Revises: 0003_dashboard
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_payments"
down_revision = "0003_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credit_micros", sa.BigInteger, nullable=False),
        sa.Column("fee_paise", sa.BigInteger, nullable=False),
        sa.Column("gst_paise", sa.BigInteger, nullable=False),
        sa.Column("amount_paise", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True, unique=True),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("paid_at", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_topups_account", "topups", ["account_id", "created_at"])
    op.create_table(
        "payments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("topup_id", sa.String(32), sa.ForeignKey("topups.id", ondelete="RESTRICT"), nullable=False,
                  unique=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("amount_paise", sa.BigInteger, nullable=False),
        sa.Column("credit_micros", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(32), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("refunded_paise", sa.BigInteger, nullable=False),
        sa.Column("refund_claimed_micros", sa.BigInteger, nullable=False),
        sa.Column("refund_shortfall_micros", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("amount_paise", sa.BigInteger, nullable=False),
        sa.Column("claimed_micros", sa.BigInteger, nullable=False),
        sa.Column("debited_micros", sa.BigInteger, nullable=False),
        sa.Column("shortfall_micros", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_refunds_payment", "refunds", ["payment_id"])


def downgrade() -> None:
    for name in ("refunds", "payments", "topups"):
        op.drop_table(name)
