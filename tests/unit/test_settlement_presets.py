"""Deviation-rule presets at their band edges, with exact charges, and their lookup by name."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from settlement.deviation import assess_period
from settlement.presets import FUJIAN_2021, NINGXIA_2018, PRESETS, SICHUAN_2018, preset

ALLOWED = D(1000)
PRICE = D("0.3600")  # clearing price, yuan per kVA per hour
HOURS = D("0.25")

# (preset, metered kVA, excess kVA, charge yuan) for allowed 1000, bought 1000; the charge
# is excess × price factor × 0.36 yuan × 0.25 h, written out by hand.
EDGES = {
    "sichuan-2018": [                   # +8 % / −4 %, 10 % of the clearing price
        (D("1080"), D(0), D(0)),        # over-use on the upper edge
        (D("1079.9"), D(0), D(0)),      # just inside
        (D("1080.1"), D("0.1"), D("0.0009")),
        (D("1200"), D(120), D("1.08")),
        (D("960"), D(0), D(0)),         # under-use on the lower edge
        (D("960.1"), D(0), D(0)),
        (D("959.9"), D("0.1"), D("0.0009")),
        (D("900"), D(60), D("0.54")),
    ],
    "fujian-2021": [                    # ±3 %, 5 % of the clearing price
        (D("1030"), D(0), D(0)),
        (D("1029.9"), D(0), D(0)),
        (D("1030.1"), D("0.1"), D("0.00045")),
        (D("1200"), D(170), D("0.765")),
        (D("970"), D(0), D(0)),
        (D("970.1"), D(0), D(0)),
        (D("969.9"), D("0.1"), D("0.00045")),
        (D("900"), D(70), D("0.315")),
    ],
    "ningxia-2018": [                   # ±5 %, 10 % of the clearing price
        (D("1050"), D(0), D(0)),
        (D("1049.9"), D(0), D(0)),
        (D("1050.1"), D("0.1"), D("0.0009")),
        (D("1200"), D(150), D("1.35")),
        (D("950"), D(0), D(0)),
        (D("950.1"), D(0), D(0)),
        (D("949.9"), D("0.1"), D("0.0009")),
        (D("900"), D(50), D("0.45")),
    ],
}


def test_every_preset_has_edge_cases():
    assert set(EDGES) == set(PRESETS)


@pytest.mark.parametrize(("name", "metered", "excess", "charge"), [
    (name, *case) for name, cases in EDGES.items() for case in cases])
@pytest.mark.parametrize("month", [1, 7, 12])
def test_presets_at_their_band_edges(name, metered, excess, charge, month):
    result = assess_period(preset(name), month, 0, ALLOWED, metered, PRICE, HOURS,
                           bought=ALLOWED)
    assert result.excess_kva == excess
    assert result.charge_yuan == charge
    assert result.deviation_kva == metered - ALLOWED


@pytest.mark.parametrize("rule", list(PRESETS.values()), ids=list(PRESETS))
def test_under_use_is_charged_only_on_capacity_bought(rule):
    # 100 kVA under, beyond every preset's lower band; nothing bought, nothing charged.
    assert assess_period(rule, 5, 0, ALLOWED, D(900), PRICE, HOURS,
                         bought=D(0)).charge_yuan == 0
    capped = assess_period(rule, 5, 0, ALLOWED, D(500), PRICE, HOURS, bought=D(10))
    assert capped.excess_kva == 10
    assert capped.charge_yuan == 10 * rule.price_factor * PRICE * HOURS


@pytest.mark.parametrize("rule", list(PRESETS.values()), ids=list(PRESETS))
def test_presets_are_year_round_and_cite_a_published_document(rule):
    # None of the presets has seasonal bands: every month uses the one band.
    assert {rule.band_for(month) for month in range(1, 13)} == {rule.band}
    assert rule.version >= 1 and rule.price_factor > 0
    assert re.search(r"《.+》", rule.source) and re.search(r"(?<!\d)20\d\d(?!\d)", rule.source)
    assert PRESETS[rule.name] is rule


def test_presets_by_name():
    assert preset("sichuan-2018") is SICHUAN_2018
    assert preset("fujian-2021") is FUJIAN_2021
    assert preset("ningxia-2018") is NINGXIA_2018
    assert (NINGXIA_2018.band.upper, NINGXIA_2018.band.lower) == (D("0.05"), D("0.05"))
    with pytest.raises(KeyError) as caught:
        preset("guangdong-2017")
    message = str(caught.value)
    assert "guangdong-2017" in message
    assert "fujian-2021, ningxia-2018, sichuan-2018" in message
