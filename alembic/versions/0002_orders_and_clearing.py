"""Orders (sell listings and buy bids) replace listings; demand profiles; clearing runs.

Existing listings are carried over as sell orders with their chain state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:44:42.022361+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('demand_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('delivery_day', sa.Date(), nullable=True),
    sa.Column('period_index', sa.Integer(), nullable=False),
    sa.Column('demand_kva', sa.Numeric(precision=12, scale=1), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.CheckConstraint("source IN ('declared', 'metered')", name=op.f('ck_demand_profiles_source_valid')),
    sa.CheckConstraint('demand_kva >= 0', name=op.f('ck_demand_profiles_demand_kva_nonnegative')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_demand_profiles_enterprise_id_enterprises'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_demand_profiles')),
    sa.UniqueConstraint('enterprise_id', 'delivery_day', 'period_index', name=op.f('uq_demand_profiles_enterprise_id_delivery_day_period_index'))
    )
    op.create_table('clearing_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('park_id', sa.Integer(), nullable=False),
    sa.Column('delivery_day', sa.Date(), nullable=False),
    sa.Column('run_number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pricing_rule', sa.String(length=16), nullable=False),
    sa.Column('tie_rule', sa.String(length=16), nullable=False),
    sa.Column('result_hash', sa.String(length=66), nullable=False),
    sa.Column('result_root', sa.String(length=66), nullable=False),
    sa.Column('result_file', sa.LargeBinary(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publish_tx_hash', sa.String(length=66), nullable=True),
    sa.Column('publish_block_number', sa.BigInteger(), nullable=True),
    sa.Column('void_reason', sa.Text(), nullable=True),
    sa.Column('voided_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('cleared', 'published', 'voided')", name=op.f('ck_clearing_runs_status_valid')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_clearing_runs_created_by_id_users')),
    sa.ForeignKeyConstraint(['park_id'], ['parks.id'], name=op.f('fk_clearing_runs_park_id_parks')),
    sa.ForeignKeyConstraint(['published_by_id'], ['users.id'], name=op.f('fk_clearing_runs_published_by_id_users')),
    sa.ForeignKeyConstraint(['voided_by_id'], ['users.id'], name=op.f('fk_clearing_runs_voided_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearing_runs')),
    sa.UniqueConstraint('park_id', 'delivery_day', 'run_number', name=op.f('uq_clearing_runs_park_id_delivery_day_run_number'))
    )
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('delivery_day', sa.Date(), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('all_or_none', sa.Boolean(), nullable=False),
    sa.Column('min_fraction', sa.Numeric(precision=5, scale=4), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=66), nullable=False),
    sa.Column('chain_status', sa.String(length=16), nullable=False),
    sa.Column('chain_version', sa.Integer(), nullable=False),
    sa.Column('chain_path', sa.String(length=8), server_default='single', nullable=False),
    sa.Column('chain_tx_hash', sa.String(length=66), nullable=True),
    sa.Column('chain_block_number', sa.BigInteger(), nullable=True),
    sa.Column('chain_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("chain_status IN ('pending', 'recorded', 'failed')", name=op.f('ck_orders_chain_status_valid')),
    sa.CheckConstraint("chain_path IN ('single', 'batch')", name=op.f('ck_orders_chain_path_valid')),
    sa.CheckConstraint("side IN ('sell', 'buy')", name=op.f('ck_orders_side_valid')),
    sa.CheckConstraint("status IN ('active', 'cancelled')", name=op.f('ck_orders_status_valid')),
    sa.CheckConstraint('min_fraction IS NULL OR (min_fraction > 0 AND min_fraction <= 1)', name=op.f('ck_orders_min_fraction_range')),
    sa.CheckConstraint('price > 0', name=op.f('ck_orders_price_positive')),
    sa.CheckConstraint('version >= 1 AND chain_version >= 0 AND chain_version <= version', name=op.f('ck_orders_versions_valid')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_orders_created_by_id_users')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_orders_enterprise_id_enterprises')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('public_id', name=op.f('uq_orders_public_id'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_chain_status'), ['chain_status'], unique=False)
        batch_op.create_index('ix_orders_delivery_day_side', ['delivery_day', 'side'], unique=False)
        batch_op.create_index('ix_orders_enterprise_id_delivery_day', ['enterprise_id', 'delivery_day'], unique=False)

    op.create_table('clearing_allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('period_index', sa.Integer(), nullable=False),
    sa.Column('quantity_kva', sa.Numeric(precision=12, scale=1), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_clearing_allocations_order_id_orders')),
    sa.ForeignKeyConstraint(['run_id'], ['clearing_runs.id'], name=op.f('fk_clearing_allocations_run_id_clearing_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearing_allocations')),
    sa.UniqueConstraint('run_id', 'order_id', 'period_index', name=op.f('uq_clearing_allocations_run_id_order_id_period_index'))
    )
    with op.batch_alter_table('clearing_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clearing_allocations_order_id'), ['order_id'], unique=False)

    op.create_table('order_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('content_hash', sa.String(length=66), nullable=False),
    sa.Column('document', sa.Text(), nullable=True),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('chain_status', sa.String(length=16), nullable=False),
    sa.Column('chain_tx_hash', sa.String(length=66), nullable=True),
    sa.Column('chain_block_number', sa.BigInteger(), nullable=True),
    sa.Column('chain_error', sa.Text(), nullable=True),
    sa.Column('chain_batch_id', sa.String(length=66), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action IN ('new', 'amend', 'cancel')", name=op.f('ck_order_actions_action_valid')),
    sa.CheckConstraint("chain_status IN ('pending', 'recorded', 'failed')", name=op.f('ck_order_actions_chain_status_valid')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_actions_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_order_actions_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_actions')),
    sa.UniqueConstraint('order_id', 'version', name=op.f('uq_order_actions_order_id_version'))
    )
    with op.batch_alter_table('order_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_actions_chain_batch_id'), ['chain_batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_order_actions_chain_status'), ['chain_status'], unique=False)

    op.create_table('order_periods',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('period_index', sa.Integer(), nullable=False),
    sa.Column('quantity_kva', sa.Numeric(precision=12, scale=1), nullable=False),
    sa.CheckConstraint('period_index >= 0', name=op.f('ck_order_periods_period_index_nonnegative')),
    sa.CheckConstraint('quantity_kva > 0', name=op.f('ck_order_periods_quantity_kva_positive')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_periods_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_periods')),
    sa.UniqueConstraint('order_id', 'period_index', name=op.f('uq_order_periods_order_id_period_index'))
    )
    # Carry listings over as sell orders, keeping ids, content hashes and chain state.
    op.execute("""
        INSERT INTO orders (id, public_id, enterprise_id, created_by_id, side, delivery_day,
                            price, all_or_none, min_fraction, status, version, content_hash,
                            chain_status, chain_version, chain_tx_hash, chain_block_number,
                            chain_error, created_at, updated_at)
        SELECT id, public_id, enterprise_id, created_by_id, 'sell', delivery_day, floor_price,
               all_or_none, NULL,
               CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'active' END,
               1, content_hash,
               CASE status WHEN 'recorded' THEN 'recorded' WHEN 'chain_failed' THEN 'failed'
                           ELSE 'pending' END,
               CASE WHEN status = 'recorded' THEN 1 ELSE 0 END,
               chain_tx_hash, chain_block_number, chain_error, created_at, created_at
        FROM listings""")
    op.execute("""
        INSERT INTO order_periods (order_id, period_index, quantity_kva)
        SELECT listing_id, period_index, quantity_kva FROM listing_periods""")
    op.execute("""
        INSERT INTO order_actions (order_id, version, action, content_hash, requested_by_id,
                                   chain_status, chain_tx_hash, chain_block_number,
                                   chain_error, created_at)
        SELECT id, 1, 'new', content_hash, created_by_id, chain_status, chain_tx_hash,
               chain_block_number, chain_error, created_at
        FROM orders""")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM orders), 0) + 1, false)")

    op.drop_table('listing_periods')
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_listings_enterprise_id_delivery_day'))
        batch_op.drop_index(batch_op.f('ix_listings_status'))

    op.drop_table('listings')
    # Existing parks get the default market rules.
    with op.batch_alter_table('parks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trade_scope', sa.String(length=16), nullable=False,
                                      server_default='park'))
        batch_op.add_column(sa.Column('price_min', sa.Numeric(precision=12, scale=4),
                                      nullable=False, server_default='0.0001'))
        batch_op.add_column(sa.Column('price_max', sa.Numeric(precision=12, scale=4),
                                      nullable=False, server_default='10.0000'))
        batch_op.add_column(sa.Column('pricing_rule', sa.String(length=16), nullable=False,
                                      server_default='zonal'))
        batch_op.add_column(sa.Column('tie_rule', sa.String(length=16), nullable=False,
                                      server_default='pro_rata'))
        batch_op.create_check_constraint(
            op.f('ck_parks_trade_scope_valid'), "trade_scope IN ('park', 'substation', 'transformer')")
        batch_op.create_check_constraint(
            op.f('ck_parks_pricing_rule_valid'), "pricing_rule IN ('zonal', 'pay_as_bid')")
        batch_op.create_check_constraint(
            op.f('ck_parks_tie_rule_valid'), "tie_rule IN ('pro_rata', 'time_priority')")
        batch_op.create_check_constraint(
            op.f('ck_parks_price_range_valid'), 'price_min > 0 AND price_max >= price_min')


def downgrade() -> None:
    # Orders go back to listings: sell orders only; bids and clearing runs are dropped.
    with op.batch_alter_table('parks', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_parks_trade_scope_valid'), type_='check')
        batch_op.drop_constraint(op.f('ck_parks_pricing_rule_valid'), type_='check')
        batch_op.drop_constraint(op.f('ck_parks_tie_rule_valid'), type_='check')
        batch_op.drop_constraint(op.f('ck_parks_price_range_valid'), type_='check')
        batch_op.drop_column('tie_rule')
        batch_op.drop_column('pricing_rule')
        batch_op.drop_column('price_max')
        batch_op.drop_column('price_min')
        batch_op.drop_column('trade_scope')

    op.create_table('listings',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('public_id', sa.VARCHAR(length=36), nullable=False),
    sa.Column('enterprise_id', sa.INTEGER(), nullable=False),
    sa.Column('created_by_id', sa.INTEGER(), nullable=False),
    sa.Column('delivery_day', sa.DATE(), nullable=False),
    sa.Column('floor_price', sa.NUMERIC(precision=12, scale=4), nullable=False),
    sa.Column('all_or_none', sa.BOOLEAN(), nullable=False),
    sa.Column('status', sa.VARCHAR(length=16), nullable=False),
    sa.Column('content_hash', sa.VARCHAR(length=66), nullable=False),
    sa.Column('chain_tx_hash', sa.VARCHAR(length=66), nullable=True),
    sa.Column('chain_block_number', sa.BIGINT(), nullable=True),
    sa.Column('chain_error', sa.TEXT(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending_chain', 'recorded', 'chain_failed', 'cancelled')", name=op.f('ck_listings_status_valid')),
    sa.CheckConstraint('floor_price > 0', name=op.f('ck_listings_floor_price_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_listings_created_by_id_users')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_listings_enterprise_id_enterprises')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listings')),
    sa.UniqueConstraint('public_id', name=op.f('uq_listings_public_id'))
    )
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_listings_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_listings_enterprise_id_delivery_day'), ['enterprise_id', 'delivery_day'], unique=False)

    op.create_table('listing_periods',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('listing_id', sa.INTEGER(), nullable=False),
    sa.Column('period_index', sa.INTEGER(), nullable=False),
    sa.Column('quantity_kva', sa.NUMERIC(precision=12, scale=1), nullable=False),
    sa.CheckConstraint('period_index >= 0', name=op.f('ck_listing_periods_period_index_nonnegative')),
    sa.CheckConstraint('quantity_kva > 0', name=op.f('ck_listing_periods_quantity_kva_positive')),
    sa.ForeignKeyConstraint(['listing_id'], ['listings.id'], name=op.f('fk_listing_periods_listing_id_listings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listing_periods')),
    sa.UniqueConstraint('listing_id', 'period_index', name=op.f('uq_listing_periods_listing_id_period_index'))
    )
    op.execute("""
        INSERT INTO listings (id, public_id, enterprise_id, created_by_id, delivery_day,
                              floor_price, all_or_none, status, content_hash, chain_tx_hash,
                              chain_block_number, chain_error, created_at, recorded_at)
        SELECT id, public_id, enterprise_id, created_by_id, delivery_day, price, all_or_none,
               CASE WHEN status = 'cancelled' THEN 'cancelled'
                    WHEN chain_status = 'recorded' THEN 'recorded'
                    WHEN chain_status = 'failed' THEN 'chain_failed'
                    ELSE 'pending_chain' END,
               content_hash, chain_tx_hash, chain_block_number, chain_error, created_at, NULL
        FROM orders WHERE side = 'sell'""")
    op.execute("""
        INSERT INTO listing_periods (listing_id, period_index, quantity_kva)
        SELECT p.order_id, p.period_index, p.quantity_kva
        FROM order_periods p JOIN orders o ON o.id = p.order_id WHERE o.side = 'sell'""")
    op.drop_table('order_periods')
    with op.batch_alter_table('order_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_actions_chain_status'))
        batch_op.drop_index(batch_op.f('ix_order_actions_chain_batch_id'))

    op.drop_table('order_actions')
    with op.batch_alter_table('clearing_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clearing_allocations_order_id'))

    op.drop_table('clearing_allocations')
    op.drop_table('clearing_runs')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_enterprise_id_delivery_day')
        batch_op.drop_index('ix_orders_delivery_day_side')
        batch_op.drop_index(batch_op.f('ix_orders_chain_status'))

    op.drop_table('orders')
    op.drop_table('demand_profiles')
