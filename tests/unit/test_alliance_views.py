"""The alliance staff view's figures on a small world with known answers: members and their
standing, expiries, the on-site SLA (on time / late / open / withdrawn), escalations, the map
and one energy-cloud-butler provider's cockpit."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from parkgrid.models import (
    Alarm,
    Certificate,
    Electrician,
    Enterprise,
    Job,
    OmContract,
    OmContractItem,
    Provider,
    User,
)
from parkgrid.services import alliance_views as views
from parkgrid.services import jobs

from .alliance_world import NOW, SITE, TODAY, add_provider, build_world, make_platform

MIN = timedelta(minutes=1)
ZONE = "Asia/Shanghai"
BUTLER = "energy_cloud_butler"


@pytest.fixture
def world(tmp_path):
    platform = make_platform(tmp_path)
    world = build_world(platform)
    world.ids.update({f"s{n}": i for n, i in enumerate(add_provider(world, "SE").values())})
    world.ids.update({f"b{n}": i for n, i in
                      enumerate(add_provider(world, "BT", alliance=BUTLER).values())})
    yield world
    platform.engine.dispose()


def repair(world, at, *, urgent=True, provider=None, lat=SITE[0], lon=SITE[1]) -> str:
    request = jobs.RepairRequest(lat=lat, lon=lon, title="低压柜跳闸", urgent=urgent,
                                 provider_code=provider)
    return jobs.request_repair(world.platform, request, actor_id=world.uid("ent1"), at=at)


def arrive(world, code, electrician, created, minutes):
    """Offer and accept a minute after `created`, check in `minutes` after it."""
    jobs.offer(world.platform, code, electrician, actor_id=None, at=created + MIN)
    jobs.accept(world.platform, code, actor_id=None, at=created + 2 * MIN)
    jobs.check_in(world.platform, code, actor_id=None, at=created + minutes * MIN)


def figures(world, start, end, now, **scope) -> views.SlaFigures:
    with world.platform.unit_of_work() as session:
        return views.sla(session, start, end, now, **scope)


# --------------------------------------------------------------------------- SLA


def test_one_on_time_one_late_one_withdrawn_is_a_hit_rate_of_one_half(world):
    on_time = repair(world, NOW)
    arrive(world, on_time, world.uid("s0"), NOW, 20)
    late = repair(world, NOW + MIN)
    arrive(world, late, world.uid("s1"), NOW + MIN, 40)
    withdrawn = repair(world, NOW + 2 * MIN)
    jobs.cancel(world.platform, withdrawn, "误报", actor_id=world.uid("ent1"),
                at=NOW + 10 * MIN)

    f = figures(world, NOW - timedelta(days=7), NOW + timedelta(hours=2), NOW + timedelta(hours=2))
    assert (f.on_time, f.late, f.open, f.withdrawn) == (1, 1, 0, 1)
    assert f.hit_rate == 0.5
    assert f.mean_arrival_minutes == 30.0  # (20 + 40) / 2


def test_open_jobs_and_missed_deadlines_without_a_check_in(world):
    missed = repair(world, NOW)  # nobody comes: late once its deadline has passed
    cancelled_late = repair(world, NOW + MIN)
    jobs.cancel(world.platform, cancelled_late, "不用了", actor_id=None, at=NOW + 45 * MIN)
    on_time = repair(world, NOW + 2 * MIN)
    arrive(world, on_time, world.uid("s0"), NOW + 2 * MIN, 30)  # exactly at the deadline
    repair(world, NOW + 50 * MIN)  # deadline NOW + 80 min: still open at NOW + 60 min
    repair(world, NOW + 3 * MIN, urgent=False)  # not urgent: never counted
    repair(world, NOW - timedelta(days=8))  # before the period

    now = NOW + 60 * MIN
    f = figures(world, NOW - timedelta(days=7), now, now)
    assert (f.on_time, f.late, f.open, f.withdrawn) == (1, 2, 1, 0)
    assert f.hit_rate == pytest.approx(1 / 3)
    assert f.mean_arrival_minutes == 30.0
    # A period with only the open job decides nothing: no rate rather than 0 %.
    undecided = figures(world, NOW + 49 * MIN, NOW + 51 * MIN, now)
    assert (undecided.open, undecided.decided, undecided.hit_rate) == (1, 0, None)
    assert undecided.mean_arrival_minutes is None
    assert missed


def test_sla_is_per_alliance_and_per_provider(world):
    shared = repair(world, NOW)
    arrive(world, shared, world.uid("s0"), NOW, 10)
    butler = repair(world, NOW + MIN, provider="BT")
    arrive(world, butler, world.uid("b0"), NOW + MIN, 45)
    now, start = NOW + timedelta(hours=1), NOW - timedelta(days=1)
    assert figures(world, start, now, now, alliance="shared_electricians").on_time == 1
    assert figures(world, start, now, now, alliance="shared_electricians").late == 0
    with world.platform.unit_of_work() as session:
        bt = session.scalar(select(Provider.id).where(Provider.code == "BT"))
        table = views.sla_table(session, now)
    assert figures(world, start, now, now, provider_id=bt).late == 1
    assert figures(world, start, now, now, provider_id=bt).on_time == 0
    assert table[BUTLER][7].late == 1 and table["shared_electricians"][30].on_time == 1


@pytest.mark.parametrize(("stopped", "status", "closed", "now", "expected"), [
    (30, "on_site", None, 60, views.ON_TIME),
    (31, "closed", 90, 120, views.LATE),
    (None, "cancelled", 29, 60, views.WITHDRAWN),
    (None, "cancelled", 30, 60, views.LATE),  # called off only at the deadline: missed
    (10, "cancelled", 20, 60, views.ON_TIME),  # someone was on site: the promise was kept
    (None, "offered", None, 29, views.OPEN),
    (None, "escalated", None, 31, views.LATE),
])
def test_sla_outcome_of_one_job(stopped, status, closed, now, expected):
    def at(minutes):
        return None if minutes is None else NOW + minutes * MIN

    assert views.sla_outcome(created_at=NOW, deadline=NOW + 30 * MIN,
                             clock_stopped_at=at(stopped), status=status, closed_at=at(closed),
                             now=at(now)) == expected


# --------------------------------------------------------------------------- members


def test_members_per_alliance_with_standing_and_reasons(world):
    add_provider(world, "FEW", valid=9, lapsed=1)
    add_provider(world, "NEW", status="applied")
    with world.platform.unit_of_work() as session:
        members = views.members_by_alliance(session, TODAY)
    assert list(members) == ["shared_electricians", BUTLER]
    shared = {m.code: m for m in members["shared_electricians"]}
    assert sorted(shared) == ["FEW", "NEW", "SE"]
    assert [m.code for m in members[BUTLER]] == ["BT"]

    se = shared["SE"]
    assert (se.status, se.licence_level, se.licence_expiry) == ("approved", 4, date(2028, 1, 1))
    assert (se.electricians, se.valid_electricians, se.receives_offers) == (10, 10, True)
    assert se.reasons == []
    few = shared["FEW"]
    assert (few.electricians, few.valid_electricians, few.receives_offers) == (10, 9, False)
    assert [p.text() for p in few.reasons] == [
        "9 electricians hold a valid certificate; at least 10 are required"]
    new = shared["NEW"]
    assert new.receives_offers is False
    assert [p.text() for p in new.reasons] == ["not an admitted member (applied)"]


def test_expiries_within_the_window_of_admitted_members(world):
    add_provider(world, "SOON", licence_expires=TODAY + timedelta(days=10))
    add_provider(world, "APPL", status="applied", licence_expires=TODAY + timedelta(days=3))
    with world.platform.unit_of_work() as session:
        people = {e.code: e for e in session.scalars(select(Electrician))}
        people["SE-00"].certificates[0].expires = TODAY + timedelta(days=5)
        people["SE-01"].certificates[0].expires = TODAY + timedelta(days=30)  # the last day
        people["SE-02"].certificates[0].expires = TODAY + timedelta(days=31)  # outside
        people["SE-03"].certificates[0].expires = TODAY - timedelta(days=1)  # already gone
        people["BT-00"].certificates.append(Certificate(type="high_voltage", number="HV-1",
                                                        expires=TODAY))
    with world.platform.unit_of_work() as session:
        rows = views.expiries(session, TODAY, 30)
    assert [(r.provider_code, r.kind, r.number, r.days_left, r.electrician_code,
             r.certificate_type) for r in rows] == [
        ("BT", "certificate", "HV-1", 0, "BT-00", "high_voltage"),
        ("SE", "certificate", "C-SE-0", 5, "SE-00", "low_voltage"),
        ("SOON", "licence", "L-SOON", 10, None, None),
        ("SE", "certificate", "C-SE-1", 30, "SE-01", "low_voltage"),
    ]


# --------------------------------------------------------------------------- jobs


def test_escalated_and_open_jobs_for_the_desk(world):
    waiting = repair(world, NOW)
    escalated = repair(world, NOW + MIN)
    jobs.escalate(world.platform, escalated, "无人可及时到场", actor_id=world.uid("desk"),
                  at=NOW + 2 * MIN)
    held = repair(world, NOW + 3 * MIN)
    jobs.offer(world.platform, held, world.uid("s0"), actor_id=None, at=NOW + 4 * MIN)
    jobs.accept(world.platform, held, actor_id=None, at=NOW + 5 * MIN)
    gone = repair(world, NOW + 6 * MIN)
    jobs.cancel(world.platform, gone, "误报", actor_id=None, at=NOW + 7 * MIN)
    planned = repair(world, NOW + 8 * MIN, urgent=False)

    now = NOW + 10 * MIN
    with world.platform.unit_of_work() as session:
        up = views.escalated_jobs(session, now)
        desk = views.open_jobs(session, now)
    assert [(j.code, j.status, j.last_reason) for j in up] == [
        (escalated, "escalated", "无人可及时到场")]
    assert [j.code for j in desk] == [waiting, escalated, held, planned]
    by_code = {j.code: j for j in desk}
    assert by_code[waiting].actions == {"offer", "escalate"}
    assert by_code[escalated].actions == {"offer"}
    assert by_code[held].actions == {"no_show"}
    assert by_code[held].electrician.startswith("SE-00 ")
    assert by_code[waiting].time_left_s == 20 * 60
    assert by_code[planned].time_left_s is None and by_code[planned].actions == {"offer",
                                                                                 "escalate"}


# --------------------------------------------------------------------------- map


def test_map_positions_states_and_projection(world):
    add_provider(world, "OFF", valid=3, shift=None)  # nobody on shift
    add_provider(world, "APPL", valid=1, status="applied")  # not drawn: not a member
    with world.platform.unit_of_work() as session:
        people = {e.code: e for e in session.scalars(select(Electrician))}
        people["SE-00"].last_lat, people["SE-00"].last_lon = Decimal("31.2"), Decimal("120.8")
        people["SE-00"].last_seen_at = NOW - 30 * MIN  # fresh
        people["SE-01"].last_lat, people["SE-01"].last_lon = Decimal("31.5"), Decimal("120.5")
        people["SE-01"].last_seen_at = NOW - timedelta(hours=3)  # stale: at home
        people["OFF-01"].active = False
        people["OFF-02"].home_lat = people["OFF-02"].home_lon = None
    east = repair(world, NOW, lat=Decimal("31.3"), lon=Decimal("120.9"))
    jobs.offer(world.platform, east, world.uid("s4"), actor_id=None, at=NOW + MIN)
    planned = repair(world, NOW + MIN, urgent=False)
    gone = repair(world, NOW + 2 * MIN)
    jobs.cancel(world.platform, gone, "误报", actor_id=None, at=NOW + 3 * MIN)

    with world.platform.unit_of_work() as session:
        data = views.map_data(session, NOW + 5 * MIN, ZONE)
    people = {p.label.split()[0]: p for p in data.electricians}
    # 10 + 10 + 3 members' electricians less the inactive one and the one without any
    # position; the applicant's are not drawn.
    assert len(people) == 21 and data.without_position == 1
    assert "OFF-01" not in people and "OFF-02" not in people and "APPL-00" not in people
    assert (people["SE-00"].lat, people["SE-00"].lon, people["SE-00"].source) == (
        31.2, 120.8, "last")
    assert (people["SE-01"].lat, people["SE-01"].source) == (pytest.approx(31.32), "home")
    assert people["SE-04"].state == views.ON_JOB  # holds the offer
    assert people["SE-05"].state == views.FREE
    assert people["OFF-00"].state == views.OFF_SHIFT
    assert {(p.ref, p.urgent) for p in data.jobs} == {(east, True), (planned, False)}

    # The middle of what is drawn is the origin; east is +x, north is +y (travel minutes).
    lats = [p.lat for p in data.points]
    lons = [p.lon for p in data.points]
    assert data.centre == pytest.approx(((min(lats) + max(lats)) / 2,
                                         (min(lons) + max(lons)) / 2))
    job = next(p for p in data.jobs if p.ref == east)
    assert job.x > 0 and job.x == max(p.x for p in data.points)
    assert people["SE-01"].x < 0 and people["SE-01"].y > 0


def test_an_empty_map(tmp_path):
    platform = make_platform(tmp_path)
    build_world(platform)
    with platform.unit_of_work() as session:
        data = views.map_data(session, NOW, ZONE)
    assert (data.points, data.centre, data.without_position) == ([], None, 0)
    platform.engine.dispose()


# --------------------------------------------------------------------------- cockpit


def patrol(session, enterprise, provider, item, due: date, at: datetime) -> Job:
    job, _event = jobs.create_job(session, enterprise=enterprise, kind="patrol",
                                  title=f"巡视 {item.name}", lat=item.lat, lon=item.lon,
                                  urgent=False, at=at, provider=provider)
    job.contract_item_id, job.due_on = item.id, due
    session.flush()
    return job


def test_cockpit_of_a_butler_provider(world):
    add_provider(world, "BT2", alliance=BUTLER)
    alarm_job = repair(world, NOW, provider="BT")
    arrive(world, alarm_job, world.uid("b0"), NOW, 50)  # late
    closed_alarm_job = repair(world, NOW + MIN, provider="BT")
    jobs.cancel(world.platform, closed_alarm_job, "已恢复", actor_id=None, at=NOW + 2 * MIN)
    other = repair(world, NOW + 2 * MIN, provider="BT2")
    with world.platform.unit_of_work() as session:
        bt = session.scalar(select(Provider).where(Provider.code == "BT"))
        bt2 = session.scalar(select(Provider).where(Provider.code == "BT2"))
        e1 = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        contract = OmContract(code="OM-1", provider=bt, enterprise=e1, frequency="weekly",
                              job_kind="patrol", window_start=time(9), window_end=time(17),
                              starts_on=TODAY - timedelta(days=30))
        contract.items.append(OmContractItem(name="1号变压器", equipment_kind="transformer",
                                             lat=SITE[0], lon=SITE[1]))
        contract.items.append(OmContractItem(name="低压柜", lat=SITE[0], lon=SITE[1]))
        session.add(contract)
        session.add(OmContract(code="OM-X", provider=bt2, enterprise=e1, frequency="daily",
                               window_start=time(9), window_end=time(10), starts_on=TODAY))
        session.flush()
        first, second = contract.items
        soon = patrol(session, e1, bt, first, TODAY + timedelta(days=1), NOW)
        today = patrol(session, e1, bt, second, TODAY, NOW)
        patrol(session, e1, bt, first, TODAY + timedelta(days=7), NOW)  # beyond the week
        patrol(session, e1, bt, first, TODAY - timedelta(days=1), NOW)  # overdue, not ahead
        soon_code, today_code = soon.code, today.code
        jobs_by_code = {j.code: j for j in session.scalars(select(Job))}
        for n, (code, rule) in enumerate([(alarm_job, "load_rate"),
                                          (closed_alarm_job, "metering_gap"),
                                          (other, "abnormal_reading")]):
            session.add(Alarm(key=f"k{n}", park_id=e1.park_id, rule=rule, enterprise=e1,
                              starts_at=NOW - timedelta(hours=1), ends_at=NOW,
                              details=json.dumps({"load_rate": "0.93"}),
                              job_id=jobs_by_code[code].id))
        people = {e.code: e for e in bt.electricians}
        people["BT-01"].certificates[0].expires = TODAY + timedelta(days=12)
    with world.platform.unit_of_work() as session:
        user = session.get(User, world.uid("BT-user"))
        found = views.cockpit(session, user, NOW + timedelta(hours=1), ZONE)
        assert [c.code for c in found.contracts] == ["OM-1"]
        assert [i.name for i in found.contracts[0].items] == ["1号变压器", "低压柜"]
    assert [(j.code, j.due_on, j.item_name) for j in found.upcoming] == [
        (today_code, TODAY, "低压柜"), (soon_code, TODAY + timedelta(days=1), "1号变压器")]
    assert [(a.rule, a.job_code, a.details) for a in found.alarms] == [
        ("load_rate", alarm_job, {"load_rate": "0.93"})]
    assert (found.sla.on_time, found.sla.late, found.sla.withdrawn) == (0, 1, 1)
    assert found.member.receives_offers and found.member.valid_electricians == 10
    assert [(x.electrician_code, x.days_left) for x in found.expiries] == [("BT-01", 12)]
    expiring = {r.electrician.code: r.expiring for r in found.roster}
    assert expiring["BT-01"][0]["days_left"] == 12 and expiring["BT-00"] == []


def test_nothing_here_writes(world):
    """The figures are read-only: computing every one of them leaves the session clean."""
    repair(world, NOW)
    with world.platform.sessions() as session:
        views.staff_view(session, NOW + timedelta(hours=1), ZONE)
        user = session.get(User, world.uid("BT-user"))
        views.cockpit(session, user, NOW, ZONE)
        assert not session.dirty and not session.new and not session.deleted


def test_the_staff_view_knows_its_day_in_the_park_zone(world):
    late_evening = datetime(2026, 11, 17, 17, 0, tzinfo=UTC)  # 01:00 on the 18th in Shanghai
    with world.platform.unit_of_work() as session:
        assert views.staff_view(session, late_evening, ZONE).day == date(2026, 11, 18)
