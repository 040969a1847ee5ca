"""Alliance operations: custody O&M contracts with their equipment, alarms raised from
metering data, plans of planned work (jobs point at the plan, their planned electrician,
order and start; contract jobs carry their equipment and due day, one job per item and day),
and enterprise site positions for alarm jobs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:12:14.499223+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op


revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispatch_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('park_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('alliance', sa.String(length=32), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('engine', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('solve_s', sa.Float(), nullable=False),
    sa.Column('placed', sa.Integer(), nullable=False),
    sa.Column('travel_minutes', sa.Integer(), nullable=False),
    sa.Column('unplaced', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['park_id'], ['parks.id'], name=op.f('fk_dispatch_plans_park_id_parks')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_dispatch_plans_provider_id_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_plans'))
    )
    with op.batch_alter_table('dispatch_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispatch_plans_park_id'), ['park_id'], unique=False)

    op.create_table('om_contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('frequency', sa.String(length=16), nullable=False),
    sa.Column('job_kind', sa.String(length=16), nullable=False),
    sa.Column('window_start', sa.Time(), nullable=False),
    sa.Column('window_end', sa.Time(), nullable=False),
    sa.Column('service_minutes', sa.Integer(), nullable=False),
    sa.Column('required_skills', sa.String(length=255), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("frequency IN ('daily', 'weekly', 'monthly')", name=op.f('ck_om_contracts_frequency_valid')),
    sa.CheckConstraint("job_kind IN ('patrol', 'inspection')", name=op.f('ck_om_contracts_job_kind_valid')),
    sa.CheckConstraint('ends_on IS NULL OR ends_on >= starts_on', name=op.f('ck_om_contracts_dates_valid')),
    sa.CheckConstraint('service_minutes > 0', name=op.f('ck_om_contracts_service_minutes_positive')),
    sa.CheckConstraint('window_end > window_start', name=op.f('ck_om_contracts_window_valid')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_om_contracts_created_by_id_users')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_om_contracts_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_om_contracts_provider_id_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_om_contracts')),
    sa.UniqueConstraint('code', name=op.f('uq_om_contracts_code'))
    )
    with op.batch_alter_table('om_contracts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_contracts_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_om_contracts_provider_id'), ['provider_id'], unique=False)

    op.create_table('om_contract_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('equipment_kind', sa.String(length=32), nullable=False),
    sa.Column('lat', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.Column('lon', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.CheckConstraint('lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180', name=op.f('ck_om_contract_items_position_in_range')),
    sa.ForeignKeyConstraint(['contract_id'], ['om_contracts.id'], name=op.f('fk_om_contract_items_contract_id_om_contracts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_om_contract_items')),
    sa.UniqueConstraint('contract_id', 'name', name=op.f('uq_om_contract_items_contract_id_name'))
    )
    with op.batch_alter_table('om_contract_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_contract_items_contract_id'), ['contract_id'], unique=False)

    op.create_table('alarms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('park_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=24), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=True),
    sa.Column('transformer_id', sa.Integer(), nullable=True),
    sa.Column('metering_point_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("rule IN ('load_rate', 'metering_gap', 'abnormal_reading')", name=op.f('ck_alarms_rule_valid')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_alarms_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_alarms_job_id_jobs')),
    sa.ForeignKeyConstraint(['metering_point_id'], ['metering_points.id'], name=op.f('fk_alarms_metering_point_id_metering_points')),
    sa.ForeignKeyConstraint(['park_id'], ['parks.id'], name=op.f('fk_alarms_park_id_parks')),
    sa.ForeignKeyConstraint(['transformer_id'], ['transformers.id'], name=op.f('fk_alarms_transformer_id_transformers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarms')),
    sa.UniqueConstraint('key', name=op.f('uq_alarms_key'))
    )
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alarms_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarms_park_id'), ['park_id'], unique=False)

    with op.batch_alter_table('enterprises', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_lat', sa.Numeric(precision=9, scale=6), nullable=True))
        batch_op.add_column(sa.Column('site_lon', sa.Numeric(precision=9, scale=6), nullable=True))
        batch_op.create_check_constraint(op.f('ck_enterprises_site_complete'),
                                         '(site_lat IS NULL) = (site_lon IS NULL)')
        batch_op.create_check_constraint(
            op.f('ck_enterprises_site_in_range'),
            '(site_lat IS NULL OR site_lat BETWEEN -90 AND 90)'
            ' AND (site_lon IS NULL OR site_lon BETWEEN -180 AND 180)')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contract_item_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('due_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('plan_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('planned_electrician_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('planned_seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('planned_start', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_plan_id'), ['plan_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_jobs_contract_item_id_due_on'), ['contract_item_id', 'due_on'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_contract_item_id_om_contract_items'), 'om_contract_items', ['contract_item_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_planned_electrician_id_electricians'), 'electricians', ['planned_electrician_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_plan_id_dispatch_plans'), 'dispatch_plans', ['plan_id'], ['id'])
        batch_op.create_check_constraint(op.f('ck_jobs_contract_due_complete'),
                                         '(contract_item_id IS NULL) = (due_on IS NULL)')



def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_jobs_contract_due_complete'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_jobs_plan_id_dispatch_plans'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_jobs_planned_electrician_id_electricians'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_jobs_contract_item_id_om_contract_items'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_jobs_contract_item_id_due_on'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_jobs_plan_id'))
        batch_op.drop_column('planned_start')
        batch_op.drop_column('planned_seq')
        batch_op.drop_column('planned_electrician_id')
        batch_op.drop_column('plan_id')
        batch_op.drop_column('due_on')
        batch_op.drop_column('contract_item_id')

    with op.batch_alter_table('enterprises', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_enterprises_site_in_range'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_enterprises_site_complete'), type_='check')
        batch_op.drop_column('site_lon')
        batch_op.drop_column('site_lat')

    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alarms_park_id'))
        batch_op.drop_index(batch_op.f('ix_alarms_enterprise_id'))

    op.drop_table('alarms')
    with op.batch_alter_table('om_contract_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_contract_items_contract_id'))

    op.drop_table('om_contract_items')
    with op.batch_alter_table('om_contracts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_contracts_provider_id'))
        batch_op.drop_index(batch_op.f('ix_om_contracts_enterprise_id'))

    op.drop_table('om_contracts')
    with op.batch_alter_table('dispatch_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatch_plans_park_id'))

    op.drop_table('dispatch_plans')
