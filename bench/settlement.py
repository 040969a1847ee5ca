"""Benchmark of the settlement core (`settlement`) on a generated park.

Run from the repository root:
`python bench/settlement.py [--quick] [--points N] [--days D] [--seed S]`.
Progress goes to stderr; the last stdout line is one JSON object (see docs BENCHMARKS.md).

The park: ~4 metering points per enterprise (1–8), daily industrial load shapes, trades for
about a fifth of the enterprises (sellers, and buyers that mostly use what they bought),
three weeks of stored history for like days, two marked outages with their exemptions, and
readings with injected defects (short and long gaps, duplicates, conflicting duplicates,
negative values, spikes, rollovers, off-grid and outside-day times, unknown points).

Peak memory is reported after the fast day (`rss_mb`) and at the end, with the reference's
dicts and the month's history (`rss_with_ref_mb`).

The day's CSV is also imported through the platform into a fresh SQLite database
(`import_s`: parsing, validation, one stored version per point-day; readings that fall
on a neighbouring day are stored for that day).
Timed, for one day, from a `ReadingBatch`: validation and estimation (`vee_s`), the
assessment (`assess_s`) and the money with the result file (`settle_s`); parsing the day's
CSV (rendered in memory) is timed on its own (`parse_s`). Then a month of days
(`month_total_s`, the same steps per day, history rolling forward) and its roll-up.

Checks, all in the same run (`ok` needs every one):
* the row-by-row reference (`bench/settlement_reference.py`) gives byte-identical result
  files on the same input, and the same problems, notes and values from validation and
  estimation (its time is `ref_total_s`, the ratio `speedup_vs_ref`);
* every run's money sums to zero (`residual_fen` is the sum of every run's |residual|);
* the same inputs settled again in a fresh process give the same result hash;
* a correction re-run's differences added to the first run give the new totals, and the
  month's roll-up is zero-sum; a final run is refused while intervals are missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import settlement_reference as reference  # noqa: E402

from settlement.batch import ReadingBatch  # noqa: E402
from settlement.csv_format import read_batch  # noqa: E402
from settlement.day import (  # noqa: E402
    Account,
    DayInputs,
    assess_day,
    differences,
    roll_up,
    settle_assessed,
)
from settlement.deviation import Exemption  # noqa: E402
from settlement.errors import IncompleteMeteringError  # noqa: E402
from settlement.estimation import Outage, estimate_day, substitute  # noqa: E402
from settlement.metering import (  # noqa: E402
    MISSING,
    QUALITY_ORDER,
    DayGrid,
    MeterDay,
    MeteringRules,
    Quality,
    Reading,
    kw_of,
    kw_text,
    validate_day,
)
from settlement.presets import SICHUAN_2018  # noqa: E402
from settlement.run import Trade, totals  # noqa: E402

D = Decimal
ZONE = "Asia/Shanghai"
FIRST_DAY = date(2026, 11, 2)  # a Monday
HISTORY_DAYS = 21
PERIOD_MINUTES = 60
RULES = MeteringRules()
RULE = SICHUAN_2018


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- the park

def daily_shape(count: int = 96) -> np.ndarray:
    """Industrial load: low at night, a morning ramp, a midday dip and an afternoon peak."""
    h = (np.arange(count) + 0.5) * 24.0 / count
    shape = 0.55 + 0.35 * np.exp(-((h - 10.5) / 3.0) ** 2) + \
        0.4 * np.exp(-((h - 15.5) / 2.5) ** 2)
    return shape / shape.max()


@dataclass
class Park:
    points: tuple[str, ...]  # sorted
    owner: np.ndarray  # account index of each point
    base_w: np.ndarray  # each point's peak demand in W
    accounts: tuple[Account, ...]  # by code, same order as the owner indexes
    contracted_w: np.ndarray


def make_park(points: int, seed: int) -> Park:
    rng = np.random.default_rng(seed)
    enterprises = max(1, points // 4)
    counts = rng.integers(1, 8, enterprises)  # 1–7, mean 4; then nudged to the total
    while counts.sum() != points:
        i = int(rng.integers(enterprises))
        if counts.sum() < points and counts[i] < 8:
            counts[i] += 1
        elif counts.sum() > points and counts[i] > 1:
            counts[i] -= 1
    owner = np.repeat(np.arange(enterprises), counts)
    codes = [f"E{e:05d}" for e in range(enterprises)]
    names = [f"MP-{codes[e][1:]}-{k}" for e, n in enumerate(counts.tolist())
             for k in range(1, n + 1)]
    base_w = np.exp(rng.normal(np.log(150_000), 0.8, points)).astype(np.int64) + 5_000
    peak_w = np.bincount(owner, weights=base_w, minlength=enterprises)
    # Most enterprises contract well above their peak; a few run close to or over it.
    factor = np.where(rng.random(enterprises) < 0.05, rng.uniform(0.9, 1.08, enterprises),
                      rng.uniform(1.1, 1.6, enterprises))
    contracted_w = (np.ceil(peak_w * factor / 10_000) * 10_000).astype(np.int64)
    accounts = tuple(
        Account(codes[e], kw_of(int(contracted_w[e])),
                tuple(names[i] for i in np.flatnonzero(owner == e).tolist()))
        for e in range(enterprises))
    order = np.argsort(np.array(names))
    # Points sorted by name; account order is by code already.
    return Park(tuple(np.array(names)[order].tolist()), owner[order], base_w[order],
                accounts, contracted_w)


@dataclass
class DayData:
    day: date
    batch: ReadingBatch
    trades: tuple[Trade, ...]
    prices: dict[int, Decimal]
    outages: tuple[Outage, ...]
    exemptions: dict[str, tuple[Exemption, ...]]


def make_trades(park: Park, rng: np.random.Generator,
                level: float) -> tuple[list[Trade], dict, np.ndarray]:
    """Trades in the working hours and the load multiplier they imply per (account, hour)."""
    n = len(park.accounts)
    hour_peak = daily_shape().reshape(24, 4).max(axis=1) * level
    multiplier = np.ones((n, 24))
    role = rng.random(n)
    sellers = np.flatnonzero(role < 0.1)
    buyers = np.flatnonzero((role >= 0.1) & (role < 0.2))
    hours = range(8, 20)
    prices = {h: D(int(rng.integers(300, 800))) / 10_000 for h in range(24)}
    trades = []
    for h in hours:
        sold_total = D(0)
        for s in sellers.tolist():
            contracted = park.contracted_w[s] / 1000
            kva = D(int(contracted * rng.uniform(0.1, 0.3) * 10)) / 10
            if kva <= 0:
                continue
            sold_total += kva
            trades.append(Trade(park.accounts[s].code, f"S{s}-{h}", "sell", h, kva, prices[h]))
            # Most sellers draw less so as to stay within what they kept; some do not.
            if rng.random() < 0.85:
                multiplier[s, h] = (contracted - float(kva)) / contracted * rng.uniform(0.85, 1.0)
        weights = rng.uniform(0.5, 1.5, len(buyers))
        premium = D(int(rng.integers(0, 30))) / 10_000
        for b, w in zip(buyers.tolist(), (weights / weights.sum()).tolist(), strict=True):
            kva = D(int(float(sold_total) * w * 10)) / 10
            if kva <= 0:
                continue
            trades.append(Trade(park.accounts[b].code, f"B{b}-{h}", "buy", h, kva,
                                prices[h] + premium))
            contracted = park.contracted_w[b] / 1000
            # Buyers mostly use what they bought; a few stay far below it.
            use = rng.uniform(0.92, 1.06) if rng.random() < 0.9 else rng.uniform(0.3, 0.7)
            drawn = park.base_w[park.owner == b].sum() / 1000 * hour_peak[h]
            multiplier[b, h] = (contracted + float(kva)) * use / drawn
    return trades, prices, multiplier


def day_level(day: date) -> float:
    return 1.0 if day.weekday() < 5 else 0.6


def true_day(park: Park, day: date, rng: np.random.Generator,
             multiplier: np.ndarray | None = None) -> np.ndarray:
    shape = daily_shape()
    level = day_level(day)
    values = park.base_w[:, None] * shape[None, :] * level
    values *= rng.normal(1.0, 0.03, values.shape)
    if multiplier is not None:
        values *= np.repeat(multiplier[park.owner], 4, axis=1)
    return np.maximum(values, 0).astype(np.int64)


def make_history(park: Park, seed: int) -> list[MeterDay]:
    days = []
    for back in range(HISTORY_DAYS, 0, -1):
        day = FIRST_DAY - timedelta(days=back)
        rng = np.random.default_rng([seed, 1, back])
        watts = true_day(park, day, rng)
        quality = np.where(rng.random(watts.shape) < 0.005, MISSING, 0).astype(np.uint8)
        days.append(MeterDay(day, ZONE, park.points, np.where(quality == MISSING, 0, watts),
                             quality, {}, ()))
    return days


def make_day(park: Park, number: int, seed: int) -> DayData:
    """One day's readings with defects, trades, prices, outages and exemptions."""
    day = FIRST_DAY + timedelta(days=number)
    rng = np.random.default_rng([seed, 2, number])
    trades, prices, multiplier = make_trades(park, rng, day_level(day))
    watts = true_day(park, day, rng, multiplier)
    p_count, n = watts.shape
    keep = np.ones(watts.shape, bool)
    for width, share in ((lambda: int(rng.integers(1, 5)), 0.005),
                         (lambda: int(rng.integers(5, 25)), 0.003)):
        for p in rng.choice(p_count, max(1, int(p_count * share)), replace=False).tolist():
            w = width()
            start = int(rng.integers(0, n - w))
            keep[p, start:start + w] = False
    keep[rng.choice(p_count, max(1, p_count // 2000), replace=False)] = False  # dead feeds
    # Two marked outages: their readings are gone and their accounts are exempted.
    grid = DayGrid(day, ZoneInfo(ZONE))
    outages, exemptions = [], {}
    for k, (first, last) in enumerate(((32, 40), (56, 60))):
        p = int(rng.integers(p_count))
        keep[p, first:last] = False
        outages.append(Outage(grid.interval_start(first), grid.interval_start(last),
                              park.points[p], f"feeder work {k + 1}"))
        code = park.accounts[int(park.owner[p])].code
        exemptions.setdefault(code, ())
        periods = sorted({i // 4 for i in range(first, last)})
        exemptions[code] += tuple(Exemption(h, "outage", f"work order {number}-{k}")
                                  for h in periods
                                  if h not in {e.period for e in exemptions[code]})
    rows, cols = np.nonzero(keep)
    values = watts[rows, cols]
    starts = grid.start_epoch + cols.astype(np.int64) * 900
    point_index = rows.astype(np.int64)
    extra_points: list[str] = []

    def pick(count: int) -> np.ndarray:
        return rng.choice(len(values), count, replace=False)

    defects = max(1, p_count // 100)
    values[pick(defects // 2)] *= -1  # negative
    values[pick(max(1, defects // 10))] = 200_000_000  # rollover: over the maximum
    values[pick(max(1, defects // 10))] = 60_000_000  # over the absolute spike limit
    values[pick(defects)] += 15_000_000  # step spikes (or jumps next to another defect)
    starts[pick(max(1, defects // 5))] += 7 * 60  # off the grid
    duplicates = pick(defects * 2)
    conflicting = duplicates[: max(1, defects // 5)]
    dup_values = values[duplicates].copy()
    dup_values[: len(conflicting)] += 1_000
    point_index = np.concatenate([point_index, point_index[duplicates]])
    starts = np.concatenate([starts, starts[duplicates]])
    values = np.concatenate([values, dup_values])
    outside = pick(max(1, defects // 5))
    point_index = np.concatenate([point_index, point_index[outside]])
    starts = np.concatenate([starts, starts[outside] + 86_400])
    values = np.concatenate([values, values[outside]])
    for k in range(max(1, defects // 10)):
        extra_points.append(f"MP-UNKNOWN-{k}")
    unknown = np.arange(len(extra_points)) + p_count
    point_index = np.concatenate([point_index, unknown])
    starts = np.concatenate([starts, grid.start_epoch + 900 * rng.integers(0, n, len(unknown))])
    values = np.concatenate([values, rng.integers(1_000, 100_000, len(unknown))])
    order = rng.permutation(len(values))  # files are not sorted
    batch = ReadingBatch(park.points + tuple(extra_points),
                         point_index[order].astype(np.int32), starts[order], values[order],
                         np.zeros(len(values), np.uint8),
                         np.arange(2, len(values) + 2, dtype=np.int32))
    return DayData(day, batch, tuple(trades), prices, tuple(outages), exemptions)


def render_csv(batch: ReadingBatch) -> bytes:
    zone = ZoneInfo(ZONE)
    texts = {s: datetime.fromtimestamp(s, UTC).astimezone(zone).isoformat()
             for s in set(batch.start.tolist())}
    lines = ["point,start,kw"]
    lines += [f"{batch.points[p]},{texts[s]},{kw_text(w)}"
              for p, s, w in zip(batch.point_index.tolist(), batch.start.tolist(),
                                 batch.watts.tolist(), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def chunked(data: bytes, size: int = 1 << 20):
    return (data[i:i + size] for i in range(0, len(data), size))


# ----------------------------------------------------------------------------- one day

def inputs_for(park: Park, data: DayData, meter: MeterDay) -> DayInputs:
    return DayInputs("BENCH", data.day, ZONE, PERIOD_MINUTES, park.accounts, meter,
                     data.trades, data.prices, RULE, data.exemptions)


def run_day(park: Park, data: DayData, batch: ReadingBatch, history: list[MeterDay]):
    """Validate, estimate, assess and settle; (meter, assessment, result, timings)."""
    t0 = time.perf_counter()
    validated = validate_day(batch, points=park.points, day=data.day, zone=ZONE, rules=RULES)
    meter = estimate_day(validated, history=history, outages=data.outages, rules=RULES)
    t1 = time.perf_counter()
    assessment = assess_day(inputs_for(park, data, meter))
    t2 = time.perf_counter()
    result = settle_assessed(assessment)
    t3 = time.perf_counter()
    return meter, assessment, result, (t1 - t0, t2 - t1, t3 - t2)


def child(args) -> int:
    """The re-run in a fresh process: the same inputs, the result hash on stdout."""
    park = make_park(args.points, args.seed)
    data = make_day(park, 0, args.seed)
    batch = read_batch(chunked(render_csv(data.batch)))
    _, _, result, _ = run_day(park, data, batch, make_history(park, args.seed))
    print(hashlib.sha256(result.canonical_bytes()).hexdigest())
    return 0


def compare_vee(meter: MeterDay, ref_day: reference.RefDay) -> list[str]:
    """Differences between the fast core's and the reference's validated, estimated day."""
    found = []
    if list(meter.problems) != ref_day.problems:
        found.append("validation problems differ")
    notes = {(meter.points[r], i): text for (r, i), text in meter.notes.items()}
    if notes != ref_day.notes:
        found.append("estimation notes differ")
    rows, cols = np.nonzero(meter.quality != 0)
    fast_flags = {(meter.points[r], c): QUALITY_ORDER[meter.quality[r, c]]
                  for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    ref_flags = {k: q for k, q in ref_day.quality.items() if q is not Quality.ACTUAL}
    if fast_flags != ref_flags:
        found.append("quality flags differ")
    return found


def platform_import(park: Park, csv_bytes: bytes) -> tuple[float, int]:
    """Import the day's CSV through the platform into a fresh SQLite database holding the
    park's enterprises and points: (seconds, point-days stored). Parsing included."""
    import tempfile

    from parkgrid import migrate
    from parkgrid.config import EMBEDDED, Settings
    from parkgrid.models import Enterprise, Feeder, MeteringPoint, Substation, Transformer
    from parkgrid.models import Park as ParkRow
    from parkgrid.services.metering import import_readings
    from parkgrid.wiring import Platform

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(mode=EMBEDDED, data_dir=Path(tmp),
                            secret_key="bench").with_defaults()
        migrate.upgrade(settings.database_url)
        platform = Platform(settings)
        with platform.unit_of_work() as session:
            row = ParkRow(code="BENCH", name="bench", timezone=ZONE)
            feeder = Feeder(code="F1", name="F1", thermal_limit_kva=D(10**9), transformer=(
                Transformer(code="T1", name="T1", rated_kva=D(10**9), max_load_rate=D("0.8"),
                            substation=Substation(park=row, code="S1", name="S1",
                                                  voltage_kv=D(110)))))
            for account in park.accounts:
                enterprise = Enterprise(park=row, feeder=feeder, code=account.code,
                                        name=account.code,
                                        contracted_kva=account.contracted_kva.quantize(D("0.1")))
                session.add(enterprise)
                session.add_all(MeteringPoint(enterprise=enterprise, code=code, name=code)
                                for code in account.points)
            session.flush()
            park_id = row.id
        t0 = time.perf_counter()
        record = import_readings(platform, park_id, chunked(csv_bytes), filename="day.csv")
        seconds = time.perf_counter() - t0
        platform.engine.dispose()
        return seconds, record.point_days


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller size, all checks")
    parser.add_argument("--points", type=int, help="metering points (10,000; quick 1,000)")
    parser.add_argument("--days", type=int, help="days in the month run (30; quick 30)")
    parser.add_argument("--seed", type=int, default=20261102)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.points = args.points or (1_000 if args.quick else 10_000)
    args.days = args.days or 30
    if args.child:
        return child(args)

    log(f"generating a park of {args.points} points")
    park = make_park(args.points, args.seed)
    history = make_history(park, args.seed)
    data = make_day(park, 0, args.seed)
    csv_bytes = render_csv(data.batch)
    log(f"day {data.day}: {len(data.batch)} readings, {len(csv_bytes) / 1e6:.1f} MB of CSV, "
        f"{len(park.accounts)} accounts, {len(data.trades)} trades")

    t0 = time.perf_counter()
    batch = read_batch(chunked(csv_bytes))
    parse_s = time.perf_counter() - t0
    log("importing the day through the platform (SQLite)")
    import_s, import_point_days = platform_import(park, csv_bytes)
    log(f"import {import_s:.2f} s, {import_point_days} point-days stored")
    del csv_bytes
    meter, assessment, result, (vee_s, assess_s, settle_s) = run_day(park, data, batch,
                                                                      history)
    total_s = vee_s + assess_s + settle_s
    core_rss_mb = rss_mb()  # generation, parsing and the fast day; the reference comes later
    result_bytes = result.canonical_bytes()
    sha = hashlib.sha256(result_bytes).hexdigest()
    residuals = [abs(result.residual_fen)]
    log(f"parse {parse_s:.2f} s; vee {vee_s:.2f} s, assess {assess_s:.2f} s, "
        f"settle {settle_s:.2f} s, total {total_s:.2f} s; {len(result.lines)} lines; "
        f"{len(meter.problems)} problems, {int((meter.quality == MISSING).sum())} intervals "
        "still missing")

    log("re-running in a fresh process")
    rerun = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                            "--points", str(args.points), "--seed", str(args.seed)],
                           capture_output=True, text=True, cwd=ROOT, check=True)
    rerun_identical = rerun.stdout.strip().splitlines()[-1] == sha

    log("running the row-by-row reference")
    t0 = time.perf_counter()
    ref_bytes, ref_day = reference.run(
        reference.rows_of(batch), points=park.points, day=data.day, zone=ZONE,
        history=history, outages=data.outages, rules=RULES, park="BENCH",
        period_minutes=PERIOD_MINUTES, accounts=park.accounts, trades=data.trades,
        prices=data.prices, rule=RULE, exemptions=data.exemptions)
    ref_total_s = time.perf_counter() - t0
    ref_identical = ref_bytes == result_bytes
    vee_differences = compare_vee(meter, ref_day)
    del ref_day
    log(f"reference {ref_total_s:.1f} s; identical result: {ref_identical}; "
        f"VEE differences: {vee_differences or 'none'}")

    # A final run is refused while intervals are missing; a correction re-run substitutes
    # some and its differences add up.
    missing = meter.missing()
    try:
        settle_assessed(assess_day(inputs_for(park, data, meter), final=True))
        final_refused = not missing
    except IncompleteMeteringError as exc:
        final_refused = bool(missing) and list(exc.missing) == missing
    grid = meter.grid
    fixes = [Reading(p, grid.interval_start(i), D(100)) for p, i in missing[:50]]
    corrected = substitute(meter, fixes, source="check meter") if fixes else meter
    second = settle_assessed(assess_day(inputs_for(park, data, corrected)))
    delta = differences(result.lines, second.lines)
    before, after, change = totals(result.lines), totals(second.lines), totals(delta)
    deltas_add_up = all(before.get(a, 0) + change.get(a, 0) == after.get(a, 0)
                        for a in set(before) | set(after) | set(change))
    residuals.append(abs(second.residual_fen))

    log(f"month of {args.days} days")
    month_total_s = 0.0
    window = list(history)
    month_lines = {}
    for number in range(args.days):
        day_data = data if number == 0 else make_day(park, number, args.seed)
        day_meter, _, day_result, timings = run_day(park, day_data, day_data.batch, window)
        month_total_s += sum(timings)
        residuals.append(abs(day_result.residual_fen))
        month_lines[day_data.day] = day_result.lines
        window = [*window[1:], day_meter]
        if number % 10 == 9:
            log(f"  {number + 1} days, {month_total_s:.1f} s")
    by_month: dict[tuple[int, int], dict] = {}
    for d, lines in month_lines.items():
        by_month.setdefault((d.year, d.month), {})[d] = lines
    t0 = time.perf_counter()
    statements = [roll_up(days) for days in by_month.values()]
    month_total_s += time.perf_counter() - t0
    residuals.extend(abs(sum(line.fen for line in lines)) for lines in statements)

    residual_fen = sum(residuals)
    ok = (ref_identical and not vee_differences and rerun_identical and residual_fen == 0
          and deltas_add_up and final_refused and import_point_days >= len(park.points))
    print(json.dumps({
        "bench": "settlement",
        "ok": ok,
        "points": args.points,
        "accounts": len(park.accounts),
        "readings": len(data.batch),
        "lines": len(result.lines),
        "problems": len(meter.problems),
        "parse_s": round(parse_s, 3),
        "import_s": round(import_s, 3),
        "import_point_days": import_point_days,
        "vee_s": round(vee_s, 3),
        "assess_s": round(assess_s, 3),
        "settle_s": round(settle_s, 3),
        "total_s": round(total_s, 3),
        "month_days": args.days,
        "month_total_s": round(month_total_s, 3),
        "rss_mb": round(core_rss_mb, 1),
        "rss_with_ref_mb": round(rss_mb(), 1),
        "residual_fen": residual_fen,
        "rerun_identical": rerun_identical,
        "ref_identical": ref_identical,
        "vee_identical": not vee_differences,
        "ref_total_s": round(ref_total_s, 3),
        "speedup_vs_ref": round(ref_total_s / total_s, 1),
        "deltas_add_up": deltas_add_up,
        "final_refused": final_refused,
        "result_sha256": sha,
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
