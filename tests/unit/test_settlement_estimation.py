"""Estimation of missing intervals: interpolation, like days, outages, and its properties."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.batch import ReadingBatch
from settlement.errors import MeteringInputError
from settlement.estimation import Outage, estimate_day, substitute
from settlement.metering import (
    INTERVAL,
    DayGrid,
    MeterDay,
    MeteringRules,
    Quality,
    Reading,
    validate_day,
)

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)  # a Friday


def at(day: date, index: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=ZONE) + index * INTERVAL


def metered(values: dict[int, str] | list[str | None], day: date = DAY, point: str = "M1",
            rules: MeteringRules | None = None):
    items = values.items() if isinstance(values, dict) else enumerate(values)
    readings = [Reading(point, at(day, i), Decimal(v)) for i, v in items if v is not None]
    return validate_day(readings, points={point}, day=day, zone=ZONE, rules=rules)


def flat(kw: str, holes=()) -> list[str | None]:
    return [None if i in holes else kw for i in range(96)]


def test_short_gaps_are_interpolated_exactly_on_the_straight_line():
    values = flat("10", holes={20, 21, 22, 50, 51})
    values[23] = "20"
    values[52] = "1"
    values[49] = "0"
    result = estimate_day(metered(values))
    got = {v.interval: (v.kw, v.quality) for v in result.intervals if v.interval in
           (20, 21, 22, 50, 51)}
    assert got == {20: (Decimal("12.500"), Quality.ESTIMATED),
                   21: (Decimal("15.000"), Quality.ESTIMATED),
                   22: (Decimal("17.500"), Quality.ESTIMATED),
                   50: (Decimal("0.333"), Quality.ESTIMATED),
                   51: (Decimal("0.667"), Quality.ESTIMATED)}
    assert result.intervals[20].explanation == (
        "interpolated between 04:45 (10.000 kW) and 05:45 (20.000 kW)")


def test_a_gap_longer_than_the_limit_or_at_the_day_edge_is_not_interpolated():
    values = flat("10", holes={0, *range(30, 35)})
    result = estimate_day(metered(values))  # no history: nothing to estimate from
    assert all(result.intervals[i].quality is Quality.MISSING for i in (0, *range(30, 35)))
    assert "no like-day data" in result.intervals[30].explanation
    wider = MeteringRules(max_interpolation_gap=timedelta(minutes=75))
    assert estimate_day(metered(values), rules=wider).intervals[30].kw == Decimal("10.000")


def test_long_gaps_come_from_the_mean_of_like_days_of_the_last_three_weeks():
    history = [metered(flat(kw), day=DAY - timedelta(days=n))
               for n, kw in ((7, "10"), (14, "20"), (21, "33"), (28, "1000"), (1, "500"))]
    values = flat("10", holes=set(range(40, 48)))
    result = estimate_day(metered(values), history=history)
    value = result.intervals[40]
    assert (value.kw, value.quality) == (Decimal("21.000"), Quality.ESTIMATED)
    assert value.explanation == ("like-day mean (same-weekday) of 3 day(s): "
                                 "2026-10-30, 2026-11-06, 2026-11-13")
    every_day = estimate_day(metered(values), history=history,
                             rules=MeteringRules(like_days="all"))
    assert every_day.intervals[40].kw == Decimal("140.750")  # (10 + 20 + 33 + 500) / 4


def test_like_days_skip_intervals_that_were_not_actual_on_that_day():
    history = [metered(flat("10", holes={40}), day=DAY - timedelta(days=7)),
               metered(flat("20"), day=DAY - timedelta(days=14))]
    result = estimate_day(metered(flat("5", holes=set(range(40, 48)))), history=history)
    assert result.intervals[40].kw == Decimal("20.000")
    assert result.intervals[41].kw == Decimal("15.000")


def test_history_days_with_an_outage_are_not_like_days():
    outage_day = DAY - timedelta(days=7)
    history = [metered(flat("900"), day=outage_day), metered(flat("20"), day=DAY - timedelta(14))]
    outage = Outage(at(outage_day, 10), at(outage_day, 12), point="M1", reason="feeder trip")
    result = estimate_day(metered(flat("5", holes=set(range(40, 48)))), history=history,
                          outages=[outage])
    assert result.intervals[40].kw == Decimal("20.000")


def test_an_outage_interval_stays_missing_and_no_interpolation_crosses_it():
    values = flat("10", holes={20, 21, 22})
    outage = Outage(at(DAY, 21), at(DAY, 22), reason="planned work")
    history = [metered(flat("30"), day=DAY - timedelta(days=7))]
    result = estimate_day(metered(values), history=history, outages=[outage])
    assert result.intervals[21].kw is None and result.intervals[21].quality is Quality.MISSING
    assert result.intervals[21].explanation == "outage (planned work): not estimated"
    # Neighbours of the outage cannot be on a line across it; they come from like days.
    assert [result.intervals[i].kw for i in (20, 22)] == [Decimal("30.000")] * 2
    assert all("like-day" in result.intervals[i].explanation for i in (20, 22))


def test_an_outage_of_another_point_blocks_nothing_and_actual_values_are_kept():
    values = flat("10", holes={20})
    result = estimate_day(metered(values), outages=[
        Outage(at(DAY, 0), at(DAY, 96), point="OTHER"),
    ])
    assert result.intervals[20].kw == Decimal("10.000")
    kept = estimate_day(metered(values), outages=[Outage(at(DAY, 0), at(DAY, 10))])
    assert kept.intervals[5].quality is Quality.ACTUAL


def test_a_rejected_conflicting_duplicate_is_estimated_not_merged():
    readings = [Reading("M1", at(DAY, i), Decimal("10")) for i in range(96)]
    readings.append(Reading("M1", at(DAY, 7), Decimal("99")))
    result = estimate_day(validate_day(readings, points={"M1"}, day=DAY, zone=ZONE))
    assert result.intervals[7].kw == Decimal("10.000")
    assert result.intervals[7].quality is Quality.ESTIMATED
    assert [p.rule for p in result.problems] == ["conflicting-duplicate"]


def test_inconsistent_history_is_refused():
    elsewhere = validate_day([], points={"M1"}, day=DAY - timedelta(7), zone="Asia/Tokyo")
    with pytest.raises(MeteringInputError, match="Asia/Tokyo"):
        estimate_day(metered(flat("1")), history=[elsewhere])
    twice = metered(flat("1"), day=DAY - timedelta(7))
    with pytest.raises(MeteringInputError, match="twice"):
        estimate_day(metered(flat("1")), history=[twice, twice])
    with pytest.raises(MeteringInputError, match="end after"):
        Outage(at(DAY, 3), at(DAY, 3))


def test_substitutes_replace_values_and_are_not_estimated_over():
    values = flat("10", holes=set(range(30, 40)))
    fixed = substitute(metered(values), [Reading("M1", at(DAY, 30), Decimal("12.5")),
                                         Reading("M1", at(DAY, 5), Decimal("11"))],
                       source="check meter CM-7")
    result = estimate_day(fixed)
    assert [(v.kw, v.quality) for v in (result.intervals[5], result.intervals[30])] == [
        (Decimal("11.000"), Quality.SUBSTITUTED), (Decimal("12.500"), Quality.SUBSTITUTED)]
    assert result.intervals[30].explanation == "substituted from check meter CM-7"
    # Interpolation anchors are actual values only: 31..39 is still a long gap.
    assert result.intervals[31].quality is Quality.MISSING


@pytest.mark.parametrize("reading", [
    Reading("X", at(DAY, 1), Decimal("1")),
    Reading("M1", at(DAY, 1) + timedelta(minutes=1), Decimal("1")),
    Reading("M1", at(DAY, 96), Decimal("1")),
    Reading("M1", at(DAY, 1), Decimal("-1")),
])
def test_a_substitute_that_does_not_fit_is_refused(reading):
    with pytest.raises(MeteringInputError):
        substitute(metered(flat("1")), [reading], source="staff")
    with pytest.raises(MeteringInputError, match="two substitutes"):
        substitute(metered(flat("1")), [Reading("M1", at(DAY, 2), Decimal("1"))] * 2,
                   source="staff")


def test_interpolated_values_round_half_even_on_the_value_itself():
    values = flat("10", holes={85})
    values[84], values[86] = "136.521", "144.120"
    result = estimate_day(metered(values))
    # The midpoint 140.3205 kW ties: half-even keeps the even 140.320, whatever the anchors.
    assert result.intervals[85].kw == Decimal("140.320")
    values[84] = "136.523"
    assert estimate_day(metered(values)).intervals[85].kw == Decimal("140.322")


def test_like_days_line_up_by_local_time_across_a_daylight_saving_change():
    zone = ZoneInfo("Europe/Berlin")
    short = date(2026, 3, 29)  # 23 hours: 02:00–03:00 does not exist
    before = short - timedelta(days=7)

    def day_of(d, holes=()):
        grid = DayGrid(d, zone)
        readings = [Reading("M1", grid.interval_start(i),
                            Decimal(grid.interval_start(i).hour * 10))
                    for i in range(grid.count) if i not in holes]
        return validate_day(readings, points=["M1"], day=d, zone=zone)

    result = estimate_day(day_of(short, holes=set(range(8, 20))), history=[day_of(before)])
    grid = DayGrid(short, zone)
    for i in range(8, 20):
        assert result.intervals[i].kw == grid.interval_start(i).hour * 10
        assert result.intervals[i].quality is Quality.ESTIMATED


def test_like_days_may_hold_other_points_and_substitutes_may_come_as_a_batch():
    history = [MeterDay(DAY - timedelta(days=7), "Asia/Shanghai", ("M0", "M1"),
                        np.full((2, 96), 42_000), np.zeros((2, 96), np.uint8))]
    result = estimate_day(metered(flat("1", holes=set(range(10, 20)))), history=history)
    assert result.intervals[10].kw == Decimal(42)
    fixes = ReadingBatch.from_readings([Reading("M1", at(DAY, 12), Decimal("7.5"))])
    fixed = substitute(result, fixes, source="staff")
    assert (fixed.intervals[12].kw, fixed.intervals[12].quality) == (
        Decimal("7.500"), Quality.SUBSTITUTED)
    with pytest.raises(MeteringInputError, match="name its source"):
        substitute(result, fixes, source=" ")


# --- properties ------------------------------------------------------------------------

kw_values = st.integers(0, 100_000).map(lambda n: Decimal(n).scaleb(-3))  # 0 .. 100 kW
day_values = st.lists(st.one_of(st.none(), kw_values), min_size=96, max_size=96)


def _as_list(values):
    return [None if v is None else str(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(day_values, st.integers(0, 95), st.integers(1, 24), st.lists(day_values, max_size=3))
def test_estimation_never_invents_data_across_a_marked_outage(values, first, length, past):
    outage = Outage(at(DAY, first), at(DAY, min(first + length, 96)))
    blackout = DAY - timedelta(days=7)
    history = [metered(_as_list(v), day=DAY - timedelta(days=7 * (n + 2)))
               for n, v in enumerate(past)]
    # A like day with an outage holds absurd values: none may leak into an estimate.
    history.append(metered(flat("9999"), day=blackout))
    outages = [outage, Outage(at(blackout, 0), at(blackout, 1))]
    before = metered(_as_list(values))
    after = estimate_day(before, history=history, outages=outages)
    series = after.intervals
    for i, value in enumerate(series):
        under_outage = first <= i < first + length
        if under_outage and before.intervals[i].quality is Quality.MISSING:
            assert value.quality is Quality.MISSING and value.kw is None
        if value.quality is Quality.ESTIMATED:
            assert value.kw <= 100
            assert before.intervals[i].quality is Quality.MISSING
        if value.explanation.startswith("interpolated"):
            # Walk to the anchors: only interpolated intervals in between, actual at both ends.
            left, right = i, i
            while series[left].explanation == value.explanation:
                left -= 1
            while series[right].explanation == value.explanation:
                right += 1
            assert series[left].quality is Quality.ACTUAL
            assert series[right].quality is Quality.ACTUAL


clean_values = st.lists(st.integers(100_000, 200_000).map(lambda n: Decimal(n).scaleb(-3)),
                        min_size=96, max_size=96)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["M1", "M2", "M3"]), clean_values, min_size=1))
def test_validation_is_idempotent_on_clean_data(days):
    readings = [Reading(p, at(DAY, i), kw) for p, vs in days.items() for i, kw in enumerate(vs)]
    once = validate_day(readings, points=days.keys(), day=DAY, zone=ZONE)
    assert once.problems == ()
    again = validate_day([Reading(v.point, v.start, v.kw) for v in once.intervals],
                         points=days.keys(), day=DAY, zone=ZONE)
    assert again == once
    assert estimate_day(once) == once


def _readings(draw_values, point):
    return [Reading(point, at(DAY, i), kw) for i, kw in enumerate(draw_values) if kw is not None]


EXTRA = {"duplicate": ("M1", 0), "off-grid": ("M1", 7), "unknown-point": ("X", 0)}


@settings(max_examples=40, deadline=None)
@given(day_values, day_values,
       st.lists(st.tuples(st.integers(-2, 97), st.sampled_from(sorted(EXTRA)), kw_values),
                max_size=20),
       st.randoms())
def test_output_is_independent_of_input_order(one, two, extra, rnd):
    readings = _readings(one, "M1") + _readings(two, "M2")
    # Extra readings: duplicates (maybe conflicting), off-grid and outside-day times (index
    # -2, -1, 96, 97), and an unknown point.
    readings += [Reading(EXTRA[kind][0], at(DAY, i) + timedelta(minutes=EXTRA[kind][1]), kw)
                 for i, kind, kw in extra]
    history = [metered(_as_list(two), day=DAY - timedelta(days=7), point="M1"),
               metered(_as_list(one), day=DAY - timedelta(days=14), point="M1")]
    rules = MeteringRules(max_step_kw=Decimal("40"))

    def run(rs, hist):
        day = validate_day(rs, points=["M2", "M1"], day=DAY, zone=ZONE, rules=rules)
        return estimate_day(day, history=hist, rules=rules)

    expected = run(readings, history)
    shuffled = list(readings)
    rnd.shuffle(shuffled)
    got = run(shuffled, list(reversed(history)))
    assert got == expected and repr(got) == repr(expected)
