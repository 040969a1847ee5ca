"""Benchmark of a large field-service day and of live urgent-job insertion (`alliance.replan`).

Run from the repository root: `python bench/dispatch_live.py [--quick] [--seed N]`.
Progress goes to stderr; the last stdout line is one JSON object (see docs BENCHMARKS.md).
`bench/dispatch.py` may call `run_large`, `run_insertions` and `compare_first_solution`.

- large: `alliance.synthetic.field_service_day(seed)` (500 jobs × 200 electricians; quick
  100 × 40) solved by `alliance.routing.solve`. `large_first_plan_s` = instance build +
  the solver's time to its first plan (which includes matrix and model build);
  `large_total_s` = build + the whole solve, wall clock. The search limit is 27 s (quick 5 s)
  so that build, model and the solver's last step fit in the 30 s target. The routing
  core's default engine (PyVRP) is used; `--engine ortools` runs the second engine with
  its defaults (cheapest insertion, guided local search; `--metaheuristic` to change).
  Measured: at this size OR-Tools' guided local search can overrun its limit by 10-15 s,
  inside the global/local cheapest-insertion path LNS operators; tabu search and simulated
  annealing keep the limit.
- insertions: the solved day is turned into the live problem at several moments
  (`live_problem`, electricians following the plan), then urgent jobs (service start within
  30 minutes of `now`) are inserted one at a time, each into the plan the previous one left.
  Every carried and every resulting plan goes through `alliance.checker.check_plan`.
- first-solution strategies (full run, or `--strategies`): time to the first plan of each
  strategy on the same instance in the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alliance.checker import check_plan  # noqa: E402
from alliance.instances import Job, RoutingInstance  # noqa: E402
from alliance.replan import insert_job, live_problem, reoptimise  # noqa: E402
from alliance.routing import RoutingResult, SearchOptions, solve  # noqa: E402
from alliance.synthetic import LOW_VOLTAGE, SPECIAL_SKILLS, field_service_day  # noqa: E402

DEFAULT_SEED = 7
STRATEGIES = ("PARALLEL_CHEAPEST_INSERTION", "PATH_CHEAPEST_ARC", "LOCAL_CHEAPEST_INSERTION")
LIVE_MOMENTS = (540.0, 630.0, 720.0, 810.0, 900.0)   # 09:00 … 15:00
PROMISE_MIN = 30.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _size(quick: bool) -> tuple[int, int, float]:
    return (100, 40, 5.0) if quick else (500, 200, 27.0)


@functools.lru_cache(maxsize=4)
def _solved_day(seed: int, quick: bool, first_solution: str = "PARALLEL_CHEAPEST_INSERTION",
                engine: str = "pyvrp", metaheuristic: str = "GUIDED_LOCAL_SEARCH"
                ) -> tuple[RoutingInstance, RoutingResult, float, float]:
    jobs, electricians, seconds = _size(quick)
    t0 = time.perf_counter()
    instance = field_service_day(seed, jobs=jobs, electricians=electricians)
    build_s = time.perf_counter() - t0
    result = solve(instance, SearchOptions(time_limit_s=seconds, first_solution=first_solution,
                                           engine=engine, metaheuristic=metaheuristic))
    total_s = time.perf_counter() - t0
    return instance, result, build_s, total_s


def run_large(seed: int = DEFAULT_SEED, quick: bool = False,
              first_solution: str = "PARALLEL_CHEAPEST_INSERTION", engine: str = "pyvrp",
              metaheuristic: str = "GUIDED_LOCAL_SEARCH") -> dict:
    """Solve one synthetic day; figures of the first and the final plan."""
    instance, result, build_s, total_s = _solved_day(seed, quick, first_solution, engine,
                                                     metaheuristic)
    check = check_plan(instance, result)
    log(f"large {len(instance.jobs)}x{len(instance.vehicles)}: first plan "
        f"{result.first_solution_s}, total {total_s:.2f}s, distance {result.total_distance:.1f}, "
        f"unassigned {len(result.unassigned)}, check {check.ok}")
    first = result.first_solution_s
    return {
        "large_jobs": len(instance.jobs),
        "large_electricians": len(instance.vehicles),
        "large_build_s": round(build_s, 4),
        "large_first_plan_s": None if first is None else round(build_s + first, 4),
        "large_total_s": round(total_s, 3),
        "large_time_limit_s": _size(quick)[2],
        "large_engine": engine,
        "large_first_solution": first_solution,
        "large_metaheuristic": metaheuristic,
        "large_unassigned": len(result.unassigned),
        "large_unassigned_reasons": sorted({u.reason for u in result.unassigned}),
        "large_distance": round(result.total_distance, 3),
        "large_vehicles_used": result.vehicles_used,
        "large_check_ok": check.ok,
    }


def compare_first_solution(seed: int = DEFAULT_SEED, quick: bool = False,
                           strategies: tuple[str, ...] = STRATEGIES,
                           seconds: float = 3.0) -> dict:
    """OR-Tools: time to the first plan (from the start of `solve`, model build included) per
    strategy, with the distance reached after `seconds` of search, on the same instance."""
    jobs, electricians, _ = _size(quick)
    instance = field_service_day(seed, jobs=jobs, electricians=electricians)
    out: dict = {}
    for name in strategies:
        res = solve(instance, SearchOptions(time_limit_s=seconds, first_solution=name,
                                            engine="ortools"))
        key = name.lower()
        out[f"first_plan_s_{key}"] = (None if res.first_solution_s is None
                                      else round(res.first_solution_s, 3))
        out[f"distance_after_{seconds:g}s_{key}"] = round(res.total_distance, 1)
        log(f"strategy {name}: first plan {res.first_solution_s}, distance after {seconds:g}s "
            f"{res.total_distance:.1f}, unassigned {len(res.unassigned)}")
    return out


def urgent_job(rng: np.random.Generator, instance: RoutingInstance, now: float,
               job_id: str) -> Job:
    """A repair request raised at `now`: on site within 30 minutes, 30-90 minutes of work."""
    width, height = instance.meta.get("area", (60.0, 40.0))
    need = int(rng.choice(len(SPECIAL_SKILLS) + 1, p=[0.55, 0.20, 0.15, 0.10]))
    skills = frozenset([LOW_VOLTAGE] if need == 0 else [LOW_VOLTAGE, SPECIAL_SKILLS[need - 1]])
    x, y = rng.uniform(0.0, width), rng.uniform(0.0, height)
    return Job(job_id, (round(float(x), 2), round(float(y), 2)), ready=now,
               due=now + PROMISE_MIN, service=float(rng.integers(6, 19) * 5), skills=skills)


def run_insertions(seed: int = DEFAULT_SEED, count: int = 100, quick: bool = False,
                   reopt_seconds: float | None = None, **solver) -> dict:
    """Insert `count` urgent jobs into the live plan at several moments of the solved day
    (the day `run_large` solved with the same `solver` keywords; solved here if not yet)."""
    instance, plan, _, _ = _solved_day(seed, quick, **solver)
    rng = np.random.default_rng(seed + 1_000_003)
    times: list[float] = []
    live_s: list[float] = []
    feasible = 0
    starts: list[float] = []
    live_ok = insert_ok = True
    reasons: dict[str, int] = {}
    per_moment = [count // len(LIVE_MOMENTS) + (i < count % len(LIVE_MOMENTS))
                  for i in range(len(LIVE_MOMENTS))]
    last = None
    for now, n in zip(LIVE_MOMENTS, per_moment, strict=True):
        t0 = time.perf_counter()
        live = live_problem(instance, plan, now)
        live_s.append(time.perf_counter() - t0)
        ok = check_plan(live.instance, live.plan).ok
        live_ok &= ok
        current, current_plan = live.instance, live.plan
        for i in range(n):
            job = urgent_job(rng, instance, now, f"urgent-{int(now)}-{i}")
            t0 = time.perf_counter()
            ins = insert_job(current, current_plan, job, now=now)
            times.append(time.perf_counter() - t0)
            check = check_plan(ins.instance, ins.plan)
            insert_ok &= check.ok
            if not check.ok:
                log(f"insertion {job.id}: {check.violations[:3]}")
            if ins.feasible:
                feasible += 1
                starts.append(ins.service_start - now)
            else:
                reasons[ins.reason] = reasons.get(ins.reason, 0) + 1
            current, current_plan = ins.instance, ins.plan
        log(f"now {now:g}: live problem {live_s[-1] * 1000:.1f} ms (check {ok}), "
            f"{n} insertions, p95 so far {np.percentile(times, 95) * 1000:.2f} ms")
        last = (current, current_plan)
    out = {
        "insert_count": len(times),
        "insert_p50_s": round(float(np.percentile(times, 50)), 5),
        "insert_p95_s": round(float(np.percentile(times, 95)), 5),
        "insert_max_s": round(max(times), 5),
        "insert_feasible_share": round(feasible / len(times), 4),
        "insert_mean_start_after_min": round(float(np.mean(starts)), 2) if starts else None,
        "insert_unassigned_reasons": reasons,
        "insert_check_ok": insert_ok,
        "live_problem_max_s": round(max(live_s), 4),
        "live_check_ok": live_ok,
    }
    if reopt_seconds and last is not None:
        current, current_plan = last
        t0 = time.perf_counter()
        better = reoptimise(current, current_plan, reopt_seconds)
        served = {s.job_id for r in current_plan.routes for s in r.stops}
        served_after = {s.job_id for r in better.routes for s in r.stops}
        kept = served <= served_after
        out.update({
            "reopt_s": round(time.perf_counter() - t0, 3),
            "reopt_distance_before": round(current_plan.total_distance, 3),
            "reopt_distance_after": round(better.total_distance, 3),
            "reopt_served_before": len(served),
            "reopt_served_after": len(served_after),
            # Never serves less; drives no more unless it serves more.
            "reopt_check_ok": check_plan(current, better).ok and kept
            and (len(served_after) > len(served)
                 or better.total_distance <= current_plan.total_distance + 1e-9),
        })
        log(f"reoptimise {reopt_seconds:g}s: {out['reopt_distance_before']} -> "
            f"{out['reopt_distance_after']} ({out['reopt_s']} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--strategies", action="store_true",
                        help="time every first-solution strategy (always on a full run)")
    parser.add_argument("--engine", default="pyvrp", choices=("pyvrp", "ortools"))
    parser.add_argument("--metaheuristic", default="GUIDED_LOCAL_SEARCH",
                        help="OR-Tools local search metaheuristic for the large day")
    args = parser.parse_args(argv)
    figures: dict = {"bench": "dispatch_live", "seed": args.seed, "quick": args.quick}
    figures.update(run_large(args.seed, args.quick, engine=args.engine,
                             metaheuristic=args.metaheuristic))
    figures.update(run_insertions(args.seed, args.count, args.quick,
                                  reopt_seconds=2.0 if args.quick else 5.0,
                                  engine=args.engine, metaheuristic=args.metaheuristic))
    if args.strategies or not args.quick:
        figures.update(compare_first_solution(args.seed, args.quick))
    figures["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["ok"] = bool(figures["large_check_ok"] and figures["insert_check_ok"]
                         and figures["live_check_ok"] and figures.get("reopt_check_ok", True))
    print(json.dumps({"bench": figures.pop("bench"), "ok": figures.pop("ok"), **figures},
                     default=lambda x: None if isinstance(x, float) and math.isnan(x) else x))
    return 0 if figures.get("large_check_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
