"""The power-monitoring core: each rule at its edges, runs merged into one finding, keys that
do not change when the same data are checked again, the job decision, and refused input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.alarms import (
    DEFAULT_THRESHOLDS,
    INSPECTION,
    NOT_RECENT,
    TRANSFORMER_STAFF_ONLY,
    AlarmThresholds,
    Check,
    MonitoredEnterprise,
    MonitoredTransformer,
    MonitoringInput,
    Rule,
    Subject,
    job_plan,
    scan,
)
from alliance.errors import AllianceError, InvalidAlarmInputError
from settlement.metering import ACTUAL, ESTIMATED, MISSING, SUBSTITUTED, MeterDay

DAY = date(2026, 11, 17)
ZONE = "Asia/Shanghai"
START = datetime(2026, 11, 16, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai
Q = timedelta(minutes=15)
PF1 = AlarmThresholds(power_factor=Decimal(1))  # kW = kVA: limits in round watts


def wobble(base: int, n: int = 96) -> np.ndarray:
    """A load that moves every interval (never stuck), around `base` watts."""
    return base + (np.arange(n) % 7) * 10


def meter(series: dict[str, np.ndarray], quality: dict[str, np.ndarray] | None = None,
          day: date = DAY) -> MeterDay:
    points = tuple(sorted(series))
    watts = np.array([series[p] for p in points], np.int64)
    flags = np.zeros(watts.shape, np.uint8)
    for row, point in enumerate(points):
        if quality and point in quality:
            flags[row] = quality[point]
    watts[flags == MISSING] = 0
    return MeterDay(day, ZONE, points, watts, flags)


def one_enterprise(values: np.ndarray, quality: np.ndarray | None = None,
                   contracted: int = 1000, judged_intervals: int | None = None,
                   **changes) -> MonitoringInput:
    day = meter({"A-1": values}, None if quality is None else {"A-1": quality})
    enterprise = MonitoredEnterprise("A", Decimal(contracted), ("A-1",), **changes)
    return MonitoringInput(day, (enterprise,), judged_intervals=judged_intervals)


def of(findings, check: Check):
    return [f for f in findings if f.check is check]


# --------------------------------------------------------------------------- thresholds


def test_default_thresholds_are_the_documented_ones():
    t = DEFAULT_THRESHOLDS
    assert (t.load_limit, t.min_overload_intervals, t.power_factor, t.min_gap_intervals,
            t.gap_includes_estimated, t.implausible_factor, t.min_stuck_intervals,
            t.urgent_within) == (Decimal(1), 1, Decimal("0.9"), 4, True, Decimal(3), 16,
                                 timedelta(hours=1))
    # 900 kW at a power factor of 0.9 is exactly 1000 kVA.
    assert t.watts_limit(Decimal(1000)) == 900_000
    assert t.kva(900_000) == Decimal("1000.0")


@pytest.mark.parametrize("changes", [
    {"power_factor": Decimal(0)}, {"power_factor": Decimal("1.01")}, {"power_factor": 0.9},
    {"load_limit": Decimal("-1")}, {"implausible_factor": Decimal(0)},
    {"min_overload_intervals": 0}, {"min_gap_intervals": 0}, {"min_stuck_intervals": 1},
    {"min_gap_intervals": True}, {"urgent_within": timedelta(minutes=-1)},
    {"gap_includes_estimated": "yes"}, {"load_limit": Decimal("NaN")},
])
def test_bad_thresholds_are_refused(changes):
    with pytest.raises(InvalidAlarmInputError):
        AlarmThresholds(**changes)


# --------------------------------------------------------------------------- load rate


def test_an_enterprise_exactly_at_its_limit_is_fine_and_one_watt_more_is_an_alarm():
    values = wobble(500_000)
    values[40] = 900_000  # 1000 kVA at the default power factor 0.9: at the limit
    assert of(scan(one_enterprise(values)), Check.OVER_LIMIT) == []
    values[40] = 900_001
    (found,) = of(scan(one_enterprise(values)), Check.OVER_LIMIT)
    assert (found.rule, found.subject, found.code, found.enterprise) == (
        Rule.LOAD_RATE, Subject.ENTERPRISE, "A", "A")
    assert (found.first, found.last, found.intervals) == (40, 40, 1)
    assert found.starts_at == START + 40 * Q and found.ends_at == START + 41 * Q
    assert found.figures["limit_kva"] == Decimal("1000.0")
    assert found.figures["peak_kva"] == Decimal("1000.0")  # 1000.001 kVA, to 0.1


def test_the_power_factor_and_the_load_limit_are_thresholds():
    values = wobble(500_000)
    values[40] = 950_000  # 950 kW
    assert of(scan(one_enterprise(values), PF1), Check.OVER_LIMIT) == []
    assert len(of(scan(one_enterprise(values)), Check.OVER_LIMIT)) == 1  # 1055.6 kVA
    lower = replace(PF1, load_limit=Decimal("0.9"))
    (found,) = of(scan(one_enterprise(values), lower), Check.OVER_LIMIT)
    assert found.figures["limit_kva"] == Decimal("900.0")


def test_contiguous_intervals_over_the_limit_are_one_alarm_and_short_runs_can_be_ignored():
    values = wobble(500_000)
    values[[10, 11, 12, 14]] = [1_100_000, 1_300_000, 1_200_000, 1_100_000]
    runs = of(scan(one_enterprise(values), PF1), Check.OVER_LIMIT)
    assert [(f.first, f.last) for f in runs] == [(10, 12), (14, 14)]
    assert runs[0].figures["peak_kva"] == Decimal("1300.0")
    assert runs[0].figures["peak_at"] == (START + 11 * Q).isoformat()
    longer = replace(PF1, min_overload_intervals=3)
    assert [(f.first, f.last) for f in of(scan(one_enterprise(values), longer),
                                          Check.OVER_LIMIT)] == [(10, 12)]


def test_capacity_bought_raises_the_limit_in_its_intervals_and_capacity_sold_lowers_it():
    values = wobble(500_000)
    values[[20, 21]] = 1_150_000
    values[30] = 900_000
    data = one_enterprise(values, traded_kva={20: Decimal(200), 21: Decimal(100),
                                              30: Decimal(-200)})
    runs = of(scan(data, PF1), Check.OVER_LIMIT)
    assert [(f.first, f.last) for f in runs] == [(21, 21), (30, 30)]
    assert runs[0].figures["limit_kva"] == Decimal("1100.0")
    assert runs[1].figures["limit_kva"] == Decimal("800.0")


def test_demand_sums_the_points_with_their_multipliers_and_missing_points_count_nothing():
    a1, a2 = wobble(300_000), wobble(300_000)
    a2[50:52] = 0
    day = meter({"A-1": a1, "A-2": a2}, {"A-2": np.where(np.isin(np.arange(96), [50, 51]),
                                                          MISSING, ACTUAL)})
    enterprise = MonitoredEnterprise("A", Decimal(1000), ("A-1", "A-2"))
    assert of(scan(MonitoringInput(day, (enterprise,)), PF1), Check.OVER_LIMIT) == []
    doubled = MonitoringInput(day, (enterprise,), multipliers={"A-1": Decimal(2)})
    assert of(scan(doubled, PF1), Check.OVER_LIMIT) == []  # 600 + 300 kW
    # 750 + 300 kW is over 1000 kVA, except where A-2 is missing (750 kW, a lower bound).
    more = MonitoringInput(day, (enterprise,), multipliers={"A-1": Decimal("2.5")})
    runs = of(scan(more, PF1), Check.OVER_LIMIT)
    assert [(f.first, f.last) for f in runs] == [(0, 49), (52, 95)]


def test_a_transformer_over_its_allowed_load_is_found_from_enterprises_within_theirs():
    day = meter({"A-1": wobble(700_050), "B-1": wobble(700_050), "C-1": wobble(700_050)})
    enterprises = (MonitoredEnterprise("A", Decimal(1000), ("A-1",), "S/T1"),
                   MonitoredEnterprise("B", Decimal(1000), ("B-1",), "S/T1"),
                   MonitoredEnterprise("C", Decimal(1000), ("C-1",), "S/T2"))
    transformers = (MonitoredTransformer("S/T1", Decimal(1400)),
                    MonitoredTransformer("S/T2", Decimal(1400)))
    findings = scan(MonitoringInput(day, enterprises, transformers), PF1)
    assert [(f.subject, f.code) for f in findings] == [(Subject.TRANSFORMER, "S/T1")]
    (found,) = findings
    assert found.enterprise is None and found.intervals == 96
    assert found.figures["limit_kva"] == Decimal("1400.0")
    assert found.figures["enterprises"] == 2
    assert found.figures["peak_kva"] == Decimal("1400.2")  # 2 × 700.11 kW


# --------------------------------------------------------------------------- gaps


def gapped(start: int, length: int, flag: int = MISSING, n: int = 96) -> np.ndarray:
    quality = np.full(n, ACTUAL, np.uint8)
    quality[start:start + length] = flag
    return quality


def test_a_gap_one_interval_shorter_than_the_threshold_is_no_alarm():
    assert of(scan(one_enterprise(wobble(1000), gapped(30, 3))), Check.GAP) == []
    (found,) = of(scan(one_enterprise(wobble(1000), gapped(30, 4))), Check.GAP)
    assert (found.rule, found.subject, found.code, found.enterprise) == (
        Rule.METERING_GAP, Subject.POINT, "A-1", "A")
    assert (found.first, found.last) == (30, 33)
    assert dict(found.figures) == {"intervals": 4, "missing": 4, "estimated": 0}


def test_estimated_values_are_part_of_a_gap_unless_told_otherwise_and_substituted_end_it():
    quality = gapped(10, 2)
    quality[12:14] = ESTIMATED
    quality[14] = SUBSTITUTED
    quality[15:19] = MISSING
    gaps = of(scan(one_enterprise(wobble(1000), quality)), Check.GAP)
    assert [(f.first, f.last, f.figures["estimated"]) for f in gaps] == [(10, 13, 2),
                                                                         (15, 18, 0)]
    strict = replace(DEFAULT_THRESHOLDS, gap_includes_estimated=False)
    assert [(f.first, f.last) for f in of(scan(one_enterprise(wobble(1000), quality), strict),
                                          Check.GAP)] == [(15, 18)]


def test_a_point_without_any_data_is_one_gap_over_the_whole_day():
    day = meter({"A-1": wobble(1000)})
    enterprise = MonitoredEnterprise("A", Decimal(1000), ("A-1", "A-2"))
    (found,) = scan(MonitoringInput(day, (enterprise,)))
    assert (found.check, found.code, found.first, found.last) == (Check.GAP, "A-2", 0, 95)


def test_on_a_day_not_over_only_ended_intervals_count_and_a_trailing_gap_waits():
    # Missing 20-24, and from 60 on (not arrived yet at the check).
    quality = np.where((np.arange(96) >= 60) | ((np.arange(96) >= 20) & (np.arange(96) < 25)),
                       MISSING, ACTUAL).astype(np.uint8)
    partial = one_enterprise(wobble(1000), quality, judged_intervals=64)
    assert [(f.first, f.last) for f in scan(partial)] == [(20, 24)]
    whole = scan(one_enterprise(wobble(1000), quality))
    assert [(f.first, f.last) for f in whole] == [(20, 24), (60, 95)]
    assert scan(partial)[0].key == whole[0].key
    assert scan(one_enterprise(wobble(1000), quality, judged_intervals=0)) == ()


def test_a_run_still_growing_keeps_its_key():
    values = wobble(500_000)
    values[40:] = 1_200_000 + (np.arange(56) % 3)
    early = scan(one_enterprise(values, judged_intervals=44), PF1)
    late = scan(one_enterprise(values), PF1)
    assert [f.key for f in early] == [f.key for f in late]
    assert (early[0].last, late[0].last) == (43, 95)


# --------------------------------------------------------------------------- abnormal


def test_a_negative_reading_is_abnormal_and_left_out_of_the_demand():
    values = wobble(1_000_000)  # over 1000 kVA at pf 0.9 the whole day
    values[5:7] = [-2_500, -1_000]
    findings = scan(one_enterprise(values))
    (negative,) = of(findings, Check.NEGATIVE)
    assert (negative.rule, negative.first, negative.last) == (Rule.ABNORMAL_READING, 5, 6)
    assert negative.figures["lowest_kw"] == Decimal("-2.500")
    assert [(f.first, f.last) for f in of(findings, Check.OVER_LIMIT)] == [(0, 4), (7, 95)]


def test_only_metered_values_are_judged_abnormal():
    values = wobble(100_000)
    values[5] = -1_000
    values[30:50] = 200_000  # flat for 20 intervals, but estimated by the sender
    quality = np.full(96, ACTUAL, np.uint8)
    quality[5] = ESTIMATED
    quality[30:50] = ESTIMATED
    relaxed = replace(DEFAULT_THRESHOLDS, gap_includes_estimated=False)
    assert scan(one_enterprise(values, quality), relaxed) == ()


def test_a_value_above_three_times_the_contract_is_implausible_and_not_a_load_alarm():
    values = wobble(100_000)
    values[70] = 3_000_000  # exactly 3 × 1000 kVA at pf 1: possible, though over the limit
    assert [f.check for f in scan(one_enterprise(values), PF1)] == [Check.OVER_LIMIT]
    values[70] = 3_000_001
    findings = scan(one_enterprise(values), PF1)
    assert [f.check for f in findings] == [Check.IMPLAUSIBLE]
    assert findings[0].figures["limit_kva"] == Decimal("3000.0")
    assert findings[0].figures["peak_kva"] == Decimal("3000.0")


def test_a_meter_stuck_for_four_hours_is_abnormal_and_fifteen_intervals_are_not():
    values = wobble(400_000)
    values[10:25] = 412_345  # 15 intervals
    assert of(scan(one_enterprise(values)), Check.STUCK) == []
    values[10:26] = 412_345  # 16 intervals
    (stuck,) = of(scan(one_enterprise(values)), Check.STUCK)
    assert (stuck.first, stuck.last, stuck.figures["value_kw"]) == (10, 25,
                                                                      Decimal("412.345"))
    assert stuck.figures["intervals"] == 16


def test_zero_for_hours_is_an_idle_site_not_a_stuck_meter():
    values = wobble(400_000)
    values[0:40] = 0
    assert scan(one_enterprise(values)) == ()


# --------------------------------------------------------------------------- keys, jobs


def test_keys_name_rule_check_subject_and_first_interval_and_are_stable():
    values = wobble(500_000)
    values[8:10] = 1_000_000
    data = one_enterprise(values)
    first, again = scan(data), scan(data)
    assert first == again
    assert [f.key for f in first] == ["load_rate:over_limit:enterprise:A:2026-11-16T18:00Z"]


def test_the_order_of_enterprises_and_transformers_does_not_change_the_result():
    day = meter({"A-1": wobble(950_000), "B-1": wobble(200_000)},
                {"B-1": gapped(3, 10)})
    a = MonitoredEnterprise("A", Decimal(1000), ("A-1",), "T")
    b = MonitoredEnterprise("B", Decimal(500), ("B-1",), "T")
    t = (MonitoredTransformer("T", Decimal(1000)),)
    assert scan(MonitoringInput(day, (a, b), t)) == scan(MonitoringInput(day, (b, a), t))


def finding_ending(check: Check, subject: Subject = Subject.POINT, end: datetime = START):
    from alliance.alarms import Finding

    return Finding(check, subject, "X", None if subject is Subject.TRANSFORMER else "A", 0,
                   0, end - Q, end, {})


def test_load_and_abnormal_alarms_are_urgent_while_recent_gaps_never_transformers_no_job():
    recent = START + timedelta(hours=1)
    for check in (Check.OVER_LIMIT, Check.NEGATIVE, Check.IMPLAUSIBLE, Check.STUCK):
        plan = job_plan(finding_ending(check), recent)
        assert (plan.opens_job, plan.urgent) == (True, True)
        late = job_plan(finding_ending(check), recent + timedelta(seconds=1))
        assert (late.opens_job, late.urgent, late.reason) == (True, False, NOT_RECENT)
    gap = job_plan(finding_ending(Check.GAP), START)
    assert (gap.opens_job, gap.urgent, gap.reason) == (True, False, INSPECTION)
    transformer = job_plan(finding_ending(Check.OVER_LIMIT, Subject.TRANSFORMER), START)
    assert (transformer.opens_job, transformer.reason) == (False, TRANSFORMER_STAFF_ONLY)
    with pytest.raises(InvalidAlarmInputError):
        job_plan(finding_ending(Check.GAP), datetime(2026, 11, 17, 8, 0))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("build", [
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",), "T9"),)),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",)),
                                  MonitoredEnterprise("B", Decimal(1), ("A-1",)))),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",)),
                                  MonitoredEnterprise("A", Decimal(1), ("A-2",)))),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",)),),
                              multipliers={"Z-9": Decimal(2)}),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",)),),
                              multipliers={"A-1": Decimal(0)}),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",)),),
                              judged_intervals=97),
    lambda d: MonitoringInput(d, (MonitoredEnterprise("A", Decimal(1), ("A-1",),
                                                      traded_kva={96: Decimal(1)}),)),
    lambda d: MonitoringInput(d, (), (MonitoredTransformer("T", Decimal(1)),
                                      MonitoredTransformer("T", Decimal(2)))),
    lambda d: MonitoringInput("not a meter day", ()),
    lambda d: MonitoredEnterprise("A", Decimal(0), ("A-1",)),
    lambda d: MonitoredEnterprise("A", 1000.0, ("A-1",)),
    lambda d: MonitoredEnterprise("", Decimal(1), ("A-1",)),
    lambda d: MonitoredEnterprise("A", Decimal(1), ("A-1",), traded_kva={-1: Decimal(1)}),
    lambda d: MonitoredTransformer("T", Decimal(-5)),
    lambda d: scan(MonitoringInput(d, ()), thresholds="defaults"),
])
def test_malformed_input_is_refused_with_the_alliance_error(build):
    with pytest.raises(InvalidAlarmInputError) as caught:
        build(meter({"A-1": wobble(1000)}))
    assert isinstance(caught.value, AllianceError) and isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------- properties

FLAGS = st.sampled_from([ACTUAL, ACTUAL, ACTUAL, ESTIMATED, SUBSTITUTED, MISSING])


@st.composite
def days(draw):
    points = {}
    qualities = {}
    for code in ("A-1", "A-2", "B-1"):
        points[code] = np.array(draw(st.lists(
            st.sampled_from([-500, 0, 200_000, 200_000, 600_000, 900_000, 3_500_000]),
            min_size=96, max_size=96)), np.int64)
        qualities[code] = np.array(draw(st.lists(FLAGS, min_size=96, max_size=96)), np.uint8)
    judged = draw(st.one_of(st.none(), st.integers(0, 96)))
    return meter(points, qualities), judged


SMALL = AlarmThresholds(power_factor=Decimal(1), min_gap_intervals=2, min_stuck_intervals=3)


@settings(max_examples=60, deadline=None)
@given(days())
def test_every_run_meets_its_condition_is_maximal_and_the_order_of_input_does_not_matter(case):
    day, judged = case
    a = MonitoredEnterprise("A", Decimal(1000), ("A-1", "A-2"), "T")
    b = MonitoredEnterprise("B", Decimal(1000), ("B-1",), "T")
    t = (MonitoredTransformer("T", Decimal(1500)),)
    findings = scan(MonitoringInput(day, (a, b), t, judged_intervals=judged), SMALL)
    assert findings == scan(MonitoringInput(day, (b, a), t, judged_intervals=judged), SMALL)
    assert len({f.key for f in findings}) == len(findings)
    limit = 96 if judged is None else judged
    for f in findings:
        assert 0 <= f.first <= f.last < limit
        assert f.starts_at == START + f.first * Q and f.ends_at == START + (f.last + 1) * Q
        if f.check is Check.GAP:
            row = day.row(f.code)
            flags = day.quality[row]
            inside = np.isin(flags[f.first:f.last + 1], (MISSING, ESTIMATED))
            assert inside.all() and f.intervals >= 2
            for edge in (f.first - 1, f.last + 1):
                if 0 <= edge < limit:
                    assert flags[edge] in (ACTUAL, SUBSTITUTED)
        if f.check is Check.NEGATIVE:
            row = day.row(f.code)
            assert (day.watts[row, f.first:f.last + 1] < 0).all()
            assert (day.quality[row, f.first:f.last + 1] == ACTUAL).all()
