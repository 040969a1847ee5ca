"""Automatic dispatch on the platform: urgent rounds and plans of a day's planned work."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from parkgrid.models import DispatchPlan, Job
from parkgrid.services import dispatch
from parkgrid.services import jobs as job_service
from tests.unit.alliance_world import (
    NOW,
    SITE,
    TODAY,
    add_provider,
    build_world,
    make_platform,
)

MIN = timedelta(minutes=1)
SHARED = dispatch.Scope("shared_electricians")


@pytest.fixture
def world(tmp_path):
    return build_world(make_platform(tmp_path))


def repair(world, *, urgent=True, at=NOW, lat=SITE[0], lon=SITE[1], window=None,
           minutes=60) -> str:
    start, end = window or (None, None)
    return job_service.request_repair(
        world.platform,
        job_service.RepairRequest(lat=lat, lon=lon, title="跳闸", urgent=urgent,
                                  window_start=start, window_end=end, service_minutes=minutes),
        actor_id=world.uid("ent1"), at=at)


def job(world, code) -> Job:
    with world.platform.unit_of_work() as session:
        found = session.scalar(select(Job).where(Job.code == code))
        session.expunge(found)
        return found


# --------------------------------------------------------------------------- urgent


def test_an_urgent_job_is_offered_to_the_nearest_free_electrician(world):
    ids = add_provider(world, "SH1", valid=10)
    code = repair(world)
    done = dispatch.urgent_round(world.platform, at=NOW + MIN)
    assert done.offered == ((code, ids["SH1-00"]),)  # SH1-00 lives nearest the site
    assert done.escalated == () and done.waiting == ()
    offered = job(world, code)
    assert offered.status == "offered" and offered.electrician_id == ids["SH1-00"]
    # A second round finds nothing to do: the job is no longer waiting.
    assert dispatch.urgent_round(world.platform, at=NOW + 2 * MIN).offered == ()


def test_two_urgent_jobs_go_to_two_people_and_nobody_twice(world):
    add_provider(world, "SH1", valid=10)
    first, second = repair(world), repair(world, lat=SITE[0] + Decimal("0.02"))
    done = dispatch.urgent_round(world.platform, at=NOW + MIN)
    people = [e for _, e in done.offered]
    assert {c for c, _ in done.offered} == {first, second}
    assert len(set(people)) == 2


def test_a_decline_is_redispatched_to_someone_else_within_the_time_left(world):
    ids = add_provider(world, "SH1", valid=10)
    code = repair(world)
    dispatch.urgent_round(world.platform, at=NOW + MIN)
    job_service.decline(world.platform, code, actor_id=world.uid("SH1-user"),
                        reason="在别处", at=NOW + 2 * MIN)
    done = dispatch.urgent_round(world.platform, at=NOW + 3 * MIN)
    assert done.offered == ((code, ids["SH1-01"]),)
    # And an expired offer the same way.
    job_service.expire_offers(world.platform, now=NOW + 3 * MIN + timedelta(minutes=6))
    assert dispatch.urgent_round(world.platform, at=NOW + 10 * MIN).offered == (
        (code, ids["SH1-02"]),)


def test_a_job_nobody_can_reach_in_time_is_escalated_and_still_offered_late(world):
    # Homes 0.3 degrees (about 33 km, over an hour) north of the site.
    ids = add_provider(world, "FAR", valid=10, home_offset=Decimal("0.3"))
    code = repair(world)
    done = dispatch.urgent_round(world.platform, at=NOW + MIN)
    assert done.escalated == (code,)
    assert done.offered == ((code, ids["FAR-00"]),)
    events = [e.kind for e in job_service_events(world, code)]
    assert events[-2:] == ["escalate", "offer"]
    assert job(world, code).last_reason == dispatch.NOBODY_IN_TIME


def test_a_job_nobody_can_take_is_escalated_once_and_keeps_waiting(world):
    code = repair(world)  # no provider at all
    done = dispatch.urgent_round(world.platform, at=NOW + MIN)
    assert done.escalated == (code,) and done.waiting == (code,)
    assert job(world, code).status == "escalated"
    again = dispatch.urgent_round(world.platform, at=NOW + 2 * MIN)
    assert again.escalated == () and again.waiting == (code,)
    # Once someone is there, the escalated job is offered.
    ids = add_provider(world, "SH1", valid=10)
    assert dispatch.urgent_round(world.platform, at=NOW + 3 * MIN).offered == (
        (code, ids["SH1-00"]),)


def test_planned_work_accepted_for_later_does_not_hold_anyone_from_urgent_work(world):
    ids = add_provider(world, "SH1", valid=10)
    later = (NOW + timedelta(hours=4), NOW + timedelta(hours=6))
    planned = repair(world, urgent=False, window=later)
    job_service.offer(world.platform, planned, ids["SH1-00"], actor_id=None, at=NOW)
    job_service.accept(world.platform, planned, actor_id=world.uid("SH1-user"), at=NOW)
    code = repair(world, at=NOW + MIN)
    assert dispatch.urgent_round(world.platform, at=NOW + 2 * MIN).offered == (
        (code, ids["SH1-00"]),)


def test_someone_at_work_on_planned_work_is_not_pulled_off_it(world):
    ids = add_provider(world, "SH1", valid=10)
    planned = repair(world, urgent=False)
    job_service.offer(world.platform, planned, ids["SH1-00"], actor_id=None, at=NOW)
    job_service.accept(world.platform, planned, actor_id=world.uid("SH1-user"), at=NOW)
    job_service.start_travel(world.platform, planned, actor_id=world.uid("SH1-user"), at=NOW)
    code = repair(world, at=NOW + MIN)
    assert dispatch.urgent_round(world.platform, at=NOW + 2 * MIN).offered == (
        (code, ids["SH1-01"]),)


def job_service_events(world, code):
    from parkgrid.models import JobEvent

    with world.platform.unit_of_work() as session:
        found = session.scalar(select(Job).where(Job.code == code))
        rows = list(session.scalars(select(JobEvent).where(JobEvent.job_id == found.id)
                                    .order_by(JobEvent.seq)))
        for row in rows:
            session.expunge(row)
        return rows


# --------------------------------------------------------------------------- planned work


def windowed(world, n, *, hours=(1, 7), at=NOW) -> list[str]:
    """`n` planned repairs spread around the site, open from NOW+hours[0] to NOW+hours[1]."""
    window = (NOW + timedelta(hours=hours[0]), NOW + timedelta(hours=hours[1]))
    return [repair(world, urgent=False, at=at, window=window, minutes=45,
                   lat=SITE[0] + Decimal("0.005") * (k % 4),
                   lon=SITE[1] + Decimal("0.005") * (k // 4)) for k in range(n)]


def test_a_day_is_planned_checked_stored_and_offered(world):
    add_provider(world, "SH1", valid=10)
    codes = windowed(world, 8)
    outcome = dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW, seconds=1)
    assert outcome.placed == 8 and outcome.unplaced == []
    assert sorted(outcome.offered) == sorted(codes)
    with world.platform.unit_of_work() as session:
        plan = session.get(DispatchPlan, outcome.plan_id)
        assert plan.placed == 8 and plan.day == TODAY
        rows = list(session.scalars(select(Job).where(Job.code.in_(codes))))
        for row in rows:
            assert row.status == "offered" and row.plan_id == plan.id
            assert row.electrician_id == row.planned_electrician_id
            assert row.window_start <= row.planned_start <= row.window_end
            assert row.offer_expires_at >= row.planned_start
        # Each electrician's jobs are numbered 1, 2, … in the order they are visited.
        by_person = {}
        for row in rows:
            by_person.setdefault(row.electrician_id, []).append(row)
        for visits in by_person.values():
            visits.sort(key=lambda r: r.planned_start)
            assert [r.planned_seq for r in visits] == list(range(1, len(visits) + 1))


def test_planning_again_keeps_held_work_and_places_a_new_job(world):
    add_provider(world, "SH1", valid=10)
    codes = windowed(world, 6)
    dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW, seconds=1)
    before = {c: (job(world, c).electrician_id, job(world, c).planned_seq) for c in codes}
    for c in codes[:3]:
        job_service.accept(world.platform, c, actor_id=world.uid("SH1-user"), at=NOW + MIN)
    new = windowed(world, 1, at=NOW + 2 * MIN)[0]
    again = dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW + 3 * MIN, seconds=1)
    assert again.offered == [new]
    for c in codes:
        assert job(world, c).electrician_id == before[c][0]
    assert job(world, new).status == "offered"


def test_a_declined_planned_job_goes_to_someone_else(world):
    add_provider(world, "SH1", valid=10)
    code = windowed(world, 1)[0]
    dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW, seconds=1)
    first = job(world, code).electrician_id
    job_service.decline(world.platform, code, actor_id=world.uid("SH1-user"), at=NOW + MIN)
    again = dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW + 2 * MIN, seconds=1)
    assert again.offered == [code]
    assert job(world, code).electrician_id not in (None, first)


def test_jobs_that_cannot_be_placed_are_recorded_with_the_reason(world):
    add_provider(world, "SH1", valid=10)
    passed = repair(world, urgent=False, window=(NOW - timedelta(hours=3),
                                                 NOW - timedelta(hours=1)),
                    at=NOW - timedelta(hours=4))
    special = job_service.request_repair(
        world.platform, job_service.RepairRequest(
            lat=SITE[0], lon=SITE[1], title="高压", urgent=False, skills=("high_voltage",)),
        actor_id=world.uid("ent1"), at=NOW)
    outcome = dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW, seconds=1)
    reasons = {u["job"]: u["reason"] for u in outcome.unplaced}
    assert reasons[passed] == "time_window_passed"
    assert special in reasons
    assert outcome.offered == []
    assert job(world, special).status == "new"


def test_nothing_to_plan_stores_no_plan(world):
    add_provider(world, "SH1", valid=10)
    assert dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW).plan_id is None


def test_days_to_plan_names_each_scope_with_waiting_work(world):
    add_provider(world, "SH1", valid=10)
    windowed(world, 2)
    repair(world)  # urgent: not planned work
    assert dispatch.days_to_plan(world.platform, at=NOW) == [(1, TODAY, SHARED)]


# --------------------------------------------------------------------------- tasks


@pytest.fixture
def auto(world):
    """The same world with automatic dispatch on, its tasks run in-process."""
    from dataclasses import replace

    from parkgrid import tasks
    from parkgrid.wiring import Platform

    platform = Platform(replace(world.platform.settings, auto_dispatch=True, plan_seconds=1))
    tasks.configure(platform.settings, platform)
    yield world, platform, tasks
    tasks.configure(world.platform.settings, world.platform)


def test_the_sweep_expires_offers_and_redispatches(auto, monkeypatch):
    world, platform, tasks = auto
    monkeypatch.setattr(dispatch, "utcnow", lambda: NOW)
    monkeypatch.setattr(job_service, "utcnow", lambda: NOW)
    ids = add_provider(world, "SH1", valid=10)
    code = repair(world, at=NOW - timedelta(minutes=20))
    job_service.offer(world.platform, code, ids["SH1-00"], actor_id=None,
                      at=NOW - timedelta(minutes=20))
    assert tasks.dispatch_urgent.delay().get() == 1  # the old offer expired, a new one made
    assert job(world, code).electrician_id == ids["SH1-01"]


def test_the_planning_sweep_plans_each_waiting_scope(auto, monkeypatch):
    world, platform, tasks = auto
    monkeypatch.setattr(dispatch, "utcnow", lambda: NOW)
    add_provider(world, "SH1", valid=10)
    # Tomorrow's work: the sweep plans today and tomorrow in the park's zone.
    tomorrow = windowed(world, 3, hours=(24, 30), at=NOW)
    assert tasks.plan_planned_work.delay().get() == 1
    assert {job(world, c).status for c in tomorrow} == {"offered"}


def test_with_automatic_dispatch_off_the_sweeps_offer_nothing(world):
    from parkgrid import tasks

    tasks.configure(world.platform.settings, world.platform)
    add_provider(world, "SH1", valid=10)
    code = repair(world)
    windowed(world, 2)
    assert tasks.dispatch_urgent.delay().get() == 0
    assert tasks.plan_planned_work.delay().get() == 0
    assert job(world, code).status == "new"


def test_someone_on_an_urgent_job_gets_no_planned_work(world):
    ids = add_provider(world, "SH1", valid=10)
    urgent = repair(world)
    job_service.offer(world.platform, urgent, ids["SH1-00"], actor_id=None, at=NOW)
    codes = windowed(world, 4)
    outcome = dispatch.plan_day(world.platform, 1, TODAY, SHARED, at=NOW + MIN, seconds=1)
    assert sorted(outcome.offered) == sorted(codes)
    assert ids["SH1-00"] not in {job(world, c).electrician_id for c in codes}
