"""Validation of 15-minute interval readings: one small example per rule, and the columnar
day it produces."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from settlement.batch import ReadingBatch
from settlement.errors import MeteringInputError, SettlementError
from settlement.metering import (
    INTERVAL,
    MISSING,
    QUALITY_ORDER,
    DayGrid,
    MeterDay,
    MeteringRules,
    Problem,
    Quality,
    Reading,
    validate_day,
)

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)
MIDNIGHT = datetime(2026, 11, 20, tzinfo=ZONE)


def at(index: int) -> datetime:
    return MIDNIGHT + index * INTERVAL


def full_day(point: str = "M1", kw: str = "100") -> list[Reading]:
    return [Reading(point, at(i), Decimal(kw)) for i in range(96)]


def validate(readings, points=("M1",), rules=None):
    return validate_day(readings, points=points, day=DAY, zone="Asia/Shanghai", rules=rules)


def rules_of(result):
    return [(p.point, p.interval, p.rule) for p in result.problems]


def test_a_shanghai_day_has_96_intervals_starting_at_local_midnight():
    grid = DayGrid(DAY, ZONE)
    assert grid.count == 96
    assert grid.interval_start(0) == MIDNIGHT and grid.interval_start(95).hour == 23
    # A daylight-saving zone is handled too: the spring-forward day is 23 hours long.
    assert DayGrid(date(2026, 3, 29), ZoneInfo("Europe/Berlin")).count == 92


def test_a_clean_day_is_all_actual_with_no_problems():
    result = validate(full_day())
    assert result.problems == ()
    assert len(result.intervals) == 96
    assert {v.quality for v in result.intervals} == {Quality.ACTUAL}
    assert all(v.kw == Decimal("100.000") for v in result.intervals)


def test_missing_intervals_are_reported_and_flagged_missing():
    readings = [r for i, r in enumerate(full_day()) if i not in (10, 11)]
    result = validate(readings)
    assert rules_of(result) == [("M1", 10, "missing"), ("M1", 11, "missing")]
    assert result.intervals[10].quality is Quality.MISSING and result.intervals[10].kw is None


def test_a_known_point_without_any_reading_is_missing_all_day():
    result = validate(full_day("M1"), points=("M1", "M2"))
    assert [p.interval for p in result.problems if p.point == "M2"] == list(range(96))


def test_identical_duplicates_are_dropped_with_a_note():
    readings = full_day() + [Reading("M1", at(5), Decimal("100.0"))]
    result = validate(readings)
    assert rules_of(result) == [("M1", 5, "duplicate")]
    assert result.intervals[5].quality is Quality.ACTUAL
    assert result.intervals[5].kw == Decimal("100.000")


def test_conflicting_duplicates_are_rejected_not_merged():
    readings = full_day() + [Reading("M1", at(5), Decimal("130"))]
    result = validate(readings)
    assert rules_of(result) == [("M1", 5, "conflicting-duplicate")]
    assert "100.000, 130.000" in result.problems[0].detail
    assert result.intervals[5].kw is None and result.intervals[5].quality is Quality.MISSING


def test_negative_values_are_rejected():
    readings = full_day()
    readings[7] = Reading("M1", at(7), Decimal("-0.5"))
    result = validate(readings)
    assert rules_of(result) == [("M1", 7, "negative")]
    assert result.intervals[7].quality is Quality.MISSING


def test_values_above_the_maximum_are_rejected_as_rollover():
    readings = full_day()
    readings[8] = Reading("M1", at(8), Decimal("999999"))
    result = validate(readings, rules=MeteringRules(max_kw=Decimal("5000")))
    assert rules_of(result) == [("M1", 8, "over-maximum")]


def test_values_above_the_absolute_spike_limit_are_rejected():
    readings = full_day()
    readings[9] = Reading("M1", at(9), Decimal("700"))
    result = validate(readings, rules=MeteringRules(spike_kw=Decimal("500")))
    assert rules_of(result) == [("M1", 9, "spike")]
    assert "absolute limit" in result.problems[0].detail


def test_a_jump_away_from_both_neighbours_is_a_spike_but_a_step_is_not():
    rules = MeteringRules(max_step_kw=Decimal("50"))
    readings = full_day()
    readings[20] = Reading("M1", at(20), Decimal("151"))   # up and back down: spike
    readings[40] = Reading("M1", at(40), Decimal("49"))    # down and back up: spike
    for i in range(60, 96):                                 # a plant switching on: a step
        readings[i] = Reading("M1", at(i), Decimal("400"))
    result = validate(readings, rules=rules)
    assert rules_of(result) == [("M1", 20, "spike"), ("M1", 40, "spike")]
    assert result.intervals[60].kw == Decimal("400.000")
    # Exactly the limit away is still acceptable.
    readings[20] = Reading("M1", at(20), Decimal("150"))
    assert ("M1", 20, "spike") not in rules_of(validate(readings, rules=rules))


def test_off_grid_and_outside_day_timestamps_are_rejected():
    readings = full_day()
    readings[3] = Reading("M1", at(3) + timedelta(minutes=7), Decimal("100"))
    readings.append(Reading("M1", MIDNIGHT - INTERVAL, Decimal("100")))
    readings.append(Reading("M1", at(96), Decimal("100")))
    result = validate(readings)
    assert rules_of(result) == [("M1", None, "outside-day"), ("M1", None, "outside-day"),
                                ("M1", 3, "missing"), ("M1", 3, "off-grid")]


def test_a_reading_in_another_zone_is_placed_by_its_instant():
    from datetime import UTC
    readings = full_day()[1:] + [Reading("M1", MIDNIGHT.astimezone(UTC), Decimal("100"))]
    assert validate(readings).problems == ()


def test_unknown_points_are_rejected_with_a_report():
    result = validate(full_day() + [Reading("X9", at(4), Decimal("1"))])
    assert rules_of(result) == [("X9", 4, "unknown-point")]
    assert {v.point for v in result.intervals} == {"M1"}


def test_output_is_sorted_by_point_and_interval():
    result = validate(full_day("B") + full_day("A"), points={"B", "A"})
    assert [(v.point, v.interval) for v in result.intervals] == sorted(
        (p, i) for p in "AB" for i in range(96))


@pytest.mark.parametrize("bad", [
    lambda: Reading("M1", datetime(2026, 11, 20), Decimal("1")),
    lambda: Reading("M1", MIDNIGHT, 1.5),
    lambda: Reading("M1", MIDNIGHT, Decimal("1.0005")),
    lambda: Reading("M1", MIDNIGHT, Decimal("NaN")),
    lambda: MeteringRules(max_step_kw=Decimal("0")),
    lambda: MeteringRules(max_interpolation_gap=timedelta(minutes=20)),
    lambda: MeteringRules(like_days="weekends"),
])
def test_malformed_input_is_refused_with_a_settlement_error(bad):
    with pytest.raises(MeteringInputError):
        bad()
    assert issubclass(MeteringInputError, SettlementError)


# --- the columnar day ---------------------------------------------------------------------

def test_a_day_is_columns_of_watts_and_quality_codes():
    readings = [r for r in full_day("B", "12.345") if r.start != at(3)] + full_day("A")
    result = validate(readings, points=("B", "A"))
    assert result.points == ("A", "B")
    assert result.watts.dtype == np.int64 and result.watts.shape == (2, 96)
    assert result.quality.dtype == np.uint8
    assert result.watts[1, 0] == 12345 and result.watts[1, 3] == 0
    assert result.quality[1, 3] == QUALITY_ORDER.index(Quality.MISSING) == MISSING
    assert result.notes == {(1, 3): "no valid reading"}
    assert result.missing() == [("B", 3)]
    with pytest.raises(ValueError):
        result.watts[0, 0] = 1  # read-only


def test_a_stored_day_is_rebuilt_from_its_bytes():
    original = validate(full_day("A", "7.5") + full_day("B")[:50], points=("A", "B"))
    watts = [original.watts[r].tobytes() for r in range(2)]
    quality = [original.quality[r].tobytes() for r in range(2)]
    rebuilt = MeterDay(original.day, original.zone, original.points,
                       np.stack([np.frombuffer(w, np.int64) for w in watts]),
                       np.stack([np.frombuffer(q, np.uint8) for q in quality]),
                       dict(original.notes), original.problems)
    assert rebuilt == original
    assert rebuilt.series("B")[60].explanation == "no valid reading"
    assert rebuilt != validate(full_day("A", "7.5"), points=("A", "B"))


@pytest.mark.parametrize("broken", [
    dict(points=("B", "A")),
    dict(points=("A", "A")),
    dict(watts=np.zeros((2, 95), np.int64)),
    dict(quality=np.full((2, 96), 4, np.uint8)),
    dict(watts=np.ones((2, 96), np.int64), quality=np.full((2, 96), MISSING, np.uint8)),
])
def test_an_inconsistent_day_is_refused(broken):
    fields = dict(day=DAY, zone="Asia/Shanghai", points=("A", "B"),
                  watts=np.zeros((2, 96), np.int64), quality=np.zeros((2, 96), np.uint8))
    with pytest.raises(MeteringInputError):
        MeterDay(**{**fields, **broken})


def test_readable_values_round_trip_and_a_day_can_be_narrowed():
    values = {"A": [(Decimal("1.5"), Quality.ACTUAL, "")] * 95
              + [(None, Quality.MISSING, "no valid reading")],
              "B": [(Decimal(2), Quality.SUBSTITUTED, "check meter")] * 96}
    problem = Problem("A", 95, "missing", "no reading")
    day = MeterDay.from_values(DAY, "Asia/Shanghai", values, [problem])
    series = day.series("A")
    assert (series[0].kw, series[0].quality, series[0].start) == (
        Decimal("1.500"), Quality.ACTUAL, MIDNIGHT)
    assert (series[95].kw, series[95].explanation) == (None, "no valid reading")
    assert day.series("B")[7].explanation == "check meter" and day.series("Z") == ()
    assert len(day.intervals) == 192 and day.intervals[96].point == "B"
    only_b = day.select(["B"])
    assert only_b.points == ("B",) and only_b.problems == ()
    assert only_b.notes[(0, 7)] == "check meter"
    assert day.select(["A"]).problems == (problem,)
    with pytest.raises(MeteringInputError):
        MeterDay.from_values(DAY, "Asia/Shanghai", {"A": [(None, Quality.ACTUAL, "")] * 96})
    with pytest.raises(KeyError):
        day.select(["Z"])


def batch_of(rows):
    """A batch from (point, interval, kW text, quality, line) rows."""
    plain = ReadingBatch.from_readings(Reading(p, at(i), Decimal(kw)) for p, i, kw, _, _ in rows)
    return ReadingBatch(plain.points, plain.point_index, plain.start, plain.watts,
                        np.array([QUALITY_ORDER.index(q) for *_, q, _ in rows], np.uint8),
                        np.array([n for *_, n in rows], np.int32))


def test_a_batch_keeps_the_senders_quality_and_problems_name_their_line():
    rows = [("M1", i, "100", Quality.ACTUAL, i + 2) for i in range(96)]
    rows[10] = ("M1", 10, "90", Quality.ESTIMATED, 12)
    rows[20] = ("M1", 20, "-3", Quality.ACTUAL, 22)
    rows.append(("M1", 30, "100", Quality.SUBSTITUTED, 500))   # an identical duplicate
    rows.append(("M1", 40, "100.001", Quality.ACTUAL, 501))    # a conflicting one
    rows.append(("X", 5, "1", Quality.ACTUAL, 502))
    result = validate(batch_of(rows))
    assert result.quality[0, 10] == QUALITY_ORDER.index(Quality.ESTIMATED)
    assert result.notes[(0, 10)] == "estimated by the sender"
    assert result.quality[0, 30] == 0  # the actual copy of a duplicate is kept
    found = {(p.rule, p.interval): p.line for p in result.problems}
    assert found == {("negative", 20): 22, ("duplicate", 30): 32,
                     ("conflicting-duplicate", 40): 42, ("unknown-point", 5): 502}
    # The same readings as objects give the same day, without line numbers.
    objects = validate([Reading(p, at(i), Decimal(kw), q) for p, i, kw, q, _ in rows])
    assert np.array_equal(objects.watts, result.watts)
    assert np.array_equal(objects.quality, result.quality)
    assert [(p.rule, p.interval, p.detail) for p in objects.problems] == [
        (p.rule, p.interval, p.detail) for p in result.problems]


def test_a_daylight_saving_day_is_validated_on_its_own_grid():
    berlin = ZoneInfo("Europe/Berlin")
    day = date(2026, 10, 25)  # 25 hours
    grid = DayGrid(day, berlin)
    readings = [Reading("M1", grid.interval_start(i), Decimal(i)) for i in range(grid.count)]
    result = validate_day(readings, points=["M1"], day=day, zone=berlin)
    assert result.watts.shape == (1, 100) and result.problems == ()
    assert result.watts[0, 99] == 99_000
