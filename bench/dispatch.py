"""Benchmark of the alliance dispatch core (`alliance.routing`) on the Solomon VRPTW instances.

Run from the repository root:
`python bench/dispatch.py [--quick] [--seconds S] [--instances C101,R1*] [--jobs N] [--data DIR]`.
Progress goes to stderr; the last stdout line is one JSON object (see docs BENCHMARKS.md).

Data: the folder holding `solomon/` and `BKS.json`, from `--data`, else the environment
variable `PARKGRID_VRPTW_DIR`, else `../shared/benchmarks/vrptw` relative to the repository's
parent folder. Gaps are against the `<name>_distance` best-known total distances (vehicle
count free), distances Euclidean and unrounded.

The run has three parts (`--parts`, all by default):
- `solomon`: the instances below;
- `large`: a seeded field-service day of 500 jobs × 200 electricians (first and final plan
  times) and 100 urgent jobs inserted one at a time into its live plan
  (`bench/dispatch_live.py`);
- `city`: the seeded synthetic city under the optimised and the greedy nearest-qualified
  dispatch policies (`bench/dispatch_city.py`).

Full run: all 56 instances at `--seconds 30`. `--quick`: six instances (one per family) at
4 s each. pyvroom, when importable, solves the same instances in the same run on the same
scaled matrices (exploration level 5, one thread); its plans go through the same checker.
`ok` is true only when the independent checker (`alliance.checker`) finds every plan of
ours clean with every job served. `--engine ortools` runs the second engine instead.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from alliance.checker import check_plan  # noqa: E402
from alliance.instances import read_solomon  # noqa: E402
from alliance.routing import (  # noqa: E402
    SCALE,
    Route,
    RoutingResult,
    SearchOptions,
    Stop,
    Unassigned,
    solve,
)

QUICK = ("C101", "C201", "R101", "R201", "RC101", "RC201")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_data_dir() -> Path:
    env = os.environ.get("PARKGRID_VRPTW_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "benchmarks" / "vrptw"


def solve_vroom(instance) -> tuple[RoutingResult | None, float]:
    """pyvroom on the same instance: ceil-scaled durations, rounded-scaled costs."""
    try:
        import numpy as np
        import vroom
    except ImportError:
        return None, 0.0
    points = [instance.depot] + [j.location for j in instance.jobs]
    xy = np.asarray(points, dtype=float)
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2))
    inp = vroom.Input()
    inp.set_durations_matrix(profile="car", matrix_input=np.ceil(dist * SCALE - 1e-9)
                             .astype(np.uint32))
    inp.set_costs_matrix(profile="car", matrix_input=np.rint(dist * SCALE).astype(np.uint32))
    for k, v in enumerate(instance.vehicles):
        inp.add_vehicle(vroom.Vehicle(
            id=k + 1, start=0, end=0, capacity=[v.capacity],
            time_window=vroom.TimeWindow(int(round(v.shift_start * SCALE)),
                                         int(round(v.shift_end * SCALE)))))
    inp.add_job([vroom.Job(
        id=i + 1, location=i + 1, delivery=[j.demand],
        default_service=int(round(j.service * SCALE)),
        time_windows=[vroom.TimeWindow(int(round(j.ready * SCALE)), int(round(j.due * SCALE)))])
        for i, j in enumerate(instance.jobs)])
    t0 = time.perf_counter()
    sol = inp.solve(exploration_level=5, nb_threads=1).to_dict()
    elapsed = time.perf_counter() - t0
    routes, served = [], set()
    for r in sol.get("routes", []):
        v = instance.vehicles[int(r["vehicle"]) - 1]
        steps = r["steps"]
        start = next(s["arrival"] for s in steps if s["type"] == "start") / SCALE
        stops, pos, d = [], instance.depot, 0.0
        for s in steps:
            if s["type"] == "job":
                job = instance.jobs[int(s["id"]) - 1]
                served.add(job.id)
                d += math.dist(pos, job.location)
                pos = job.location
                stops.append(Stop(job.id, (s["arrival"] + s.get("waiting_time", 0)) / SCALE))
        d += math.dist(pos, instance.depot)
        routes.append(Route(v.id, start, tuple(stops), d))
    unassigned = tuple(Unassigned(j.id, "vroom") for j in instance.jobs if j.id not in served)
    total = math.fsum(r.distance for r in routes)
    return RoutingResult(tuple(routes), unassigned, total, elapsed, "vroom"), elapsed


def run_one(args: tuple[str, str, float, float, bool, str]) -> dict:
    path, name, seconds, bks, with_vroom, engine = args
    instance = read_solomon(path)
    result = solve(instance, SearchOptions(time_limit_s=seconds, engine=engine))
    check = check_plan(instance, result)
    row = {
        "instance": name, "bks": bks, "distance": round(result.total_distance, 4),
        "gap_pct": 100.0 * (result.total_distance / bks - 1.0), "s": result.solve_s,
        "vehicles": result.vehicles_used, "unassigned": len(result.unassigned),
        "check_ok": check.ok and not result.unassigned,
        "violations": [f"{v.kind}:{v.subject}" for v in check.violations[:5]],
    }
    if with_vroom:
        vres, vs = solve_vroom(instance)
        if vres is not None:
            vcheck = check_plan(instance, vres)
            row.update(vroom_distance=round(vres.total_distance, 4),
                       vroom_gap_pct=100.0 * (vres.total_distance / bks - 1.0), vroom_s=vs,
                       vroom_unassigned=len(vres.unassigned), vroom_check_ok=vcheck.ok)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="six instances, 4 s each")
    parser.add_argument("--seconds", type=float, help="time limit per instance (30; quick 4)")
    parser.add_argument("--instances", help="comma-separated names or patterns (all 56)")
    parser.add_argument("--jobs", type=int, default=1, help="instances solved in parallel")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with solomon/ and BKS.json (default: "
                             "$PARKGRID_VRPTW_DIR or ../shared/benchmarks/vrptw)")
    parser.add_argument("--no-vroom", action="store_true", help="skip the pyvroom reference")
    parser.add_argument("--engine", default="pyvrp", choices=("pyvrp", "ortools"),
                        help="routing engine of alliance.routing (default pyvrp)")
    parser.add_argument("--parts", default="solomon,large,city",
                        help="comma-separated parts to run (solomon,large,city)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the large day and of the city (their defaults)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - {"solomon", "large", "city"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    t0 = time.perf_counter()
    figures: dict = {"engine": args.engine}
    ok = True
    if "solomon" in parts:
        part_ok, part = solomon(args)
        ok &= part_ok
        figures.update(part)
    if "large" in parts:
        from dispatch_live import DEFAULT_SEED, run_insertions, run_large
        seed = DEFAULT_SEED if args.seed is None else args.seed
        figures.update(run_large(seed, args.quick, engine=args.engine))
        figures.update(run_insertions(seed, 100, args.quick, engine=args.engine,
                                      reopt_seconds=2.0 if args.quick else 5.0))
        ok &= bool(figures["large_check_ok"] and figures["insert_check_ok"]
                   and figures["live_check_ok"] and figures.get("reopt_check_ok", True))
    if "city" in parts:
        from dispatch_city import DEFAULT_SEED as CITY_SEED
        from dispatch_city import run_city
        city = run_city(CITY_SEED if args.seed is None else args.seed, args.quick)
        ok &= bool(city.get("ok", True))
        figures.update({k: v for k, v in city.items() if k not in ("bench", "ok")})
    figures["wall_s"] = round(time.perf_counter() - t0, 2)
    figures["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({"bench": "dispatch", "ok": ok, **figures}))


def solomon(args) -> tuple[bool, dict]:
    """The Solomon part: our plans and pyvroom's, both through the independent checker."""
    data = args.data or default_data_dir()
    seconds = args.seconds if args.seconds is not None else (4.0 if args.quick else 30.0)
    bks_all = json.loads((data / "BKS.json").read_text())
    files = sorted((data / "solomon").glob("*.txt"))
    names = [f.stem for f in files]
    if args.instances:
        patterns = args.instances.split(",")
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    elif args.quick:
        names = [n for n in names if n in QUICK]
    try:
        import vroom  # noqa: F401
        with_vroom = not args.no_vroom
    except ImportError:
        with_vroom = False
        log("pyvroom not importable: vroom_avg_gap_pct is null")
    tasks = [(str(data / "solomon" / f"{n}.txt"), n, seconds,
              bks_all[f"{n}_distance"]["best_known_cost"], with_vroom, args.engine)
             for n in names]
    log(f"{len(tasks)} instances at {seconds} s, {args.jobs} in parallel, vroom={with_vroom}")
    t0 = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(run_one, tasks):
            rows.append(row)
            extra = (f"  vroom {row['vroom_gap_pct']:6.2f}% ({row['vroom_s']:.2f} s)"
                     if "vroom_gap_pct" in row else "")
            log(f"{row['instance']:6s} {row['distance']:10.2f} bks {row['bks']:9.2f} "
                f"gap {row['gap_pct']:6.2f}% veh {row['vehicles']:2d} "
                f"unassigned {row['unassigned']} check {'ok' if row['check_ok'] else 'FAIL'}"
                f"{extra} {' '.join(row['violations'])}")
    wall = time.perf_counter() - t0
    gaps = [r["gap_pct"] for r in rows]
    vgaps = [r["vroom_gap_pct"] for r in rows if "vroom_gap_pct" in r]
    vs = [r["vroom_s"] for r in rows if "vroom_s" in r]
    avg = sum(gaps) / len(gaps) if gaps else None
    vavg = sum(vgaps) / len(vgaps) if len(vgaps) == len(rows) and rows else None
    return bool(rows) and all(r["check_ok"] for r in rows), {
        "solomon_instances": len(rows),
        "solomon_seconds_limit": seconds,
        "solomon_avg_gap_pct": round(avg, 4) if avg is not None else None,
        "solomon_worst_gap_pct": round(max(gaps), 4) if gaps else None,
        "solomon_s_per_instance": round(sum(r["s"] for r in rows) / len(rows), 3) if rows else None,
        "solomon_unassigned": sum(r["unassigned"] for r in rows),
        "vroom_avg_gap_pct": round(vavg, 4) if vavg is not None else None,
        "vroom_s_per_instance": round(sum(vs) / len(vs), 3) if vs else None,
        "vroom_unassigned": sum(r.get("vroom_unassigned", 0) for r in rows) if vgaps else None,
        "vroom_check_ok": all(r.get("vroom_check_ok", False) for r in rows) if vgaps else None,
        "gap_vs_vroom_ratio": round(avg / vavg, 4) if avg is not None and vavg else None,
        "solomon_wall_s": round(wall, 2),
        "per_instance": {r["instance"]: round(r["gap_pct"], 3) for r in rows},
    }


if __name__ == "__main__":
    main()
