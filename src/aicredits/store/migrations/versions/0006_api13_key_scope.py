"""api keys: an expiry and a model allow-list (NULL: never expires, every model)

Revision ID: 0006_api13
Revises: 0004_history
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_api13"
down_revision = "0004_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable columns without a default: existing keys keep working as before, no table rewrite
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("models", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("models")
        batch.drop_column("expires_at")
