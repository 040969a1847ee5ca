"""The Celery app can be pointed at another broker and back within one process, and a
forked worker process does not share its parent's database connections."""

from __future__ import annotations

from dataclasses import replace

from parkgrid import tasks


def test_eager_tasks_still_run_after_switching_to_a_broker_and_back(demo_platform):
    settings = demo_platform.settings
    tasks.configure(settings, demo_platform)
    assert tasks.record_order.delay(10**9).get() == "missing"  # creates the in-memory pools
    # Only pointed at the broker: nothing is sent there, so no broker is needed.
    tasks.configure(replace(settings, broker_url="redis://127.0.0.1:6379/11"), demo_platform)
    tasks.configure(settings, demo_platform)
    assert tasks.record_order.delay(10**9).get() == "missing"


def test_a_forked_worker_process_opens_its_own_database_connections(demo_platform):
    from celery.signals import worker_process_init

    tasks.configure(demo_platform.settings, demo_platform)
    with demo_platform.engine.connect() as connection:
        inherited = connection.connection.dbapi_connection  # pooled when closed
    with demo_platform.engine.connect() as connection:
        assert connection.connection.dbapi_connection is inherited  # the pool reuses it
    worker_process_init.send(sender=None)  # what Celery sends in a new worker process
    with demo_platform.engine.connect() as connection:
        assert connection.connection.dbapi_connection is not inherited
