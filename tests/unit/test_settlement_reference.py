"""The fast settlement core against the row-by-row reference kept with the benchmark, on
random small parks: identical result bytes, identical validation and estimation, and the
properties every run must have (zero-sum, nothing charged inside the band, re-run deltas
that add up, no estimate across a marked outage)."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.batch import ReadingBatch
from settlement.day import Account, DayInputs, differences, settle_day
from settlement.deviation import Band, DeviationRule, Exemption
from settlement.errors import IncompleteMeteringError
from settlement.estimation import Outage, estimate_day, substitute
from settlement.metering import (
    ACTUAL,
    INTERVAL,
    MISSING,
    MeterDay,
    MeteringRules,
    Reading,
    validate_day,
)
from settlement.presets import FUJIAN_2021, SICHUAN_2018
from settlement.run import Trade, totals

# Appended, not prepended: bench/ holds a settlement.py that must not hide the package.
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
import settlement_reference as reference  # noqa: E402

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
DAY = date(2026, 7, 17)  # a Friday in a seasonal month
RULES = MeteringRules(max_kw=D(5000), spike_kw=D(3000), max_step_kw=D(800),
                      max_interpolation_gap=timedelta(minutes=45))
SEASONAL = DeviationRule("seasonal", 3, Band(D("0.02"), D("0.02")), price_factor=D("1.5"),
                         fixed_price=D("0.0123"), minimum_charge=D("0.05"),
                         seasonal=((7, Band(D("0.04"), D("0.035"))),))
RULE_SET = (SICHUAN_2018, FUJIAN_2021, SEASONAL)


def at(day: date, index: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=TZ) + index * INTERVAL


@dataclass
class Case:
    points: list[str]
    batch: ReadingBatch
    history: list[MeterDay]
    outages: list[Outage]
    accounts: tuple[Account, ...]
    trades: tuple[Trade, ...]
    prices: dict[int, D]
    rule: DeviationRule
    exemptions: dict[str, tuple[Exemption, ...]]
    minutes: int

    def settlement(self) -> dict:
        return {"park": "P", "period_minutes": self.minutes, "accounts": self.accounts,
                "trades": self.trades, "prices": self.prices, "rule": self.rule,
                "exemptions": self.exemptions}

    def fast(self, final: bool = False):
        validated = validate_day(self.batch, points=self.points, day=DAY, zone=ZONE,
                                 rules=RULES)
        meter = estimate_day(validated, history=self.history, outages=self.outages,
                             rules=RULES)
        return meter, self.inputs(meter), final

    def inputs(self, meter: MeterDay) -> DayInputs:
        return DayInputs("P", DAY, ZONE, self.minutes, self.accounts, meter, self.trades,
                         self.prices, self.rule, self.exemptions)


def kw(rnd: random.Random, level: int) -> D:
    return D(max(0, int(rnd.gauss(level, level / 6) * 1000))) / 1000


def make_case(seed: int) -> Case:
    rnd = random.Random(seed)
    points = [f"M{i}" for i in range(rnd.randint(1, 5))]
    levels = {p: rnd.choice([50, 400, 1500]) for p in points}
    rows = []
    for p in points:
        gap = rnd.random() < 0.5
        gap_start, gap_width = rnd.randrange(96), rnd.randint(1, 8)
        for i in range(96):
            if gap and gap_start <= i < gap_start + gap_width or rnd.random() < 0.03:
                continue
            quality = rnd.choices([0, 1, 2], [0.9, 0.05, 0.05])[0]
            rows.append((p, at(DAY, i), kw(rnd, levels[p]), quality))
    for _ in range(rnd.randint(0, 12)):  # defects
        p, i = rnd.choice(points), rnd.randrange(96)
        kind = rnd.choice(["dup", "conflict", "negative", "over", "spike", "step",
                           "off-grid", "outside", "unknown"])
        value = {"negative": D("-1.5"), "over": D(9000), "spike": D(4000),
                 "step": D(levels[p] + 2500)}.get(kind, kw(rnd, levels[p]))
        start = at(DAY, i)
        if kind == "off-grid":
            start += timedelta(minutes=rnd.choice([1, 7, 14]))
        elif kind == "outside":
            start = at(DAY, rnd.choice([-2, -1, 96, 97]))
        point = "X9" if kind == "unknown" else p
        same = [r for r in rows if r[0] == point and r[1] == start]
        if same and kind in ("dup", "conflict"):
            value = same[0][2] if kind == "dup" else same[0][2] + 1
        elif same and kind in ("negative", "over", "spike", "step"):
            rows.remove(same[0])  # a bad value in place of the good one
        rows.append((point, start, value, rnd.choice([0, 0, 1])))
    rnd.shuffle(rows)
    batch = ReadingBatch.from_readings(Reading(p, s, v) for p, s, v, _ in rows)
    batch = ReadingBatch(batch.points, batch.point_index, batch.start, batch.watts,
                         np.array([q for *_, q in rows], np.uint8),
                         np.arange(2, len(rows) + 2, dtype=np.int32))

    history = []
    for back in rnd.sample([1, 7, 14, 21, 28], rnd.randint(0, 4)):
        hist_points = sorted(rnd.sample(points + ["OLD"], rnd.randint(1, len(points) + 1)))
        watts = np.array([[int(kw(rnd, levels.get(p, 100)) * 1000) for _ in range(96)]
                          for p in hist_points], np.int64)
        quality = np.where(np.random.default_rng(seed + back).random(watts.shape) < 0.1,
                           MISSING, rnd.choice([ACTUAL, 1])).astype(np.uint8)
        history.append(MeterDay(DAY - timedelta(days=back), ZONE, hist_points,
                                np.where(quality == MISSING, 0, watts), quality, {}, ()))
    outages = []
    for _ in range(rnd.randint(0, 2)):
        back = rnd.choice([0, 0, 7, 14])
        first = rnd.randrange(96)
        outages.append(Outage(at(DAY - timedelta(days=back), first),
                              at(DAY - timedelta(days=back), first + rnd.randint(1, 12)),
                              rnd.choice([None, *points]), rnd.choice(["", "feeder trip"])))

    owners = {p: rnd.randrange(3) for p in points}
    accounts = []
    for a in range(3):
        mine = tuple(p for p in points if owners[p] == a)
        if a == 2 and rnd.random() < 0.3:
            mine += ("ABSENT",)
        if mine or rnd.random() < 0.5:
            contracted = D(int(sum(levels.get(p, 0) for p in mine) * rnd.uniform(0.8, 1.4)))
            accounts.append(Account(f"E{a}", contracted + D(rnd.randint(0, 9)) / 10, mine))
    minutes = rnd.choice([15, 60, 60, 120])
    periods = 1440 // minutes
    trades = []
    for n in range(rnd.randint(0, 6)):
        trades.append(Trade(rnd.choice(accounts).code, f"o{n % 3}", rnd.choice(["buy", "sell"]),
                            rnd.randrange(periods), D(rnd.randint(1, 4000)) / 10,
                            D(rnd.randint(100, 900)) / 10_000))
    prices = {p: D(rnd.randint(100, 900)) / 10_000
              for p in rnd.sample(range(periods), rnd.randint(0, periods))}
    exemptions = {}
    for account in rnd.sample(accounts, rnd.randint(0, len(accounts))):
        exemptions[account.code] = tuple(
            Exemption(p, rnd.choice(["outage", "force majeure"]), "doc")
            for p in rnd.sample(range(periods), rnd.randint(1, 3)))
    return Case(points, batch, history, outages, tuple(accounts), tuple(trades), prices,
                rnd.choice(RULE_SET), exemptions, minutes)


seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(seeds, st.booleans())
def test_the_fast_core_and_the_reference_give_identical_results(seed, final):
    case = make_case(seed)
    meter, inputs, _ = case.fast()
    ref_bytes = ref_day = fast_bytes = None
    try:
        fast_bytes = settle_day(inputs, final=final).canonical_bytes()
    except IncompleteMeteringError as refused:
        fast_missing = refused.missing
    try:
        ref_bytes, ref_day = reference.run(
            reference.rows_of(case.batch), points=case.points, day=DAY, zone=ZONE,
            history=case.history, outages=case.outages, rules=RULES, final=final,
            **case.settlement())
    except IncompleteMeteringError as refused:
        assert fast_bytes is None and refused.missing == fast_missing
    assert fast_bytes == ref_bytes
    if ref_day is None:
        ref_day = reference.estimate(
            reference.validate(reference.rows_of(case.batch), points=case.points, day=DAY,
                               zone=ZONE, rules=RULES),
            history=case.history, outages=case.outages, rules=RULES)
    # Validation and estimation agree value by value, with the same problems and notes.
    assert list(meter.problems) == ref_day.problems
    assert {(meter.points[r], i): t for (r, i), t in meter.notes.items()} == ref_day.notes
    for value in meter.intervals:
        key = (value.point, value.interval)
        assert (value.kw, value.quality) == (ref_day.values[key], ref_day.quality[key])


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_every_run_is_zero_sum_and_nothing_is_charged_inside_the_band(seed):
    case = make_case(seed)
    _, inputs, _ = case.fast()
    result = settle_day(inputs)
    assert result.residual_fen == 0
    band = case.rule.band_for(DAY.month)
    for item in result.assessments:
        a = item.assessment
        if a is None:
            continue
        inside = (a.allowed_kva * (1 - band.lower) <= a.metered_kva
                  <= a.allowed_kva * (1 + band.upper))
        if inside:
            assert a.excess_kva == 0 and a.charge_yuan == 0
        if a.charge_yuan:
            assert a.excess_kva > 0 and a.exempt_reason is None
    charged = {line.account for line in result.lines if line.kind == "deviation"}
    assert charged == {i.account for i in result.assessments
                       if i.assessment is not None and i.assessment.charge_yuan > 0}


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(0, 2**16))
def test_the_deltas_of_a_re_run_add_up_to_the_new_totals(seed, fix_seed):
    case = make_case(seed)
    meter, inputs, _ = case.fast()
    first = settle_day(inputs)
    rnd = random.Random(fix_seed)
    grid = meter.grid
    keys = rnd.sample([(p, i) for p in meter.points for i in range(96)], 5)
    corrected = substitute(meter, [Reading(p, grid.interval_start(i), D(rnd.randint(0, 3000)))
                                   for p, i in keys], source="staff")
    second = settle_day(case.inputs(corrected))
    delta = differences(first.lines, second.lines)
    before, change, after = totals(first.lines), totals(delta), totals(second.lines)
    for account in set(before) | set(change) | set(after):
        assert before.get(account, 0) + change.get(account, 0) == after.get(account, 0)
    assert second.residual_fen == 0 and sum(line.fen for line in delta) == 0


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_estimation_never_invents_data_across_a_marked_outage(seed):
    case = make_case(seed)
    validated = validate_day(case.batch, points=case.points, day=DAY, zone=ZONE, rules=RULES)
    # A like day with an outage on every point holds absurd values: none may leak.
    poisoned = DAY - timedelta(days=7)
    history = [h for h in case.history if h.day != poisoned]
    history.append(MeterDay(poisoned, ZONE, case.points,
                            np.full((len(case.points), 96), 4_999_000), np.zeros(
                                (len(case.points), 96), np.uint8), {}, ()))
    outages = [*case.outages, Outage(at(poisoned, 50), at(poisoned, 51))]
    estimated = estimate_day(validated, history=history, outages=outages, rules=RULES)
    grid = validated.grid
    for r, point in enumerate(case.points):
        blocked = [any(o.covers(point, grid.interval_start(i),
                                grid.interval_start(i) + INTERVAL) for o in outages)
                   for i in range(96)]
        for i in range(96):
            was, now = validated.quality[r, i], estimated.quality[r, i]
            if was == MISSING and blocked[i]:
                assert now == MISSING and estimated.watts[r, i] == 0
            if was != now:
                assert was == MISSING and estimated.watts[r, i] < 4_999_000
            note = estimated.notes.get((r, i), "")
            if was == MISSING and note.startswith("interpolated"):
                left, right = i, i
                while estimated.notes.get((r, left), "") == note:
                    left -= 1
                while estimated.notes.get((r, right), "") == note:
                    right += 1
                assert validated.quality[r, left] == ACTUAL
                assert validated.quality[r, right] == ACTUAL
                assert not any(blocked[k] and validated.quality[r, k] == MISSING
                               for k in range(left, right + 1))
