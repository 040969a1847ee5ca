"""Alliance routing core: Solomon reader, OR-Tools VRPTW, and the independent route checker."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest

from alliance.checker import check_plan
from alliance.instances import (
    InvalidRoutingInstanceError,
    Job,
    RoutingInstance,
    Vehicle,
    read_solomon,
)
from alliance.routing import (
    REASON_NO_SKILLED_VEHICLE,
    REASON_OVER_CAPACITY,
    REASON_TIME_WINDOW,
    Route,
    RoutingResult,
    SearchOptions,
    Stop,
    Unassigned,
    solve,
)

ROOT = Path(__file__).resolve().parents[2]
VRPTW = Path(os.environ.get("PARKGRID_VRPTW_DIR", ROOT.parent / "shared" / "benchmarks" / "vrptw"))


def line_instance(**vehicle_kw) -> RoutingInstance:
    """Depot at 0, jobs at x = 1, 2, 3 on a line: any plan on one trip has length 6."""
    jobs = (Job("a", (1.0, 0.0), demand=1, ready=0, due=100, service=1),
            Job("b", (2.0, 0.0), demand=1, ready=0, due=100, service=1),
            Job("c", (3.0, 0.0), demand=1, ready=0, due=100, service=1))
    vehicles = (Vehicle("v1", capacity=vehicle_kw.pop("capacity", 10), shift_start=0,
                        shift_end=vehicle_kw.pop("shift_end", 100), **vehicle_kw),)
    return RoutingInstance("line", (0.0, 0.0), jobs, vehicles)


def test_tiny_instance_is_solved_to_the_hand_computed_optimum():
    inst = line_instance()
    res = solve(inst, SearchOptions(time_limit_s=1))
    assert res.unassigned == ()
    assert res.total_distance == pytest.approx(6.0)
    [route] = [r for r in res.routes if r.stops]
    assert sorted(route.job_ids) == ["a", "b", "c"]
    assert check_plan(inst, res).ok


def test_time_windows_force_the_visiting_order():
    jobs = (Job("far", (3.0, 0.0), ready=0, due=3, service=0),
            Job("near", (1.0, 0.0), ready=10, due=20, service=0))
    inst = RoutingInstance("tw", (0.0, 0.0), jobs, (Vehicle("v1", shift_end=50),))
    res = solve(inst, SearchOptions(time_limit_s=1))
    [route] = [r for r in res.routes if r.stops]
    assert route.job_ids == ("far", "near")
    assert check_plan(inst, res).ok


def test_skills_route_jobs_to_qualified_vehicles_and_unfit_jobs_get_a_reason():
    jobs = (Job("hv", (1.0, 1.0), skills=frozenset({"hv"}), due=100),
            Job("lv", (1.0, -1.0), due=100),
            Job("gas", (2.0, 0.0), skills=frozenset({"gas"}), due=100),
            Job("heavy", (2.0, 1.0), demand=50, due=100),
            Job("late", (90.0, 0.0), due=5))
    vehicles = (Vehicle("plain", capacity=10, shift_end=100),
                Vehicle("hv-cert", capacity=10, shift_end=100, skills=frozenset({"hv"})))
    inst = RoutingInstance("skills", (0.0, 0.0), jobs, vehicles)
    res = solve(inst, SearchOptions(time_limit_s=1))
    reasons = {u.job_id: u.reason for u in res.unassigned}
    assert reasons == {"gas": REASON_NO_SKILLED_VEHICLE, "heavy": REASON_OVER_CAPACITY,
                       "late": REASON_TIME_WINDOW}
    by_vehicle = {r.vehicle_id: r.job_ids for r in res.routes}
    assert "hv" in by_vehicle["hv-cert"]
    assert check_plan(inst, res).ok


def test_shift_and_workload_limits_leave_out_what_does_not_fit():
    inst = line_instance(max_jobs=2)
    res = solve(inst, SearchOptions(time_limit_s=1))
    assert len(res.unassigned) == 1 and check_plan(inst, res).ok
    # Shift end 5: out to x=2 and back with two services takes 2 + 2 + 2 = 6 > 5.
    inst = line_instance(shift_end=5)
    res = solve(inst, SearchOptions(time_limit_s=1))
    assert len(res.unassigned) == 2 and check_plan(inst, res).ok


def test_bad_input_is_refused():
    with pytest.raises(InvalidRoutingInstanceError):
        RoutingInstance("x", (0.0, 0.0), (Job("a", (1.0, 0.0), ready=5, due=1),), ())
    with pytest.raises(InvalidRoutingInstanceError):
        RoutingInstance("x", (0.0, math.nan), (), ())
    with pytest.raises(InvalidRoutingInstanceError):
        RoutingInstance("x", (0.0, 0.0), (), (Vehicle("v", shift_start=5, shift_end=1),))


# --- the checker catches each broken plan -------------------------------------------------

def _good_plan():
    inst = line_instance()
    route = Route("v1", 0.0, (Stop("a", 1.0), Stop("b", 3.0), Stop("c", 5.0)), 6.0)
    return inst, RoutingResult((route,), (), 6.0, 0.0, "hand")


def _with_stops(plan: RoutingResult, ids: list[str], unassigned=()) -> RoutingResult:
    route = dataclasses.replace(plan.routes[0], stops=tuple(Stop(i, 0.0) for i in ids))
    inst = line_instance()
    total = check_plan(inst, RoutingResult((route,), (), 0.0, 0.0, "")).total_distance
    return RoutingResult((route,), tuple(Unassigned(u, "x") for u in unassigned), total, 0.0, "")


def test_checker_accepts_the_good_plan():
    inst, plan = _good_plan()
    check = check_plan(inst, plan)
    assert check.ok and check.total_distance == pytest.approx(6.0) and check.served == 3


def test_checker_catches_late_arrival():
    _, plan = _good_plan()
    inst = dataclasses.replace(line_instance(), jobs=(
        Job("a", (1.0, 0.0), demand=1, due=100, service=1),
        Job("b", (2.0, 0.0), demand=1, due=100, service=1),
        Job("c", (3.0, 0.0), demand=1, due=4.5, service=1)))
    assert check_plan(inst, plan).kinds() == {"late_arrival"}


def test_checker_catches_skill_mismatch():
    _, plan = _good_plan()
    inst = line_instance()
    inst = dataclasses.replace(inst, jobs=inst.jobs[:2] + (
        dataclasses.replace(inst.jobs[2], skills=frozenset({"hv"})),))
    assert check_plan(inst, plan).kinds() == {"skill_mismatch"}


def test_checker_catches_over_capacity_and_shift_end():
    _, plan = _good_plan()
    assert check_plan(line_instance(capacity=2), plan).kinds() == {"over_capacity"}
    assert check_plan(line_instance(shift_end=8), plan).kinds() == {"shift_end"}
    assert check_plan(line_instance(max_jobs=2), plan).kinds() == {"workload"}


def test_checker_catches_double_visit_missing_job_and_wrong_distance():
    inst, plan = _good_plan()
    assert check_plan(inst, _with_stops(plan, ["a", "b", "c", "a"])).kinds() == {"double_visit"}
    assert check_plan(inst, _with_stops(plan, ["a", "b"], unassigned=["b"])).kinds() == {
        "double_visit", "missing_job"}
    assert check_plan(inst, _with_stops(plan, ["a", "b"])).kinds() == {"missing_job"}
    assert check_plan(inst, _with_stops(plan, ["a", "b"], unassigned=["c"])).ok
    wrong = dataclasses.replace(plan, total_distance=5.0)
    assert check_plan(inst, wrong).kinds() == {"distance_mismatch"}


# --- one Solomon instance -----------------------------------------------------------------

@pytest.mark.skipif(not (VRPTW / "solomon" / "C101.txt").exists(),
                    reason="Solomon files missing: set PARKGRID_VRPTW_DIR to the folder with "
                           "solomon/ and BKS.json")
def test_solomon_c101_in_two_seconds_is_close_to_best_known_and_checker_clean():
    inst = read_solomon(VRPTW / "solomon" / "C101.txt")
    assert len(inst.jobs) == 100 and len(inst.vehicles) == 25
    assert inst.vehicles[0].capacity == 200 and inst.jobs[0].service == 90
    bks = json.loads((VRPTW / "BKS.json").read_text())["C101_distance"]["best_known_cost"]
    res = solve(inst, SearchOptions(time_limit_s=2))
    check = check_plan(inst, res)
    assert check.ok, check.violations[:5]
    assert res.unassigned == ()
    assert check.total_distance == pytest.approx(res.total_distance)
    assert res.total_distance <= bks * 1.05


def test_pinned_jobs_open_the_route_in_order_even_when_a_detour():
    # "c" is pinned first on v1 (the electrician is already driving there), then "a".
    inst = line_instance()
    inst = dataclasses.replace(inst, vehicles=(dataclasses.replace(
        inst.vehicles[0], pinned=("c", "a")),))
    res = solve(inst, SearchOptions(time_limit_s=1))
    [route] = res.routes
    assert route.job_ids[:2] == ("c", "a")
    assert res.unassigned == ()
    assert check_plan(inst, res).ok
    assert res.first_solution_s is not None and res.first_solution_s <= res.solve_s


def test_checker_reports_a_broken_pin_and_bad_pins_are_refused():
    inst = line_instance()
    pinned = dataclasses.replace(inst, vehicles=(dataclasses.replace(
        inst.vehicles[0], pinned=("c",)),))
    plan = solve(inst, SearchOptions(time_limit_s=1))
    assert plan.routes[0].job_ids[0] != "c"
    assert "pinned" in check_plan(pinned, plan).kinds()
    with pytest.raises(InvalidRoutingInstanceError, match="unknown job"):
        dataclasses.replace(inst, vehicles=(dataclasses.replace(
            inst.vehicles[0], pinned=("zz",)),))
    with pytest.raises(InvalidRoutingInstanceError, match="without its skills"):
        RoutingInstance("x", (0.0, 0.0), (Job("hv", (1.0, 0.0), skills=frozenset({"hv"})),),
                        (Vehicle("v", pinned=("hv",)),))


def test_search_starts_from_a_given_plan_and_keeps_it_feasible():
    inst = line_instance()
    start = RoutingResult((Route("v1", 0.0, (Stop("c", 3.0), Stop("a", 6.0), Stop("b", 8.0)),
                                 0.0),), (), 0.0, 0.0, "given")
    res = solve(inst, SearchOptions(time_limit_s=1), initial=start)
    assert res.total_distance == pytest.approx(6.0)
    assert check_plan(inst, res).ok


def _random_field_day(seed: int) -> RoutingInstance:
    """Twelve jobs, four electricians with skills, shifts, workload limits and one pin."""
    import random
    rng = random.Random(seed)
    jobs = []
    for i in range(12):
        ready = rng.choice((0.0, 30.0, 60.0))
        jobs.append(Job(f"j{i}", (rng.uniform(-20, 20), rng.uniform(-20, 20)),
                        ready=ready, due=ready + rng.choice((60.0, 240.0)),
                        service=rng.uniform(5, 20),
                        skills=frozenset({"hv"}) if i % 4 == 0 else frozenset()))
    vehicles = (
        Vehicle("e1", shift_end=300, skills=frozenset({"hv"}), start=(5.0, 5.0), pinned=("j0",)),
        Vehicle("e2", shift_end=300, max_jobs=3),
        Vehicle("e3", shift_start=30, shift_end=240, start=(-10.0, 0.0), end=(-10.0, 0.0)),
        Vehicle("e4", shift_end=300, skills=frozenset({"hv"}), max_duration=150))
    return RoutingInstance(f"field-{seed}", (0.0, 0.0), tuple(jobs), vehicles)


@pytest.mark.parametrize("seed", range(4))
def test_both_engines_give_checked_plans_of_the_same_quality(seed):
    inst = _random_field_day(seed)
    results = {engine: solve(inst, SearchOptions(time_limit_s=1.5, engine=engine))
               for engine in ("pyvrp", "ortools")}
    for engine, res in results.items():
        check = check_plan(inst, res)
        assert check.ok, (engine, check.violations)
        assert res.routes[0].job_ids[0] == "j0"
    served = {e: len(inst.jobs) - len(r.unassigned) for e, r in results.items()}
    assert served["pyvrp"] >= served["ortools"]
    if served["pyvrp"] == served["ortools"]:
        assert results["pyvrp"].total_distance <= results["ortools"].total_distance * 1.02


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown routing engine"):
        solve(line_instance(), SearchOptions(engine="simplex"))


@pytest.mark.parametrize("engine", ["pyvrp", "ortools"])
def test_departure_is_late_enough_for_the_workload_limit(engine):
    # "b" opens at 20: leaving at 0 would wait 18 minutes and break the 10-minute limit.
    jobs = (Job("a", (1.0, 0.0), ready=0, due=100), Job("b", (2.0, 0.0), ready=20, due=100))
    inst = RoutingInstance("wait", (0.0, 0.0), jobs, (Vehicle("v", max_duration=10),))
    res = solve(inst, SearchOptions(time_limit_s=1, engine=engine))
    assert res.unassigned == ()
    assert check_plan(inst, res).ok
