"""Validation of 15-minute interval readings: one small example per rule."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from settlement.errors import MeteringInputError, SettlementError
from settlement.metering import (
    INTERVAL,
    DayGrid,
    MeteringRules,
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
