"""One park-day's settlement end to end on small parks: capacity money, deviations on both
sides, exemptions, initial and final runs, canonical bytes, re-run differences, roll-up."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, timedelta
from decimal import Decimal as D
from decimal import localcontext

import numpy as np
import pytest

from settlement.day import (
    Account,
    DayInputs,
    IncompleteMeteringError,
    canonical,
    dec_text,
    differences,
    inputs_document,
    line_bytes,
    line_document,
    metering_leaves,
    roll_up,
    rule_bytes,
    scaled_text,
    settle_day,
)
from settlement.deviation import Band, DeviationRule, Exemption
from settlement.errors import SettlementError, SettlementInputError
from settlement.estimation import substitute
from settlement.metering import ESTIMATED, MISSING, MeterDay, Reading
from settlement.presets import FUJIAN_2021, SICHUAN_2018
from settlement.run import OPERATOR, Line, Trade, totals

ZONE = "Asia/Shanghai"
DAY = date(2026, 11, 20)
PRICE = D("0.0500")


def meter(values: dict[str, object], day: date = DAY, zone: str = ZONE) -> MeterDay:
    """A metered day from kW per point: a number for a flat day, or a list of 96 (None is
    missing)."""
    points = sorted(values)
    count = 96 if zone == ZONE else len(values[points[0]])
    watts = np.zeros((len(points), count), np.int64)
    quality = np.zeros((len(points), count), np.uint8)
    for row, point in enumerate(points):
        series = values[point]
        series = series if isinstance(series, list) else [series] * count
        for i, kw in enumerate(series):
            if kw is None:
                quality[row, i] = MISSING
            else:
                watts[row, i] = int(D(kw) * 1000)
    return MeterDay(day, zone, points, watts, quality, {}, ())


def park(metered: MeterDay, accounts, trades=(), prices=None, rule=SICHUAN_2018,
         exemptions=None, minutes: int = 60) -> DayInputs:
    periods = metered.watts.shape[1] * 15 // minutes
    return DayInputs("P1", metered.day, metered.zone, minutes, tuple(accounts), metered,
                     tuple(trades), prices if prices is not None else dict.fromkeys(
                         range(periods), PRICE), rule, exemptions or {})


def period(result, account: str, p: int):
    return next(a for a in result.assessments if a.account == account and a.period == p)


def test_capacity_money_flows_from_buyer_to_seller_and_the_rent_to_the_operator():
    metered = meter({"A1": 500, "B1": 1080})  # inside the band with and without its trade
    accounts = [Account("EA", D(1000), ("A1",)), Account("EB", D(1000), ("B1",))]
    trades = [Trade("EA", "s1", "sell", 10, D("100.5"), D("0.0300")),
              Trade("EB", "b1", "buy", 10, D("100.5"), D("0.0500"))]
    result = settle_day(park(metered, accounts, trades))
    # 100.5 kVA × 1 h: the buyer pays 5.025 yuan, the seller gets 3.015, the rent is 2.01;
    # the two half fen: the first in statement order gets the one the sum lacks.
    assert totals(result.lines) == {"EA": -301, "EB": 502, OPERATOR: -201}
    assert result.residual_fen == 0
    capacity = [line for line in result.lines if line.kind == "capacity"]
    assert [(c.account, c.period, c.reference) for c in capacity] == [
        ("EA", 10, "s1"), ("EB", 10, "b1")]


def test_quarter_hour_periods_settle_a_quarter_of_an_hour():
    metered = meter({"A1": 500, "B1": 1070})
    accounts = [Account("EA", D(1000), ("A1",)), Account("EB", D(1000), ("B1",))]
    trades = [Trade("EA", "s", "sell", 95, D(100), D("0.04")),
              Trade("EB", "b", "buy", 95, D(100), D("0.04"))]
    result = settle_day(park(metered, accounts, trades, minutes=15))
    assert totals(result.lines) == {"EA": -100, "EB": 100}
    assert len(result.assessments) == 2 * 96


def test_a_seller_using_the_capacity_it_sold_is_charged_and_the_pool_goes_to_the_others():
    values = {"S1": 400, "S2": 600, "X1": 100, "Y1": 100}
    metered = meter(values)
    accounts = [Account("SELLER", D(1000), ("S1", "S2")), Account("X", D(500), ("X1",)),
                Account("Y", D(1500), ("Y1",))]
    trades = [Trade("SELLER", "s", "sell", 9, D(300), PRICE)]
    result = settle_day(park(metered, accounts, trades))
    seller = period(result, "SELLER", 9).assessment
    # Demand 400 + 600 = 1000 kW against 700 allowed: 300 over, 244 beyond the 8 % band.
    assert (seller.allowed_kva, seller.metered_kva, seller.deviation_kva) == (700, 1000, 300)
    assert seller.excess_kva == D(244)
    assert seller.charge_yuan == D(244) * D("0.10") * PRICE  # 1.22 yuan
    lines = {(line.account, line.kind): line.fen for line in result.lines}
    assert lines[("SELLER", "deviation")] == 122
    # The others draw far below their contracted capacity without buying: never charged.
    assert all(a.assessment.charge_yuan == 0 for a in result.assessments
               if a.account != "SELLER")
    # The pool of 122 fen goes back 1 : 3 by contracted capacity.
    assert (lines[("X", "penalty-pool")], lines[("Y", "penalty-pool")]) == (-30, -92)
    assert result.residual_fen == 0


def test_a_buyer_far_below_what_it_bought_is_charged_on_at_most_what_it_bought():
    metered = meter({"B1": 200, "Z1": 50})
    accounts = [Account("BUYER", D(1000), ("B1",)), Account("Z", D(800), ("Z1",))]
    trades = [Trade("BUYER", "b", "buy", 14, D(500), PRICE)]
    result = settle_day(park(metered, accounts, trades))
    buyer = period(result, "BUYER", 14).assessment
    # Allowed 1500, metered 200: 1300 under, 1240 beyond the 4 % band, capped at 500 bought.
    assert (buyer.deviation_kva, buyer.excess_kva) == (-1300, 500)
    assert buyer.charge_yuan == D("2.5")
    # In the periods it bought nothing it is not charged for drawing little.
    assert period(result, "BUYER", 13).assessment.excess_kva == 0
    assert totals(result.lines) == {"BUYER": 250 + 2500, "Z": -250, OPERATOR: -2500}


def test_an_exempted_period_reports_the_excess_but_charges_nothing():
    metered = meter({"A1": 2000, "B1": 10})
    accounts = [Account("EA", D(1000), ("A1",)), Account("EB", D(1000), ("B1",))]
    exemptions = {"EA": (Exemption(3, "outage", "work order 17"),)}
    result = settle_day(park(metered, accounts, exemptions=exemptions))
    excused = period(result, "EA", 3).assessment
    assert (excused.excess_kva, excused.charge_yuan, excused.exempt_reason) == (
        D(920), 0, "outage")
    charged = period(result, "EA", 4).assessment
    assert charged.charge_yuan == D(920) * D("0.10") * PRICE and charged.exempt_reason is None
    deviation = [line.period for line in result.lines if line.kind == "deviation"]
    assert deviation == [p for p in range(24) if p != 3]


def test_a_final_run_is_refused_while_intervals_are_missing_and_an_initial_run_settles():
    series = [D(100)] * 96
    series[0:4] = [None] * 4       # period 0: nothing at all
    series[4:8] = [None, D(130), None, D(120)]  # period 1: the largest of what is there
    metered = meter({"A1": series, "A2": 50})
    accounts = [Account("EA", D(100), ("A1",)), Account("EB", D(100), ("A2", "GONE"))]
    inputs = park(metered, accounts)
    with pytest.raises(IncompleteMeteringError) as refused:
        settle_day(inputs, final=True)
    missing = refused.value.missing
    assert missing[:6] == (("A1", 0), ("A1", 1), ("A1", 2), ("A1", 3), ("A1", 4), ("A1", 6))
    assert ("GONE", 95) in missing and len(missing) == 6 + 96
    assert isinstance(refused.value, SettlementError)

    initial = settle_day(inputs)
    first = period(initial, "EA", 0)
    assert first.assessment is None and first.quality == (0, 0, 0, 4)
    second = period(initial, "EA", 1)
    assert second.assessment.metered_kva == 130 and second.quality == (2, 0, 0, 2)
    assert period(initial, "EB", 5).quality == (4, 0, 0, 4)  # GONE counts as missing
    assert not initial.final and json.loads(initial.canonical_bytes())["final"] is False
    assert '"assessment":null' in initial.canonical_bytes().decode()


def test_a_complete_day_settles_finally_and_counts_estimated_values():
    metered = meter({"A1": 100})
    quality = metered.quality.copy()
    quality[0, 5] = ESTIMATED
    estimated = MeterDay(DAY, ZONE, metered.points, metered.watts, quality, {(0, 5): "x"}, ())
    result = settle_day(park(estimated, [Account("EA", D(100), ("A1",))]), final=True)
    assert result.final and period(result, "EA", 1).quality == (3, 1, 0, 0)


def shuffled_inputs(inputs: DayInputs, seed: int) -> DayInputs:
    rnd = random.Random(seed)
    accounts = [Account(a.code, a.contracted_kva, tuple(rnd.sample(a.points, len(a.points))))
                for a in inputs.accounts]
    rnd.shuffle(accounts)
    trades = list(inputs.trades)
    rnd.shuffle(trades)
    prices = dict(rnd.sample(list(inputs.prices.items()), len(inputs.prices)))
    exemptions = {code: tuple(rnd.sample(items, len(items)))
                  for code, items in rnd.sample(list(inputs.exemptions.items()),
                                                len(inputs.exemptions))}
    return DayInputs(inputs.park, inputs.day, inputs.zone, inputs.period_minutes,
                     tuple(accounts), inputs.meter, tuple(trades), prices, inputs.rule,
                     exemptions)


def busy_park() -> DayInputs:
    values = {"A1": 700, "A2": 650, "B1": 90, "C1": 1200, "C2": 10, "D1": 400}
    accounts = [Account("EA", D("1200.5"), ("A1", "A2")), Account("EB", D(300), ("B1",)),
                Account("EC", D(1000), ("C1", "C2")), Account("ED", D(450), ("D1",))]
    trades = [Trade("EA", "s1", "sell", p, D("200.1"), D("0.0312")) for p in range(8, 12)]
    trades += [Trade("EB", "b1", "buy", p, D("150.3"), D("0.0333")) for p in range(8, 12)]
    trades += [Trade("ED", "b2", "buy", p, D("49.8"), D("0.0333")) for p in range(8, 12)]
    exemptions = {"EC": (Exemption(2, "outage", "wo 1"), Exemption(5, "force majeure"))}
    return park(meter(values), accounts, trades, exemptions=exemptions)


def test_canonical_bytes_are_stable_and_do_not_depend_on_input_order():
    inputs = busy_park()
    result = settle_day(inputs)
    for seed in range(3):
        again = settle_day(shuffled_inputs(inputs, seed))
        assert again.canonical_bytes() == result.canonical_bytes()
        assert again.inputs_digest == result.inputs_digest and again == result
    # The fast writer writes exactly the canonical form of the readable documents.
    assert result.canonical_bytes() == canonical(result.document())
    assert result.statement_leaves() == [canonical(line_document(x)) for x in result.lines]
    assert result.statement_leaves() == [line_bytes(x) for x in result.lines]
    assert sum(line.fen for line in result.lines) == 0
    assert hashlib.sha256(inputs.canonical_bytes()).hexdigest() == result.inputs_digest
    assert inputs.canonical_bytes() == canonical(inputs_document(inputs))
    # Any change of the inputs changes the digest.
    other = settle_day(park(inputs.meter, inputs.accounts, inputs.trades[1:],
                            exemptions=inputs.exemptions))
    assert other.inputs_digest != result.inputs_digest


def test_canonical_forms_of_leaves_rules_and_decimals():
    metered = meter({"M-一": [D("1.5")] * 95 + [None], "M2": 0})
    leaves = metering_leaves(metered)
    first = json.loads(leaves[0])
    assert first["point"] == "M-一" and first["watts"][:2] == [1500, 1500]
    assert first["quality"][-1] == 3 and first["watts"][-1] == 0
    for leaf, row in zip(leaves, range(2), strict=True):
        assert leaf == canonical({"day": "2026-11-20", "point": metered.points[row],
                                  "zone": ZONE, "watts": metered.watts[row].tolist(),
                                  "quality": metered.quality[row].tolist()})
    assert json.loads(rule_bytes(SICHUAN_2018))["band"] == {"upper": "0.08", "lower": "0.04"}
    assert rule_bytes(SICHUAN_2018) != rule_bytes(FUJIAN_2021)
    assert [dec_text(D(x)) for x in ("0.050", "1E+3", "-0.0", "12.340", "7")] == [
        "0.05", "1000", "0", "12.34", "7"]
    with localcontext(prec=100):
        for number in (0, 5, -5, 1000, 123456, -120, 10**30 + 1):
            for places in (0, 1, 3, 7):
                assert scaled_text(number, places) == dec_text(D(number).scaleb(-places))
    document = inputs_document(busy_park())
    assert [t["order_id"] for t in document["trades"]][:5] == ["s1"] * 4 + ["b1"]


def test_differences_of_a_re_run_add_up_to_the_new_totals():
    inputs = busy_park()
    first = settle_day(inputs)
    grid = inputs.meter.grid
    corrected = substitute(inputs.meter, [Reading("C1", grid.interval_start(i), D(300))
                                          for i in range(24, 28)], source="check meter")
    second = settle_day(park(corrected, inputs.accounts, inputs.trades,
                             exemptions=inputs.exemptions))
    delta = differences(first.lines, second.lines)
    assert delta and all(line.fen for line in delta)
    before, change, after = totals(first.lines), totals(delta), totals(second.lines)
    for account in set(before) | set(after):
        assert before.get(account, 0) + change.get(account, 0) == after.get(account, 0)
    assert sum(line.fen for line in delta) == 0
    assert differences(first.lines, first.lines) == []


def test_roll_up_sums_a_month_by_account_and_kind():
    lines = {date(2026, 11, 1): [Line("EA", "capacity", 3, "x", 100),
                                 Line("EA", "capacity", 4, "y", 50),
                                 Line("EB", "capacity", 3, "z", -150)],
             date(2026, 11, 2): [Line("EA", "capacity", 3, "x", -150),
                                 Line("EB", "capacity", 3, "z", 150),
                                 Line("EA", "deviation", 1, "", 7),
                                 Line("EB", "penalty-pool", None, "", -7)]}
    statement = roll_up(lines)
    assert statement == [Line("EA", "deviation", None, "2026-11", 7),
                         Line("EB", "penalty-pool", None, "2026-11", -7)]
    assert roll_up({}) == []
    with pytest.raises(SettlementInputError):
        roll_up({date(2026, 11, 30): [], date(2026, 12, 1): []})


def test_a_daylight_saving_day_has_as_many_periods_as_hours():
    berlin = date(2026, 3, 29)  # 23 hours
    metered = meter({"A1": [D(10)] * 92}, day=berlin, zone="Europe/Berlin")
    inputs = DayInputs("P1", berlin, "Europe/Berlin", 60,
                       (Account("EA", D(100), ("A1",)),), metered, (), {}, SICHUAN_2018)
    result = settle_day(inputs)
    assert len(result.assessments) == 23
    assert period(result, "EA", 22).assessment.penalty_price == SICHUAN_2018.fixed_price


@pytest.mark.parametrize("change", [
    lambda i: {"period_minutes": 20},
    lambda i: {"period_minutes": 0},
    lambda i: {"accounts": (*i.accounts, Account("EX", D(1), ("A1",)))},
    lambda i: {"accounts": (*i.accounts, Account("EA", D(1), ()))},
    lambda i: {"accounts": (*i.accounts, Account(OPERATOR, D(1), ()))},
    lambda i: {"accounts": (Account("EA", D("1.0001"), ("A1",)),)},
    lambda i: {"trades": (Trade("NOBODY", "t", "buy", 1, D(1), PRICE),)},
    lambda i: {"trades": (Trade("EA", "t", "lend", 1, D(1), PRICE),)},
    lambda i: {"trades": (Trade("EA", "t", "buy", 24, D(1), PRICE),)},
    lambda i: {"trades": (Trade("EA", "t", "buy", 1, D(0), PRICE),)},
    lambda i: {"trades": (Trade("EA", "t", "buy", 1, 1.5, PRICE),)},
    lambda i: {"prices": {24: PRICE}},
    lambda i: {"prices": {0: D(-1)}},
    lambda i: {"exemptions": {"NOBODY": (Exemption(1, "x"),)}},
    lambda i: {"exemptions": {"EA": (Exemption(1, "x"), Exemption(1, "y"))}},
    lambda i: {"day": DAY + timedelta(days=1)},
])
def test_inconsistent_inputs_are_refused(change):
    inputs = park(meter({"A1": 1}), [Account("EA", D(10), ("A1",))])
    fields = {**inputs.__dict__, **change(inputs)}
    with pytest.raises(SettlementInputError):
        settle_day(DayInputs(**fields))


def test_a_rule_without_a_clearing_price_uses_its_fixed_price_and_minimum_charge():
    rule = DeviationRule("fixed", 1, Band(D("0.1"), D("0.1")), price_factor=D(1),
                         fixed_price=D("0.2"), minimum_charge=D("1"))
    metered = meter({"A1": [D("112")] * 4 + [D("115")] * 4 + [D("200")] * 88})
    result = settle_day(park(metered, [Account("EA", D(100), ("A1",))], prices={}, rule=rule))
    assert period(result, "EA", 0).assessment.charge_yuan == 0  # 2 kVA × 0.2: under 1 yuan
    assert period(result, "EA", 1).assessment.charge_yuan == 1  # exactly the minimum
    assert period(result, "EA", 2).assessment.charge_yuan == D(18)  # 90 kVA × 0.2
    assert totals(result.lines) == {"EA": 100 + 22 * 1800, OPERATOR: -100 - 22 * 1800}


def test_large_values_stay_exact():
    big = D("123456789.123")
    metered = meter({"A1": big})
    rule = DeviationRule("exact", 1, Band(D("0.0001"), D("0.0001")), price_factor=D("1.23456"))
    inputs = park(metered, [Account("EA", D("1.001"), ("A1",)), Account("EB", D(7), ())],
                  prices={p: D("0.123456789") for p in range(24)}, rule=rule)
    result = settle_day(inputs)
    a = period(result, "EA", 0).assessment
    assert a.excess_kva == big - D("1.001") - D("0.0001") * D("1.001")
    with localcontext(prec=100):  # 32 digits: more than the default context keeps
        assert a.charge_yuan == a.excess_kva * D("1.23456") * D("0.123456789")
    assert len(a.charge_yuan.as_tuple().digits) > 28
    assert result.residual_fen == 0


def test_meter_day_from_the_wrong_day_is_named():
    inputs = park(meter({"A1": 1}), [Account("EA", D(10), ("A1",))])
    other = DayInputs(**{**inputs.__dict__, "zone": "Asia/Tokyo"})
    with pytest.raises(SettlementInputError, match="Asia/Shanghai"):
        settle_day(other)
