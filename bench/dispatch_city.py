"""Urgent-dispatch benchmark on the synthetic city: 30-minute arrival rate of the optimised
policy against the greedy nearest-idle-qualified baseline, on the same world in the same run.

Run from the repository root: `python bench/dispatch_city.py [--quick] [--seed N]`.
Progress goes to stderr; the last stdout line is one JSON object. `run_city(seed, quick)` is
the entry point `bench/dispatch.py` calls.

Figures: the district city of `alliance.city.make_city` defaults (20 providers x 10
electricians, 500 jobs of which 20% urgent, 10 hours) for `seed`; `--quick` a smaller district
(8 providers on a proportionally smaller area, 200 jobs). A seed sweep over the next seeds
(`sweep_*`, pooled hits / pooled reachable jobs) shows how much one day's 100 urgent jobs move
the rate. `ok` is true when both simulated days pass the log checker (`check_outcome`), a second
build and run of the same seed gives the same logs, and one 50 x 200 dispatch round passes
the dispatch checker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from alliance.city import CityOutcome, check_outcome, make_city, simulate  # noqa: E402
from alliance.urgent import (  # noqa: E402
    CandidateElectrician,
    UrgentDispatchInstance,
    UrgentJob,
    check_dispatch,
    dispatch,
)

DEFAULT_SEED = 20261123
QUICK_CITY = dict(providers=8, per_provider=10, jobs=200, enterprises=120, parks=3,
                  width_km=19.0, height_km=12.6)
SWEEP_SEEDS = {False: 10, True: 3}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _log_sha256(outcome: CityOutcome) -> str:
    h = hashlib.sha256()
    for e in outcome.log:
        h.update(f"{e.t:.6f}|{e.kind}|{e.job_id}|{e.electrician_id}|{e.detail}\n".encode())
    return h.hexdigest()


def _day(seed: int, quick: bool) -> tuple[object, CityOutcome, CityOutcome]:
    city = make_city(seed, **(QUICK_CITY if quick else {}))
    return city, simulate(city, "optimised"), simulate(city, "greedy")


def _round_50x200(seed: int) -> tuple[float, bool]:
    """One dispatch round of 50 urgent jobs over 200 electricians: wall seconds and checker."""
    rng = np.random.default_rng(seed)
    skills = ("high_voltage", "metering", "testing")

    def pos() -> tuple[float, float]:
        return (31.2 + rng.random() * 0.18, 120.55 + rng.random() * 0.31)

    jobs = tuple(UrgentJob(
        f"U{i:03d}", pos(), deadline=float(rng.uniform(20, 30)),
        skills=frozenset(["low_voltage"] + [s for s in skills if rng.random() < 0.2]),
        excluded=frozenset(f"E{int(k):03d}" for k in rng.integers(0, 200, 2)))
        for i in range(50))
    elecs = tuple(CandidateElectrician(
        f"E{k:03d}", pos(), free_at=float(rng.choice([0.0, rng.uniform(0, 40)])),
        skills=frozenset(["low_voltage"] + [s for s in skills if rng.random() < 0.3]),
        shift_end=600.0, preempts=None) for k in range(200))
    t0 = time.perf_counter()
    inst = UrgentDispatchInstance(0.0, jobs, elecs)
    result = dispatch(inst)
    elapsed = time.perf_counter() - t0
    return elapsed, not check_dispatch(inst, result)


def run_city(seed: int = DEFAULT_SEED, quick: bool = False) -> dict:
    t0 = time.perf_counter()
    city, opt, greedy = _day(seed, quick)
    city_s = time.perf_counter() - t0
    problems = check_outcome(city, opt) + check_outcome(city, greedy)
    for p in problems[:10]:
        log(f"check: {p}")
    _, opt2, greedy2 = _day(seed, quick)
    deterministic = (_log_sha256(opt) == _log_sha256(opt2)
                     and _log_sha256(greedy) == _log_sha256(greedy2))
    log(f"seed {seed}: optimised {opt.sla_hit_rate:.4f}, greedy {greedy.sla_hit_rate:.4f} "
        f"({city_s:.2f} s), deterministic={deterministic}, checks={len(problems)}")

    sweep = []
    for s in range(seed + 1, seed + 1 + SWEEP_SEEDS[quick]):
        c, o, g = _day(s, quick)
        bad = check_outcome(c, o) + check_outcome(c, g)
        problems += bad
        sweep.append((o.hits, o.reachable, g.hits, g.reachable))
        log(f"sweep seed {s}: optimised {o.sla_hit_rate:.4f}, greedy {g.sla_hit_rate:.4f}"
            f"{'' if not bad else f' ({len(bad)} check failures)'}")
    sw = np.array(sweep, dtype=float)
    round_s, round_ok = _round_50x200(seed)

    of, gf = opt.figures(), greedy.figures()
    figures = {
        "seed": seed, "quick": quick,
        "sla_hit_rate": of["sla_hit_rate"], "greedy_sla_hit_rate": gf["sla_hit_rate"],
        "sla_gain_points": round(100.0 * (opt.sla_hit_rate - greedy.sla_hit_rate), 3),
        "urgent_jobs": of["urgent_jobs"], "reachable_urgent_jobs": of["reachable_urgent_jobs"],
        "greedy_reachable_urgent_jobs": gf["reachable_urgent_jobs"],
    }
    for key in ("hits", "on_site", "escalated", "offers", "declines", "expiries", "no_shows",
                "mean_on_site_minutes", "planned_jobs", "planned_completed",
                "planned_displaced", "preemptions"):
        figures[key] = of[key]
        figures[f"greedy_{key}"] = gf[key]
    figures.update({
        "electricians": len(city.electricians),
        "sweep_seeds": len(sweep),
        "sweep_sla_hit_rate": round(float(sw[:, 0].sum() / sw[:, 1].sum()), 6),
        "sweep_greedy_sla_hit_rate": round(float(sw[:, 2].sum() / sw[:, 3].sum()), 6),
        "sla_target_met": bool(opt.sla_hit_rate >= 0.98),
        "gain_target_met": bool(100.0 * (opt.sla_hit_rate - greedy.sla_hit_rate) >= 5.0),
        "deterministic": deterministic,
        "check_violations": len(problems),
        "round_50x200_s": round(round_s, 4),
        "result_sha256": hashlib.sha256(
            (_log_sha256(opt) + _log_sha256(greedy)).encode()).hexdigest(),
        "city_s": round(city_s, 3),
        "total_s": round(time.perf_counter() - t0, 3),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "ok": bool(not problems and deterministic and round_ok),
    })
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    figures = run_city(args.seed, args.quick)
    print(json.dumps({"bench": "dispatch_city", "ok": figures.pop("ok"), **figures}))


if __name__ == "__main__":
    main()
