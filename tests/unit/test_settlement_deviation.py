"""Deviation assessment at the band edges: exactly on the edge, just inside, just outside."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from settlement.deviation import (
    FUJIAN_2021,
    SICHUAN_2018,
    Band,
    DeviationRule,
    Exemption,
    assess_period,
    metered_demand,
)

ALLOWED = D(1000)
PRICE = D("0.0500")
HOUR = D(1)


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
    result = assess_period(rule, 11, 0, ALLOWED, metered, PRICE, HOUR)
    assert result.excess_kva == excess
    assert result.charge_yuan == excess * rule.price_factor * PRICE * HOUR


def test_a_seller_that_used_what_it_sold_and_a_buyer_far_below_are_both_charged():
    # Allowed = contracted 1000 − sold 300 = 700, metered 1000: 300 over, band 8 % of 700.
    seller = assess_period(SICHUAN_2018, 5, 3, D(700), D(1000), PRICE, HOUR)
    assert seller.excess_kva == D(300) - D("0.08") * 700
    # Allowed = 1000 + bought 500 = 1500, metered 900: 600 under, band 4 % of 1500.
    buyer = assess_period(SICHUAN_2018, 5, 3, D(1500), D(900), PRICE, HOUR)
    assert buyer.excess_kva == D(600) - D("0.04") * 1500


def test_seasonal_bands_minimum_charge_and_exemptions():
    rule = DeviationRule(name="seasonal", version=1, band=Band(D("0.02"), D("0.02")),
                         seasonal=((7, Band(D("0.04"), D("0.04"))),
                                   (8, Band(D("0.04"), D("0.04"))),
                                   (9, Band(D("0.04"), D("0.04")))),
                         price_factor=D(3), minimum_charge=D("0.10"))
    assert assess_period(rule, 8, 0, ALLOWED, D(1040), PRICE, HOUR).excess_kva == 0
    assert assess_period(rule, 10, 0, ALLOWED, D(1040), PRICE, HOUR).excess_kva == D(20)
    # 20 kVA × 3 × 0.05 × 1 h = 3 yuan; 0.5 kVA over would be 0.075 yuan: waived.
    assert assess_period(rule, 10, 0, ALLOWED, D(1040), PRICE, HOUR).charge_yuan == D(3)
    assert assess_period(rule, 10, 0, ALLOWED, D("1020.5"), PRICE, HOUR).charge_yuan == 0
    excused = assess_period(rule, 10, 0, ALLOWED, D(1500), PRICE, HOUR,
                            Exemption(0, "outage", "work order 17"))
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
