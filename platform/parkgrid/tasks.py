"""Celery tasks: each takes ids, is safe to run twice, and is acknowledged only when done."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery
from celery.signals import worker_process_init
from kombu import pools as kombu_pools
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from .chain import ChainTimeoutError, ChainUnavailableError
from .config import Settings, from_env
from .services import calendar
from .services import orders as order_service
from .wiring import Platform

log = logging.getLogger(__name__)

celery_app = Celery("parkgrid")
_platform: Platform | None = None


def configure(settings: Settings, platform: Platform | None = None) -> Celery:
    """Point the Celery app at the settings' broker, or run tasks in-process without one."""
    global _platform
    _platform = platform or Platform(settings)
    if celery_app.conf.broker_url not in (None, settings.broker_url or "memory://"):
        # Another broker than before (tests switch brokers in one process): Celery keeps
        # pooled connections to the old one in kombu's process-wide pools unless they are
        # dropped, and a closed pool left in that registry would be handed out again.
        kombu_pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
    # Celery builds the result backend once and caches it; a process configured again (the
    # tests, a CLI command after the app import) must get the backend of the new settings.
    celery_app._backend_cache = None
    celery_app._local.__dict__.pop("backend", None)
    celery_app.conf.update(
        broker_url=settings.broker_url or "memory://",
        result_backend=settings.result_backend or None,
        task_always_eager=settings.tasks_eager,
        task_eager_propagates=True,
        task_serializer="json",
        accept_content=["json"],
        # Late acknowledgement: a task whose worker dies is delivered again, so every task
        # below is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 600},
        task_default_queue="parkgrid",
    )
    return celery_app


@worker_process_init.connect
def _own_connections(**_kwargs) -> None:
    """A forked worker process must not use the connections its parent opened (the parent
    checks the database and chain before forking): two processes on one connection corrupt
    its protocol state. PostgreSQL reports duplicate prepared statements; on the chain node's
    keep-alive HTTP connection each process may read the other's answers (seen as a contract
    code that "is not this build" or a garbled number)."""
    if _platform is not None:
        _platform.forget_connections()


def get_platform() -> Platform:
    """The worker's platform, built from the environment the first time a task needs it."""
    if _platform is None:
        configure(from_env())
    return _platform


RETRYABLE = (ChainUnavailableError, ChainTimeoutError, OperationalError)


def _retry_or_stay_pending(task, exc: Exception, what: str, pending_result):
    """Retry a chain write through the broker; without one, leave it in the outbox."""
    if task.request.is_eager:
        # No broker to retry through: the write stays pending in the outbox and is sent
        # again by the next outbox flush.
        log.warning("%s stays pending: %s", what, exc)
        return pending_result
    raise task.retry(exc=exc, countdown=min(2 ** task.request.retries, 60)) from exc


@celery_app.task(bind=True, name="parkgrid.record_order", max_retries=20)
def record_order(self, order_id: int) -> str:
    """Record an order's pending actions on chain (they stay in the outbox until then)."""
    try:
        return order_service.record_order_on_chain(get_platform(), order_id)
    except RETRYABLE as exc:
        return _retry_or_stay_pending(self, exc, f"order {order_id}", "pending")


@celery_app.task(bind=True, name="parkgrid.record_enterprise_orders", max_retries=20)
def record_enterprise_orders(self, enterprise_id: int) -> int:
    """Record every pending order action of an enterprise (queued by the first order action
    committed since the last run; see `services.orders.request_chain_write`)."""
    try:
        return order_service.record_enterprise_orders(get_platform(), enterprise_id)
    except RETRYABLE as exc:
        return _retry_or_stay_pending(self, exc, f"orders of enterprise {enterprise_id}", 0)


@celery_app.task(bind=True, name="parkgrid.record_batch", max_retries=20)
def record_batch(self, order_ids: list[int]) -> int:
    """Record the pending actions of many orders in batch transactions (events only)."""
    try:
        return order_service.record_batch_on_chain(get_platform(), order_ids)
    except RETRYABLE as exc:
        return _retry_or_stay_pending(self, exc, f"orders {order_ids}", 0)


# An order still pending this long after its last change has lost its task, or outlived its
# retries through a long chain outage: the scheduled sweep queues it again.
STALE_PENDING_S = 120.0


@celery_app.task(name="parkgrid.flush_outbox")
def flush_outbox(older_than_s: float | None = None) -> int:
    """Queue the chain writer of every enterprise with orders still waiting for their chain
    record; returns how many orders wait.

    With `older_than_s` (the scheduled sweep), only for orders whose last change is at least
    that old, and only while the chain node answers (else the sweep would pile up retries)."""
    platform = get_platform()
    changed_before = None
    if older_than_s is not None:
        try:
            platform.chain.block_number()
        except ChainUnavailableError:
            return 0
        changed_before = calendar.utcnow() - timedelta(seconds=older_than_s)
    with platform.unit_of_work() as session:
        waiting = order_service.pending_by_enterprise(session, changed_before)
    # Each enterprise's writer takes all of its pending orders (and resets its count, so
    # orders placed later queue it again).
    for enterprise_id in sorted(waiting):
        record_enterprise_orders.delay(enterprise_id)
    return sum(waiting.values())


@celery_app.task(bind=True, name="parkgrid.run_clearing", max_retries=5)
def run_clearing(self, park_id: int, delivery_day: str) -> int:
    """Clear one park's delivery day (a day with a live run is not cleared twice)."""
    from datetime import date

    from .services import clearing

    try:
        return clearing.run_clearing(get_platform(), park_id, date.fromisoformat(delivery_day))
    except OperationalError as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=10) from exc


@celery_app.task(name="parkgrid.close_gates")
def close_gates() -> int:
    """Runs every minute: queue the clearing of every day whose gate has just closed."""
    from .services import clearing
    from .services.calendar import utcnow

    platform = get_platform()
    with platform.unit_of_work() as session:
        due = clearing.days_to_clear(session, utcnow())
    for park_id, day in due:
        run_clearing.delay(park_id, day.isoformat())
    return len(due)


@celery_app.task(bind=True, name="parkgrid.settle_run", max_retries=20)
def settle_run(self, run_id: int) -> str:
    """Compute a settlement run (progress kept on the run) and anchor it on chain.

    Safe to deliver twice: a computed run is not computed again and a published one is left
    as it is. When the chain is away the run stays computed and is published later.
    """
    from .services import settlement

    platform = get_platform()
    try:
        settlement.compute(platform, run_id)
    except OperationalError as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=10) from exc
    try:
        return settlement.publish(platform, run_id).status
    except RETRYABLE as exc:
        return _retry_or_stay_pending(self, exc, f"settlement run {run_id}", "computed")


@celery_app.task(name="parkgrid.publish_settlements")
def publish_settlements() -> int:
    """Runs every minute: queue each settlement run left computed or unfinished."""
    from .services import settlement

    platform = get_platform()
    with platform.unit_of_work() as session:
        due = settlement.runs_to_finish(session)
    for run_id in due:
        settle_run.delay(run_id)
    return len(due)


# --------------------------------------------------------------------------- dispatch


def queue(task, *args, **options) -> None:
    """Queue a task after a committed change; a broker outage only delays it (the beat
    schedule's sweeps pick the work up), so it is logged, not raised to the user."""
    try:
        task.apply_async(args, **options) if options else task.delay(*args)
    except Exception:
        log.exception("could not queue %s%s", task.name, args)


@celery_app.task(bind=True, name="parkgrid.dispatch_urgent", max_retries=5,
                 soft_time_limit=60, time_limit=90)
def dispatch_urgent(self) -> int:
    """Take back expired offers, then (with automatic dispatch on) offer every waiting urgent
    job; runs every 15 s and after each repair request, decline or no-show. Returns how many
    offers it made."""
    from .services import dispatch
    from .services import jobs as job_service

    platform = get_platform()
    try:
        job_service.expire_offers(platform)
        if not platform.settings.auto_dispatch:
            return 0
        return len(dispatch.urgent_round(platform).offered)
    except OperationalError as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=5) from exc


# The plan task's own limits leave the solver's time (settings.plan_seconds) a margin: the
# solver stops first and returns the best plan it found.
PLAN_SOFT_MARGIN_S = 30
PLAN_HARD_MARGIN_S = 60


@celery_app.task(bind=True, name="parkgrid.plan_day", max_retries=5)
def plan_day(self, park_id: int, day: str, alliance: str, provider_id: int | None) -> int:
    """Plan one dispatch scope's planned work of a day; returns how many jobs it offered."""
    from datetime import date

    from .services import dispatch

    try:
        outcome = dispatch.plan_day(get_platform(), park_id, date.fromisoformat(day),
                                    dispatch.Scope(alliance, provider_id))
        return len(outcome.offered)
    except OperationalError as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=10) from exc


@celery_app.task(name="parkgrid.plan_planned_work")
def plan_planned_work() -> int:
    """Runs every 5 minutes: queue a plan for each scope and day (today, tomorrow) with
    planned work waiting to be placed."""
    from .services import dispatch

    platform = get_platform()
    if not platform.settings.auto_dispatch:
        return 0
    seconds = platform.settings.plan_seconds
    due = dispatch.days_to_plan(platform)
    for park_id, day, scope in due:
        queue(plan_day, park_id, day.isoformat(), scope.alliance, scope.provider_id,
              soft_time_limit=seconds + PLAN_SOFT_MARGIN_S,
              time_limit=seconds + PLAN_HARD_MARGIN_S)
    return len(due)


@celery_app.task(name="parkgrid.generate_patrols")
def generate_patrols(days_ahead: int = 7) -> int:
    """Runs every hour: create the patrol and inspection jobs of every active O&M contract
    due from today to `days_ahead` days later in each park's zone (once per item and day)."""
    from datetime import timedelta

    from .models import Park
    from .services import om
    from .services.calendar import local_day, utcnow

    platform = get_platform()
    with platform.unit_of_work() as session:
        parks = [(p.id, p.timezone) for p in session.scalars(select(Park))]
    created = 0
    for park_id, zone in parks:
        today = local_day(utcnow(), zone)
        created += len(om.generate_patrols(platform, today, today + timedelta(days=days_ahead),
                                           park_id=park_id))
    return created


@celery_app.task(bind=True, name="parkgrid.scan_alarms", max_retries=5)
def scan_alarms(self, park_id: int, day: str) -> int:
    """Check one park's day of metering data for alarms and open their jobs; urgent ones are
    dispatched at once. Returns how many new alarms it raised."""
    from datetime import date

    from .services import alarms

    try:
        keys = alarms.scan_day(get_platform(), park_id, date.fromisoformat(day))
    except OperationalError as exc:
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=10) from exc
    if keys and get_platform().settings.auto_dispatch:
        queue(dispatch_urgent)
    return len(keys)


@celery_app.task(name="parkgrid.scan_import")
def scan_import(import_id: int) -> int:
    """After a metering import: check each day it brought for alarms."""
    from .models import MeterDayVersion, MeteringImport

    platform = get_platform()
    with platform.unit_of_work() as session:
        record = session.get(MeteringImport, import_id)
        if record is None:
            return 0
        days = sorted(set(session.scalars(select(MeterDayVersion.day).where(
            MeterDayVersion.import_id == import_id))))
        park_id = record.park_id
    for day in days:
        queue(scan_alarms, park_id, day.isoformat())
    return len(days)


@celery_app.task(name="parkgrid.scan_recent_alarms")
def scan_recent_alarms() -> int:
    """Runs every 15 minutes: check today and yesterday of every park (data arriving late
    closes gaps and shows overloads that were not visible yet)."""
    from datetime import timedelta

    from .models import Park
    from .services.calendar import local_day, utcnow

    platform = get_platform()
    with platform.unit_of_work() as session:
        parks = [(p.id, p.timezone) for p in session.scalars(select(Park))]
    for park_id, zone in parks:
        today = local_day(utcnow(), zone)
        for day in (today - timedelta(days=1), today):
            queue(scan_alarms, park_id, day.isoformat())
    return len(parks)


celery_app.conf.beat_schedule = {
    "flush-outbox": {"task": "parkgrid.flush_outbox", "schedule": 60.0,
                     "kwargs": {"older_than_s": STALE_PENDING_S}},
    "close-gates": {"task": "parkgrid.close_gates", "schedule": 60.0},
    "publish-settlements": {"task": "parkgrid.publish_settlements", "schedule": 60.0},
    "dispatch-urgent": {"task": "parkgrid.dispatch_urgent", "schedule": 15.0},
    "plan-planned-work": {"task": "parkgrid.plan_planned_work", "schedule": 300.0},
    "generate-patrols": {"task": "parkgrid.generate_patrols", "schedule": 3600.0},
    "scan-recent-alarms": {"task": "parkgrid.scan_recent_alarms", "schedule": 900.0},
}
