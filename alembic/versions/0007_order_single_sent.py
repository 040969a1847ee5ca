"""Orders remember when a single-transaction write of their first version was first sent.

Such an order keeps to the single path: the chain may hold it before the database knows, so
it must never be put in a batch as well. Orders still waiting on the single path when this
runs are marked as if sent (they may have been).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 04:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('single_sent_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE orders SET single_sent_at = updated_at WHERE chain_status = 'pending' "
               "AND chain_path = 'single' AND chain_version = 0")


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('single_sent_at')
