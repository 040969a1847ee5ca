"""Deviation assessment at the band edges (on the edge, just inside, just outside), the
under-use rule (charged only on capacity bought), and the vectorised assessment."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.deviation import (
    Band,
    DeviationRule,
    Exemption,
    assess_period,
    excess_beyond_band,
    metered_demand,
)
from settlement.presets import FUJIAN_2021, SICHUAN_2018

ALLOWED = D(1000)
PRICE = D("0.0500")
HOUR = D(1)
BOUGHT = D(200)  # enough that the cap on under-use does not bite at the band edges


@pytest.mark.parametrize(("rule", "metered", "excess"), [
    # Sichuan: +8 % / −4 %.
    (SICHUAN_2018, D("1080"), D(0)),        # on the upper edge
    (SICHUAN_2018, D("1079.9"), D(0)),      # just inside
    (SICHUAN_2018, D("1080.1"), D("0.1")),  # just outside
    (SICHUAN_2018, D("960"), D(0)),         # on the lower edge
    (SICHUAN_2018, D("960.1"), D(0)),
    (SICHUAN_2018, D("959.9"), D("0.1")),
    # Fujian: ±3 %.
    (FUJIAN_2021, D("1030"), D(0)),
    (FUJIAN_2021, D("1029.9"), D(0)),
    (FUJIAN_2021, D("1030.1"), D("0.1")),
    (FUJIAN_2021, D("970"), D(0)),
    (FUJIAN_2021, D("970.1"), D(0)),
    (FUJIAN_2021, D("969.9"), D("0.1")),
])
def test_presets_at_their_band_edges(rule, metered, excess):
    result = assess_period(rule, 11, 0, ALLOWED, metered, PRICE, HOUR, bought=BOUGHT)
    assert result.excess_kva == excess
    assert result.charge_yuan == excess * rule.price_factor * PRICE * HOUR


def test_a_seller_that_used_what_it_sold_is_charged_on_the_over_use():
    # Allowed = contracted 1000 − sold 300 = 700, metered 1000: 300 over, band 8 % of 700.
    seller = assess_period(SICHUAN_2018, 5, 3, D(700), D(1000), PRICE, HOUR, bought=D(0))
    assert seller.excess_kva == D(300) - D("0.08") * 700
    assert seller.charge_yuan == seller.excess_kva * D("0.10") * PRICE


def test_under_use_is_charged_only_on_capacity_bought():
    # Allowed = 1000 + bought 500 = 1500, metered 900: 600 under, 540 beyond the 4 % band,
    # but only the 500 bought can be charged.
    buyer = assess_period(SICHUAN_2018, 5, 3, D(1500), D(900), PRICE, HOUR, bought=D(500))
    assert buyer.excess_kva == D(500)
    assert buyer.deviation_kva == D(-600)
    # Bought 1000 of allowed 2000, metered 1400: 600 under, 520 beyond the band, all charged.
    assert assess_period(SICHUAN_2018, 5, 3, D(2000), D(1400), PRICE, HOUR,
                         bought=D(1000)).excess_kva == D(520)
    # An enterprise that bought nothing is never charged for drawing less than it may.
    idle = assess_period(SICHUAN_2018, 5, 3, D(1000), D(10), PRICE, HOUR, bought=D(0))
    assert (idle.excess_kva, idle.charge_yuan) == (0, 0)
    with pytest.raises(TypeError):
        assess_period(SICHUAN_2018, 5, 3, D(1000), D(10), PRICE, HOUR)  # bought is required


def test_a_rule_may_charge_one_side_only_and_falls_back_to_its_fixed_price():
    over_only = DeviationRule(name="over", version=1, band=Band(D("0.05"), D("0.05")),
                              price_factor=D(2), fixed_price=D("0.4"), charge_under=False)
    assert assess_period(over_only, 1, 0, ALLOWED, D(500), None, HOUR,
                         bought=D(1000)).excess_kva == 0
    over = assess_period(over_only, 1, 0, ALLOWED, D(1100), None, D("0.25"), bought=D(0))
    assert (over.excess_kva, over.penalty_price, over.charge_yuan) == (D(50), D("0.4"), D(5))


def test_seasonal_bands_minimum_charge_and_exemptions():
    rule = DeviationRule(name="seasonal", version=1, band=Band(D("0.02"), D("0.02")),
                         seasonal=((7, Band(D("0.04"), D("0.04"))),
                                   (8, Band(D("0.04"), D("0.04"))),
                                   (9, Band(D("0.04"), D("0.04")))),
                         price_factor=D(3), minimum_charge=D("0.10"))
    def assess(month, metered, exemption=None):
        return assess_period(rule, month, 0, ALLOWED, metered, PRICE, HOUR, exemption,
                             bought=D(0))

    assert assess(8, D(1040)).excess_kva == 0
    assert assess(10, D(1040)).excess_kva == D(20)
    # 20 kVA × 3 × 0.05 × 1 h = 3 yuan; 0.5 kVA over would be 0.075 yuan: waived.
    assert assess(10, D(1040)).charge_yuan == D(3)
    assert assess(10, D("1020.5")).charge_yuan == 0
    excused = assess(10, D(1500), Exemption(0, "outage", "work order 17"))
    assert excused.charge_yuan == 0 and excused.exempt_reason == "outage"
    assert excused.excess_kva == D(480)  # still reported


def test_metered_demand_is_the_largest_quarter_hour_of_the_period():
    readings = [D(i) for i in range(96)]
    assert metered_demand(readings, 0, 4) == D(3)
    assert metered_demand(readings, 23, 4) == D(95)
    with pytest.raises(ValueError):
        metered_demand(readings, 24, 4)


def test_bands_are_checked():
    with pytest.raises(ValueError):
        Band(D("1.5"), D(0))


RULES = [SICHUAN_2018, FUJIAN_2021,
         DeviationRule(name="odd", version=2, band=Band(D("0.0125"), D("0.333")),
                       price_factor=D(1), charge_over=False),
         DeviationRule(name="under-off", version=1, band=Band(D(0), D(0)),
                       price_factor=D(1), charge_under=False)]
kva = st.integers(0, 10**9)  # VA, i.e. kVA with three decimals


@given(st.sampled_from(RULES), st.integers(1, 12),
       st.lists(st.tuples(kva, kva, kva), min_size=1, max_size=30))
def test_the_vectorised_excess_equals_the_scalar_assessment(rule, month, rows):
    allowed, metered, bought = (np.array(column, np.int64) for column in zip(*rows, strict=True))
    excess, places = excess_beyond_band(rule, month, allowed, metered, bought)
    for i, (a, m, b) in enumerate(rows):
        expected = assess_period(rule, month, 0, D(a) / 1000, D(m) / 1000, PRICE, HOUR,
                                 bought=D(b) / 1000).excess_kva
        assert D(int(excess[i])).scaleb(-3 - places) == expected


def test_the_vectorised_excess_stays_exact_beyond_int64():
    huge = 10**19  # VA: a value int64 cannot hold with the band's scale applied
    excess, places = excess_beyond_band(SICHUAN_2018, 1, np.array([huge], object),
                                        np.array([2 * huge], object), np.array([0], object))
    assert int(excess[0]) == (huge - huge * 8 // 100) * 10**places

