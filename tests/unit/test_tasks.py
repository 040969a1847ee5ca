"""The Celery app can be pointed at another broker and back within one process."""

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
