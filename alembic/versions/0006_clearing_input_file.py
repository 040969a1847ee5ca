"""Clearing runs keep their input file (the network, limits, base loads and rules the run was
cleared with), published with the result so an auditor can clear the day again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 01:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('clearing_runs') as batch:
        batch.add_column(sa.Column('input_file', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('clearing_runs') as batch:
        batch.drop_column('input_file')
