"""Live re-planning: the remaining problem at `now`, urgent insertion against a brute-force
reference, the short re-optimisation, and the seeded synthetic field-service day."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.checker import check_plan
from alliance.errors import InvalidReplanInputError
from alliance.instances import Job, RoutingInstance, Vehicle
from alliance.replan import (
    ElectricianState,
    idle_plan,
    insert_job,
    live_problem,
    reoptimise,
    state_from_plan,
)
from alliance.routing import (
    REASON_NO_ROOM,
    REASON_NO_SKILLED_VEHICLE,
    REASON_OVER_CAPACITY,
    REASON_TIME_WINDOW,
    REASON_WORKLOAD,
    Route,
    RoutingResult,
    SearchOptions,
    Stop,
    solve,
)
from alliance.synthetic import LOW_VOLTAGE, SPECIAL_SKILLS, field_service_day

# --- helpers ------------------------------------------------------------------------------


def random_job(rng: random.Random, job_id: str, earliest: float = 0.0) -> Job:
    ready = earliest + rng.uniform(0, 120) if rng.random() < 0.6 else 0.0
    due = ready + rng.uniform(5, 90) if rng.random() < 0.7 else math.inf
    return Job(job_id, (rng.uniform(0, 20), rng.uniform(0, 20)), demand=rng.randint(0, 3),
               ready=ready, due=due, service=rng.choice([0.0, rng.uniform(1, 20)]),
               skills=frozenset(rng.sample(["a", "b"], rng.randint(0, 1))))


def random_vehicle(rng: random.Random, vid: str) -> Vehicle:
    home = (rng.uniform(0, 20), rng.uniform(0, 20))
    start = rng.uniform(0, 30)
    return Vehicle(vid, capacity=rng.randint(3, 9), shift_start=start,
                   shift_end=start + rng.uniform(90, 260),
                   skills=frozenset(rng.sample(["a", "b"], rng.randint(0, 2))),
                   start=home, end=home if rng.random() < 0.8 else None,
                   max_duration=rng.choice([None, rng.uniform(60, 200)]),
                   max_jobs=rng.choice([None, 2, 3, 4]))


def built_plan(rng: random.Random, n_jobs: int, n_vehicles: int):
    """An instance and a feasible plan of it, grown by insertion from an idle crew."""
    vehicles = tuple(random_vehicle(rng, f"v{k}") for k in range(n_vehicles))
    instance = RoutingInstance("rand", (10.0, 10.0), (), vehicles)
    plan = idle_plan(instance)
    for i in range(n_jobs):
        ins = insert_job(instance, plan, random_job(rng, f"j{i}"),
                         objective=rng.choice(["least_detour", "earliest_start"]))
        instance, plan = ins.instance, ins.plan
    assert check_plan(instance, plan).ok
    return instance, plan


def simulate(instance: RoutingInstance, vehicle: Vehicle, depart: float, job_ids: list[str]):
    """Plain re-implementation of the checker's schedule: begins, departures, end, distance."""
    jobs = {j.id: j for j in instance.jobs}
    pos, t, dist = instance.vehicle_start(vehicle), depart, 0.0
    begins, leaves = [], [depart]
    for job_id in job_ids:
        job = jobs[job_id]
        leg = math.dist(pos, job.location)
        dist += leg
        begin = max(t + leg, job.ready)
        begins.append(begin)
        t = begin + job.service
        leaves.append(t)
        pos = job.location
    if job_ids:
        back = math.dist(pos, instance.vehicle_end(vehicle))
        dist += back
        t += back
    return begins, leaves, t, dist


def reference_insertions(instance: RoutingInstance, plan: RoutingResult, job: Job, now: float):
    """Every feasible (start, detour, vehicle, position), judged by `check_plan` alone.

    Departure rule (the module's convention): a route started before `now` keeps its start
    time and legs already driven stay; otherwise the electrician may leave at
    max(shift_start, now), later only as much as `max_duration` demands.
    """
    inst = dataclasses.replace(instance, jobs=instance.jobs + (job,))
    routes = {r.vehicle_id: r for r in plan.routes}
    found = []
    for k, v in enumerate(inst.vehicles):
        route = routes.get(v.id)
        stops = list(route.job_ids) if route else []
        departed = bool(stops) and route.start_time < now
        leaves = simulate(inst, v, route.start_time, stops)[1] if departed else None
        for p in range(len(v.pinned), len(stops) + 1):
            seq = stops[:p] + [job.id] + stops[p:]
            if departed:
                if leaves[p] < now:
                    continue
                depart = route.start_time
            else:
                depart = max(v.shift_start, now)
                if v.max_duration is not None:
                    end = simulate(inst, v, depart, seq)[2]
                    depart += max(0.0, end - depart - v.max_duration)
            begins, _, _, dist = simulate(inst, v, depart, seq)
            new = Route(v.id, depart, tuple(Stop(j, b) for j, b in zip(seq, begins, strict=True)),
                        dist)
            others = [r for r in plan.routes if r.vehicle_id != v.id]
            total = math.fsum([dist] + [r.distance for r in others])
            candidate = RoutingResult(tuple(others) + (new,), plan.unassigned, total, 0.0, "ref")
            if begins[p] >= now - 1e-9 and check_plan(inst, candidate).ok:
                found.append((begins[p], dist - (route.distance if route else 0.0), k, p))
    return found


def assert_best(ins, found, objective: str) -> None:
    if not found:
        assert not ins.feasible, "the reference found no place, insert_job did"
        return
    assert ins.feasible, f"insert_job found no place, reference found {found[:3]}"
    start, detour = ins.service_start, ins.added_distance
    assert any(abs(f[0] - start) < 1e-6 and abs(f[1] - detour) < 1e-6 for f in found)
    if objective == "earliest_start":
        assert start <= min(f[0] for f in found) + 1e-6
        assert detour <= min(f[1] for f in found if f[0] <= start + 1e-6) + 1e-6
    else:
        assert detour <= min(f[1] for f in found) + 1e-6
        assert start <= min(f[0] for f in found if f[1] <= detour + 1e-6) + 1e-6


def assert_nothing_else_moved(before: RoutingResult, after: RoutingResult, ins) -> None:
    old = {r.vehicle_id: r for r in before.routes}
    for r in after.routes:
        if r.vehicle_id != ins.vehicle_id:
            assert r == old[r.vehicle_id]
        else:
            ids = list(r.job_ids)
            assert ids.pop(ins.position) == ins.job_id
            assert tuple(ids) == (old[r.vehicle_id].job_ids if r.vehicle_id in old else ())


# --- insertion against the brute-force reference -----------------------------------------


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 10**9), objective=st.sampled_from(["earliest_start", "least_detour"]))
def test_insertion_into_a_live_plan_is_the_best_feasible_one(seed, objective):
    rng = random.Random(seed)
    instance, plan = built_plan(rng, rng.randint(3, 12), rng.randint(1, 4))
    now = rng.uniform(0, 150)
    live = live_problem(instance, plan, now)
    assert check_plan(live.instance, live.plan).ok
    job = random_job(rng, "urgent", earliest=now)
    ins = insert_job(live.instance, live.plan, job, objective=objective)   # now from meta
    assert check_plan(ins.instance, ins.plan).ok
    assert_best(ins, reference_insertions(live.instance, live.plan, job, now), objective)
    if ins.feasible:
        pinned = {v.id: v.pinned for v in live.instance.vehicles}
        assert ins.position >= len(pinned[ins.vehicle_id])
        assert ins.service_start >= now - 1e-9
        assert_nothing_else_moved(live.plan, ins.plan, ins)
        for r in ins.plan.routes:
            assert r.job_ids[:len(pinned[r.vehicle_id])] == pinned[r.vehicle_id]
    else:
        assert ins.plan.unassigned[-1].job_id == "urgent"
        assert ins.plan.routes == live.plan.routes


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10**9), objective=st.sampled_from(["earliest_start", "least_detour"]))
def test_insertion_into_a_started_day_never_rewrites_the_past(seed, objective):
    """On the day's own plan at a later `now`: no place in a leg already driven, no service
    before `now`, and still the best of what the reference allows."""
    rng = random.Random(seed)
    instance, plan = built_plan(rng, rng.randint(3, 12), rng.randint(1, 4))
    now = rng.uniform(0, 150)
    job = random_job(rng, "urgent", earliest=now)
    ins = insert_job(instance, plan, job, now=now, objective=objective)
    assert check_plan(ins.instance, ins.plan).ok
    assert_best(ins, reference_insertions(instance, plan, job, now), objective)
    if ins.feasible:
        assert ins.service_start >= now - 1e-9
        assert_nothing_else_moved(plan, ins.plan, ins)
        old = next((r for r in plan.routes if r.vehicle_id == ins.vehicle_id), None)
        if old is not None and old.stops and old.start_time < now:
            v = next(v for v in instance.vehicles if v.id == ins.vehicle_id)
            leaves = simulate(instance, v, old.start_time, list(old.job_ids))[1]
            assert leaves[ins.position] >= now - 1e-9


def test_urgent_job_goes_to_the_earliest_arrival_not_the_shortest_detour():
    # e1 passes the job's site after a long job (tiny detour); e2 idles 5 minutes away.
    # Earliest start picks e2, least detour picks e1 after its long job.
    jobs = (Job("long", (10.0, 0.0), service=60.0),)
    vehicles = (Vehicle("e1", shift_end=500, start=(0.0, 0.0), end=(20.0, 0.0)),
                Vehicle("e2", shift_end=500, start=(12.0, 6.0), end=(12.0, 6.0)))
    instance = RoutingInstance("two", (0.0, 0.0), jobs, vehicles)
    plan = RoutingResult((Route("e1", 0.0, (Stop("long", 10.0),), 20.0),
                          Route("e2", 0.0, (), 0.0)), (), 20.0, 0.0, "hand")
    assert check_plan(instance, plan).ok
    urgent = Job("urgent", (12.0, 1.0), service=10.0)
    fast = insert_job(instance, plan, urgent, now=0.0)
    cheap = insert_job(instance, plan, urgent, now=0.0, objective="least_detour")
    assert (fast.vehicle_id, cheap.vehicle_id) == ("e2", "e1")
    assert fast.service_start == pytest.approx(5.0)
    assert cheap.position == 1
    assert cheap.service_start == pytest.approx(10 + 60 + math.dist((10, 0), (12, 1)))
    assert check_plan(fast.instance, fast.plan).ok and check_plan(cheap.instance, cheap.plan).ok


def test_duration_limit_delays_departure_instead_of_refusing():
    # The window opens late: leaving at shift start would break the 30-minute duration limit,
    # leaving later keeps it; the job is served at its window's opening.
    instance = RoutingInstance("dur", (0.0, 0.0), (), (
        Vehicle("e", shift_start=0, shift_end=200, start=(0.0, 0.0), max_duration=30.0),))
    job = Job("j", (10.0, 0.0), ready=100.0, due=120.0, service=5.0)
    ins = insert_job(instance, idle_plan(instance), job, now=0.0)
    assert ins.feasible and ins.service_start == pytest.approx(100.0)
    [route] = ins.plan.routes
    assert route.start_time == pytest.approx(90.0)
    assert check_plan(ins.instance, ins.plan).ok


# --- why a job fits nowhere --------------------------------------------------------------


def reason_instance(**kw) -> tuple[RoutingInstance, RoutingResult]:
    jobs = (Job("busy", (5.0, 0.0), ready=0.0, due=10.0, service=100.0),)
    v = dict(capacity=5, shift_start=0.0, shift_end=300.0, start=(0.0, 0.0),
             skills=frozenset({"lv"}))
    v.update(kw)
    instance = RoutingInstance("why", (0.0, 0.0), (), (Vehicle("e1", **v),))
    plan = insert_job(instance, idle_plan(instance), jobs[0]).plan
    return dataclasses.replace(instance, jobs=jobs), plan


@pytest.mark.parametrize(("job", "kw", "now", "reason"), [
    (Job("u", (1.0, 0.0), skills=frozenset({"hv"})), {}, 10.0, REASON_NO_SKILLED_VEHICLE),
    (Job("u", (1.0, 0.0), demand=9), {}, 10.0, REASON_OVER_CAPACITY),
    (Job("u", (1.0, 0.0), ready=0.0, due=5.0), {}, 10.0, REASON_TIME_WINDOW),  # window past
    (Job("u", (6.0, 0.0), due=60.0), {}, 10.0, REASON_TIME_WINDOW),  # busy on site till 105
    (Job("u", (200.0, 0.0)), {}, 10.0, REASON_TIME_WINDOW),          # cannot get back in time
    (Job("u", (1.0, 0.0)), {"max_jobs": 1}, 10.0, REASON_WORKLOAD),
    (Job("u", (30.0, 0.0), service=20.0), {"max_duration": 150.0}, 10.0, REASON_WORKLOAD),
    # Not started yet: alone it fits, but "busy" (due 10) can go neither after nor before it.
    (Job("u", (6.0, 0.0), ready=20.0, due=60.0), {}, 0.0, REASON_NO_ROOM),
])
def test_a_job_that_fits_nowhere_says_why(job, kw, now, reason):
    instance, plan = reason_instance(**kw)
    ins = insert_job(instance, plan, job, now=now)
    assert not ins.feasible and ins.reason == reason
    assert ins.plan.unassigned[-1].job_id == "u" and ins.plan.unassigned[-1].reason == reason
    assert ins.plan.routes == plan.routes
    assert check_plan(ins.instance, ins.plan).ok


def test_bad_insertion_input_is_refused():
    instance, plan = reason_instance()
    with pytest.raises(InvalidReplanInputError):
        insert_job(instance, plan, Job("busy", (1.0, 1.0)))
    with pytest.raises(InvalidReplanInputError):
        insert_job(instance, plan, Job("u", (1.0, 1.0)), objective="cheapest")


# --- the remaining problem at `now` --------------------------------------------------------


def three_stop_day():
    jobs = (Job("a", (10.0, 0.0), service=20.0), Job("b", (10.0, 10.0), service=20.0,
                                                      ready=0.0, due=120.0),
            Job("c", (0.0, 10.0), service=20.0, ready=60.0, due=200.0))
    v = Vehicle("e", shift_start=0.0, shift_end=400.0, start=(0.0, 0.0), end=(0.0, 0.0),
                max_duration=300.0)
    idle = Vehicle("f", shift_start=0.0, shift_end=400.0, start=(5.0, 5.0), end=(5.0, 5.0))
    instance = RoutingInstance("day", (0.0, 0.0), jobs, (v, idle))
    # e: leave 0, a 10-30, b 40-60, c 70-90, home 100.
    plan = RoutingResult(
        (Route("e", 0.0, tuple(_s(j, t) for j, t in (("a", 10.0), ("b", 40.0), ("c", 70.0))),
               40.0), Route("f", 0.0, (), 0.0)), (), 40.0, 0.0, "hand")
    assert check_plan(instance, plan).ok
    return instance, plan


def _s(job_id, t):
    return Stop(job_id, t)


def test_live_problem_drops_done_jobs_and_pins_the_one_under_way():
    instance, plan = three_stop_day()
    live = live_problem(instance, plan, now=35.0)     # halfway from a to b
    assert live.done == ("a",)
    assert {j.id for j in live.instance.jobs} == {"b", "c"}
    e = next(v for v in live.instance.vehicles if v.id == "e")
    assert e.pinned == ("b",)
    assert e.start == pytest.approx((10.0, 5.0))
    assert e.shift_start == 35.0
    assert e.max_duration is None and e.shift_end == 300.0     # left home at 0, 300 max
    assert check_plan(live.instance, live.plan).ok
    [route] = [r for r in live.plan.routes if r.vehicle_id == "e"]
    assert route.job_ids == ("b", "c")
    assert [s.service_start for s in route.stops] == pytest.approx([40.0, 70.0])
    f = next(v for v in live.instance.vehicles if v.id == "f")
    assert (f.start, f.shift_start, f.pinned) == ((5.0, 5.0), 35.0, ())


def test_on_site_electrician_starts_at_the_site_with_the_remaining_work():
    instance, plan = three_stop_day()
    state = state_from_plan(instance, plan, "e", 50.0)
    assert (state.current, state.on_site, state.free_at, state.done) == ("b", True, 60.0, ("a",))
    live = live_problem(instance, plan, now=50.0)
    e = next(v for v in live.instance.vehicles if v.id == "e")
    b = next(j for j in live.instance.jobs if j.id == "b")
    assert e.start == (10.0, 10.0) and e.pinned == ("b",) and e.shift_start == 50.0
    assert b.service == pytest.approx(10.0) and b.due == math.inf
    # A new job can go after b but never before it.
    ins = insert_job(live.instance, live.plan, Job("u", (10.0, 11.0), service=5.0),
                     objective="least_detour")
    assert ins.vehicle_id == "e" and ins.position == 1
    assert ins.service_start == pytest.approx(61.0)
    assert check_plan(ins.instance, ins.plan).ok


def test_a_late_electrician_loses_the_job_whose_window_closes():
    instance, plan = three_stop_day()
    # Stuck in traffic: at 100 still 5 minutes from b, so c (due 200) is fine but tighten it.
    tight = dataclasses.replace(instance, jobs=instance.jobs[:2] + (
        dataclasses.replace(instance.jobs[2], due=125.0),))
    state = ElectricianState("e", done=("a",), current="b", position=(10.0, 5.0),
                             left_home_at=0.0)
    live = live_problem(tight, plan, now=100.0, states={"e": state})
    assert [u.job_id for u in live.dropped] == ["c"]
    assert live.dropped[0].reason == REASON_TIME_WINDOW
    [route] = [r for r in live.plan.routes if r.vehicle_id == "e"]
    assert route.job_ids == ("b",) and route.stops[0].service_start == pytest.approx(105.0)
    assert check_plan(live.instance, live.plan).ok


def test_live_state_errors_are_refused():
    instance, plan = three_stop_day()
    with pytest.raises(InvalidReplanInputError):
        live_problem(instance, plan, 10.0, {"zz": ElectricianState("zz")})
    with pytest.raises(InvalidReplanInputError):
        live_problem(instance, plan, 10.0, {"e": ElectricianState("e", done=("nope",))})
    with pytest.raises(InvalidReplanInputError):
        live_problem(instance, plan, 10.0, {"e": ElectricianState("e", current="b"),
                                            "f": ElectricianState("f", current="b")})


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9))
def test_following_the_plan_carries_it_over_unchanged(seed):
    """Electricians who follow the plan: the carried plan passes the checker, drops nothing,
    keeps every remaining stop's start, and each moment's live problem composes."""
    rng = random.Random(seed)
    instance, plan = built_plan(rng, rng.randint(3, 12), rng.randint(1, 4))
    now = rng.uniform(0, 200)
    live = live_problem(instance, plan, now)
    assert live.dropped == ()
    assert check_plan(live.instance, live.plan).ok
    ends = {}
    for r in plan.routes:
        v = next(v for v in instance.vehicles if v.id == r.vehicle_id)
        begins = simulate(instance, v, r.start_time, list(r.job_ids))[0]
        ends.update({j: b for j, b in zip(r.job_ids, begins, strict=True)})
    done = set(live.done)
    remaining = {j.id for j in live.instance.jobs}
    assert done.isdisjoint(remaining) and done | remaining == {j.id for j in instance.jobs}
    for r in live.plan.routes:
        for s in r.stops:
            if s.job_id not in {v.pinned[0] for v in live.instance.vehicles if v.pinned}:
                assert s.service_start == pytest.approx(ends[s.job_id], abs=1e-6)
    later = live_problem(live.instance, live.plan, now + rng.uniform(0, 60))
    assert check_plan(later.instance, later.plan).ok and later.dropped == ()


# --- re-optimisation ---------------------------------------------------------------------


def test_reoptimise_never_worse_and_keeps_the_work_under_way():
    instance = field_service_day(11, jobs=40, electricians=12)
    plan = solve(instance, SearchOptions(time_limit_s=1.0, engine="ortools"))
    live = live_problem(instance, plan, now=600.0)
    current, current_plan = live.instance, live.plan
    rng = random.Random(5)
    for i in range(6):
        job = Job(f"u{i}", (rng.uniform(0, 60), rng.uniform(0, 40)), ready=600.0, due=720.0,
                  service=30.0, skills=frozenset({LOW_VOLTAGE}))
        ins = insert_job(current, current_plan, job, objective="least_detour")
        current, current_plan = ins.instance, ins.plan
    better = reoptimise(current, current_plan, seconds=1.0)
    assert check_plan(current, better).ok
    assert better.total_distance <= current_plan.total_distance + 1e-9
    served = {s.job_id for r in current_plan.routes for s in r.stops}
    assert served <= {s.job_id for r in better.routes for s in r.stops}
    for v in current.vehicles:
        [route] = [r for r in better.routes if r.vehicle_id == v.id]
        assert route.job_ids[:len(v.pinned)] == v.pinned
        if v.pinned:
            assert route.start_time == pytest.approx(v.shift_start)


def test_reoptimise_returns_the_input_when_the_solver_cannot_beat_it():
    instance, plan = three_stop_day()
    live = live_problem(instance, plan, 35.0)
    again = reoptimise(live.instance, live.plan, seconds=0.3)
    assert again.total_distance <= live.plan.total_distance + 1e-9
    assert check_plan(live.instance, again).ok


# --- the synthetic day -------------------------------------------------------------------


def test_synthetic_day_is_deterministic_per_seed():
    a, b = field_service_day(3, jobs=80, electricians=30), field_service_day(3, 80, 30)
    assert a == b and a.meta == b.meta
    assert field_service_day(4, 80, 30) != a
    big = field_service_day(1)
    assert (len(big.jobs), len(big.vehicles)) == (500, 200)


def test_synthetic_day_looks_like_a_field_service_day():
    day = field_service_day(2)
    for job in day.jobs:
        assert LOW_VOLTAGE in job.skills and len(job.skills - {LOW_VOLTAGE}) <= 1
        assert job.skills <= {LOW_VOLTAGE, *SPECIAL_SKILLS}
        assert 20 <= job.service <= 90 and job.demand == 0
        assert 0 <= job.location[0] <= 60 and 0 <= job.location[1] <= 40
        assert 480 <= job.ready <= job.due <= 1080
    windowed = [j for j in day.jobs if (j.ready, j.due) != (480.0, 1080.0)]
    assert 0.3 < len(windowed) / len(day.jobs) < 0.5
    assert all(j.due - j.ready <= 240 for j in windowed)
    for v in day.vehicles:
        assert LOW_VOLTAGE in v.skills and v.start == v.end
        assert (v.shift_start, v.shift_end) in {(480.0, 1020.0), (600.0, 1140.0)}
        assert (v.max_duration, v.max_jobs, v.capacity) == (480.0, 6, 0)
    for skill in SPECIAL_SKILLS:
        assert any(skill in v.skills for v in day.vehicles)


def test_small_synthetic_day_is_served_in_full():
    day = field_service_day(5, jobs=60, electricians=24)
    result = solve(day, SearchOptions(time_limit_s=1.0, engine="ortools"))
    assert check_plan(day, result).ok
    assert result.unassigned == ()
