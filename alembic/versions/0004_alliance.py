"""Alliance membership and jobs: provider licence and decision fields with a standing cache,
certificates as their own table (the single certificate of an electrician moves there),
electrician codes, shifts, positions and active flag; jobs with exclusions, an append-only
event log and attachments. No double booking: a partial unique index lets an electrician
hold at most one active urgent job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op


revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out (migrations never import application code); equal to the models' constants.
ACTIVE_URGENT_JOB = ("urgent AND status IN ('offered', 'accepted', 'en_route', 'on_site', "
                     "'in_progress')")
JOB_STATUSES = ("'new', 'awaiting_dispatch', 'offered', 'accepted', 'en_route', 'on_site', "
                "'in_progress', 'awaiting_sign_off', 'closed', 'cancelled', 'escalated'")
ASSIGNED_STATUSES = ("'offered', 'accepted', 'en_route', 'on_site', 'in_progress', "
                     "'awaiting_sign_off'")
EVENT_KINDS = ("'created', 'offer', 'accept', 'decline', 'offer_expired', 'start_travel', "
               "'check_in', 'no_show', 'start_work', 'attach_photo', 'request_sign_off', "
               "'sign_off', 'cancel', 'cannot_complete', 'escalate'")


def upgrade() -> None:
    # ---------------------------------------------------------------- providers
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('licence_number', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('licence_issued', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('decided_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('decision_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('receives_offers', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('standing_reasons', sa.Text(), nullable=False,
                                      server_default='[]'))
        batch_op.add_column(sa.Column('standing_checked_on', sa.Date(), nullable=True))
        batch_op.create_foreign_key(op.f('fk_providers_decided_by_id_users'), 'users',
                                    ['decided_by_id'], ['id'])
        batch_op.create_check_constraint(
            op.f('ck_providers_licence_dates_valid'),
            'licence_issued IS NULL OR licence_expiry IS NULL OR licence_issued <= licence_expiry')
    # Existing rows applied when they were created; standing is computed on the next refresh.
    op.execute("UPDATE providers SET applied_at = created_at")

    # ---------------------------------------------------------------- certificates
    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('electrician_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('expires', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['electrician_id'], ['electricians.id'], name=op.f('fk_certificates_electrician_id_electricians'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('electrician_id', 'type', 'number', name=op.f('uq_certificates_electrician_id_type_number'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificates_electrician_id'), ['electrician_id'], unique=False)
    # The one certificate each electrician had moves over; its number was never recorded.
    op.execute("INSERT INTO certificates (electrician_id, type, number, expires) "
               "SELECT id, certificate_type, 'UNRECORDED-' || id, certificate_expiry "
               "FROM electricians")

    # ---------------------------------------------------------------- electricians
    with op.batch_alter_table('electricians', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('shift_start', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('shift_end', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('weekdays', sa.Integer(), nullable=False,
                                      server_default='127'))
        batch_op.add_column(sa.Column('last_lat', sa.Numeric(precision=9, scale=6), nullable=True))
        batch_op.add_column(sa.Column('last_lon', sa.Numeric(precision=9, scale=6), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('active', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE electricians SET code = 'EL' || id, created_at = "
               "(SELECT p.created_at FROM providers p WHERE p.id = electricians.provider_id)")
    with op.batch_alter_table('electricians', schema=None) as batch_op:
        batch_op.alter_column('code', existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column('created_at', existing_type=sa.DateTime(timezone=True),
                              nullable=False)
        batch_op.drop_column('certificate_type')
        batch_op.drop_column('certificate_expiry')
        batch_op.create_unique_constraint(op.f('uq_electricians_provider_id_code'),
                                          ['provider_id', 'code'])
        batch_op.create_check_constraint(op.f('ck_electricians_weekdays_range'),
                                         'weekdays BETWEEN 0 AND 127')
        batch_op.create_check_constraint(op.f('ck_electricians_shift_complete'),
                                         '(shift_start IS NULL) = (shift_end IS NULL)')
        batch_op.create_check_constraint(
            op.f('ck_electricians_last_position_complete'),
            '(last_lat IS NULL AND last_lon IS NULL AND last_seen_at IS NULL)'
            ' OR (last_lat IS NOT NULL AND last_lon IS NOT NULL AND last_seen_at IS NOT NULL)')
        batch_op.create_check_constraint(
            op.f('ck_electricians_positions_in_range'),
            '(home_lat IS NULL OR home_lat BETWEEN -90 AND 90)'
            ' AND (home_lon IS NULL OR home_lon BETWEEN -180 AND 180)'
            ' AND (last_lat IS NULL OR last_lat BETWEEN -90 AND 90)'
            ' AND (last_lon IS NULL OR last_lon BETWEEN -180 AND 180)')

    # ---------------------------------------------------------------- jobs
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('park_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('alliance', sa.String(length=32), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('lat', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.Column('lon', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.Column('required_skills', sa.String(length=255), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('service_minutes', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('electrician_id', sa.Integer(), nullable=True),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('offer_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('on_site_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('clock_stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('photos', sa.Integer(), nullable=False),
    sa.Column('signed_off_by_id', sa.Integer(), nullable=True),
    sa.Column('signer_name', sa.String(length=64), nullable=True),
    sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
    sa.Column('last_reason', sa.Text(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('repair', 'alarm', 'patrol', 'inspection')", name=op.f('ck_jobs_kind_valid')),
    sa.CheckConstraint("alliance IN ('shared_electricians', 'energy_cloud_butler')", name=op.f('ck_jobs_alliance_valid')),
    sa.CheckConstraint(f"status IN ({JOB_STATUSES})", name=op.f('ck_jobs_status_valid')),
    sa.CheckConstraint("(alliance = 'shared_electricians' AND provider_id IS NULL)"
                       " OR (alliance = 'energy_cloud_butler' AND provider_id IS NOT NULL)",
                       name=op.f('ck_jobs_provider_matches_alliance')),
    sa.CheckConstraint("(urgent AND on_site_deadline IS NOT NULL)"
                       " OR (NOT urgent AND on_site_deadline IS NULL)",
                       name=op.f('ck_jobs_deadline_when_urgent')),
    sa.CheckConstraint(f"status NOT IN ({ASSIGNED_STATUSES}) OR electrician_id IS NOT NULL",
                       name=op.f('ck_jobs_assigned_has_electrician')),
    sa.CheckConstraint("status <> 'offered' OR offer_expires_at IS NOT NULL", name=op.f('ck_jobs_offer_has_expiry')),
    sa.CheckConstraint('window_start IS NULL OR window_end IS NULL OR window_end > window_start', name=op.f('ck_jobs_window_valid')),
    sa.CheckConstraint('service_minutes > 0', name=op.f('ck_jobs_service_minutes_positive')),
    sa.CheckConstraint('photos >= 0', name=op.f('ck_jobs_photos_nonnegative')),
    sa.CheckConstraint('lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180', name=op.f('ck_jobs_position_in_range')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_jobs_version_positive')),
    sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], name=op.f('fk_jobs_cancelled_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_jobs_created_by_id_users')),
    sa.ForeignKeyConstraint(['electrician_id'], ['electricians.id'], name=op.f('fk_jobs_electrician_id_electricians')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_jobs_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['park_id'], ['parks.id'], name=op.f('fk_jobs_park_id_parks')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_jobs_provider_id_providers')),
    sa.ForeignKeyConstraint(['signed_off_by_id'], ['users.id'], name=op.f('fk_jobs_signed_off_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('code', name=op.f('uq_jobs_code'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_electrician_id'), ['electrician_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_park_id'), ['park_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index('ix_jobs_status_offer_expires_at', ['status', 'offer_expires_at'], unique=False)
        # The database itself refuses a second active urgent job for one electrician.
        batch_op.create_index('uq_jobs_active_urgent_electrician', ['electrician_id'], unique=True,
                              sqlite_where=sa.text(ACTIVE_URGENT_JOB),
                              postgresql_where=sa.text(ACTIVE_URGENT_JOB))

    op.create_table('job_exclusions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('electrician_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('excluded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("reason IN ('decline', 'offer_expired', 'no_show', 'cannot_complete')", name=op.f('ck_job_exclusions_reason_valid')),
    sa.ForeignKeyConstraint(['electrician_id'], ['electricians.id'], name=op.f('fk_job_exclusions_electrician_id_electricians')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_exclusions_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_exclusions')),
    sa.UniqueConstraint('job_id', 'electrician_id', name=op.f('uq_job_exclusions_job_id_electrician_id'))
    )
    with op.batch_alter_table('job_exclusions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_exclusions_electrician_id'), ['electrician_id'], unique=False)

    op.create_table('job_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('electrician_id', sa.Integer(), nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('seq >= 1', name=op.f('ck_job_events_seq_positive')),
    sa.CheckConstraint(f"kind IN ({EVENT_KINDS})", name=op.f('ck_job_events_kind_valid')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_job_events_actor_id_users')),
    sa.ForeignKeyConstraint(['electrician_id'], ['electricians.id'], name=op.f('fk_job_events_electrician_id_electricians')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events')),
    sa.UniqueConstraint('job_id', 'seq', name=op.f('uq_job_events_job_id_seq'))
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_events_electrician_id'), ['electrician_id'], unique=False)

    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=128), nullable=False),
    sa.Column('content_type', sa.String(length=32), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('photo', 'signature')", name=op.f('ck_attachments_kind_valid')),
    sa.CheckConstraint("content_type IN ('image/jpeg', 'image/png', 'image/webp')", name=op.f('ck_attachments_content_type_valid')),
    sa.CheckConstraint("kind <> 'signature' OR content_type = 'image/png'", name=op.f('ck_attachments_signature_is_png')),
    sa.CheckConstraint('size_bytes > 0', name=op.f('ck_attachments_size_positive')),
    sa.ForeignKeyConstraint(['event_id'], ['job_events.id'], name=op.f('fk_attachments_event_id_job_events')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_attachments_job_id_jobs')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_attachments_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_job_id'))
    op.drop_table('attachments')
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_events_electrician_id'))
    op.drop_table('job_events')
    with op.batch_alter_table('job_exclusions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_exclusions_electrician_id'))
    op.drop_table('job_exclusions')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_active_urgent_electrician')
        batch_op.drop_index('ix_jobs_status_offer_expires_at')
        batch_op.drop_index(batch_op.f('ix_jobs_provider_id'))
        batch_op.drop_index(batch_op.f('ix_jobs_park_id'))
        batch_op.drop_index(batch_op.f('ix_jobs_enterprise_id'))
        batch_op.drop_index(batch_op.f('ix_jobs_electrician_id'))
    op.drop_table('jobs')

    # Back to one certificate per electrician: the one valid longest (lossy by nature).
    with op.batch_alter_table('electricians', schema=None) as batch_op:
        batch_op.add_column(sa.Column('certificate_type', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('certificate_expiry', sa.Date(), nullable=True))
    op.execute(
        "UPDATE electricians SET "
        "certificate_type = COALESCE((SELECT c.type FROM certificates c "
        "WHERE c.electrician_id = electricians.id ORDER BY c.expires DESC, c.id DESC LIMIT 1), "
        "''), "
        "certificate_expiry = COALESCE((SELECT c.expires FROM certificates c "
        "WHERE c.electrician_id = electricians.id ORDER BY c.expires DESC, c.id DESC LIMIT 1), "
        "'1970-01-01')")
    with op.batch_alter_table('electricians', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_electricians_positions_in_range'), type_='check')
        batch_op.drop_constraint(op.f('ck_electricians_last_position_complete'), type_='check')
        batch_op.drop_constraint(op.f('ck_electricians_shift_complete'), type_='check')
        batch_op.drop_constraint(op.f('ck_electricians_weekdays_range'), type_='check')
        batch_op.drop_constraint(op.f('uq_electricians_provider_id_code'), type_='unique')
        batch_op.alter_column('certificate_type', existing_type=sa.String(length=64),
                              nullable=False)
        batch_op.alter_column('certificate_expiry', existing_type=sa.Date(), nullable=False)
        batch_op.drop_column('created_at')
        batch_op.drop_column('active')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('last_lon')
        batch_op.drop_column('last_lat')
        batch_op.drop_column('weekdays')
        batch_op.drop_column('shift_end')
        batch_op.drop_column('shift_start')
        batch_op.drop_column('code')

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_electrician_id'))
    op.drop_table('certificates')

    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_providers_licence_dates_valid'), type_='check')
        batch_op.drop_constraint(op.f('fk_providers_decided_by_id_users'), type_='foreignkey')
        batch_op.drop_column('standing_checked_on')
        batch_op.drop_column('standing_reasons')
        batch_op.drop_column('receives_offers')
        batch_op.drop_column('decision_note')
        batch_op.drop_column('decided_by_id')
        batch_op.drop_column('decided_at')
        batch_op.drop_column('applied_at')
        batch_op.drop_column('licence_issued')
        batch_op.drop_column('licence_number')
