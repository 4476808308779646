"""holds: a lease's progress (the charge accrued so far, and the usage row to write with it)

Revision ID: 0003_holds
Revises: 0003_payments
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_holds"
down_revision = "0003_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the running process renews expires_at (the lease) and records here what its call has
    # delivered so far; the sweeper charges `accrued` if the process dies (docs/billing.md)
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("accrued", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("progress")
        batch.drop_column("accrued")
