"""Orders remember when a single-transaction write of their first version was first sent,
and each enterprise counts the order actions waiting for its chain writer.

An order sent on its own keeps to the single path: the chain may hold it before the database
knows, so it must never be put in a batch as well. Orders still waiting on the single path
when this runs are marked as if sent (they may have been).

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
    op.create_table(
        'chain_write_requests',
        sa.Column('enterprise_id', sa.Integer(), nullable=False),
        sa.Column('waiting', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'],
                                name=op.f('fk_chain_write_requests_enterprise_id_enterprises'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('enterprise_id', name=op.f('pk_chain_write_requests')),
    )


def downgrade() -> None:
    op.drop_table('chain_write_requests')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('single_sent_at')
