"""Deviation-rule presets following published provincial rules, by name.

The published rules were written for monthly energy deviations of medium- and long-term
contracts; here the same bands and price bases apply to capacity drawn against capacity
allowed in a period. Each preset's `source` names the issuing body, the document and its
year, states what the original charges, and how the preset maps it onto the park market
(which has one uniform clearing price per period and no up- or down-regulation prices).
"""

from __future__ import annotations

from decimal import Decimal

from settlement.deviation import Band, DeviationRule

SICHUAN_2018 = DeviationRule(
    name="sichuan-2018", version=1, band=Band(Decimal("0.08"), Decimal("0.04")),
    price_factor=Decimal("0.10"),
    source="国家能源局四川监管办公室《2018年四川电力交易指导意见》: positive deviation "
           "threshold 8 %, negative deviation exempt up to 4 %; under-use beyond 4 % pays "
           "10 % of the contract price when no down-regulation price applies. Over-use there "
           "pays the system up-regulation price, which a park market does not have; this "
           "preset charges both sides at 10 % of the clearing price.",
)
FUJIAN_2021 = DeviationRule(
    name="fujian-2021", version=1, band=Band(Decimal("0.03"), Decimal("0.03")),
    price_factor=Decimal("0.05"),
    source="福建能源监管办《关于完善福建省电力市场中长期交易规则的若干意见（征求意见稿）》"
           "(2021): deviations beyond ±3 % are assessed; fee = deviation beyond the band × the "
           "month's uniform clearing price × 5 %. The clause is written for coal-fired "
           "generators (燃煤发电企业); this preset applies the same band and price basis to "
           "park enterprises.",
)
NINGXIA_2018 = DeviationRule(
    name="ningxia-2018", version=1, band=Band(Decimal("0.05"), Decimal("0.05")),
    price_factor=Decimal("0.10"),
    source="宁夏回族自治区经济和信息化委员会（宁夏经信委）《关于组织开展2018年电力直接交易的"
           "通知》(2018), user side (用户侧): deviations within ±5 % are exempt; the part "
           "beyond pays 10 % of the highest transaction price of the month's centralised "
           "bidding (月度集中竞价交易最高成交价). In the park's uniform-price clearing every "
           "trade of a period clears at the one clearing price, which is thus the highest "
           "transaction price; this preset charges both sides at 10 % of the clearing price.",
)

PRESETS: dict[str, DeviationRule] = {
    rule.name: rule for rule in (SICHUAN_2018, FUJIAN_2021, NINGXIA_2018)}


def preset(name: str) -> DeviationRule:
    """The preset called `name`; KeyError names the known presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"no deviation rule preset {name!r}; known presets: "
                       f"{', '.join(sorted(PRESETS))}") from None
