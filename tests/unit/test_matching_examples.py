"""Published worked examples of uniform-price clearing, reproduced by the matching core.

Units are mapped one to one: 1 MW(h) → 1 kVA for one hourly period, and 1 $/MWh or €/MWh →
1 yuan per kVA per hour. Inelastic demand ("a load of X MW") is a bid at a price far above
every offer.
"""

from __future__ import annotations

from decimal import Decimal as D

import matching

PRICE_CAP = D("1000")


def two_zone_park(interconnector_kva: D) -> matching.Network:
    """Two zones under one substation; each zone's transformer limit is the most it may import
    over the interconnector (base load 0), so flow between them is capped at that figure."""
    big = D(1_000_000)
    return matching.Network(
        assets=(matching.Asset("BORDURIA", "transformer", interconnector_kva, (D(0),)),
                matching.Asset("SYLDAVIA", "transformer", interconnector_kva, (D(0),)),
                matching.Asset("B-F", "feeder", big, (D(0),), parent="BORDURIA"),
                matching.Asset("S-F", "feeder", big, (D(0),), parent="SYLDAVIA")),
        enterprise_feeder={"B": "B-F", "S": "S-F"})


def linear_supply(zone: str, intercept: D, slope: D, mw: int) -> list[matching.Order]:
    """A linear supply curve price = intercept + slope·P as 1 MW steps, each priced at the
    curve's value in the middle of its step, so that a quantity on a step boundary has the
    curve's price as the midpoint of the two neighbouring steps."""
    return [matching.Order(f"g{zone}{k:05d}", "sell", zone,
                           intercept + slope * (D(k) - D("0.5")), ((0, D(1)),))
            for k in range(1, mw + 1)]


def borduria_syldavia(interconnector_kva: D) -> matching.ClearingInstance:
    orders = [matching.Order("load-B", "buy", "B", PRICE_CAP, ((0, D(500)),)),
              matching.Order("load-S", "buy", "S", PRICE_CAP, ((0, D(1500)),))]
    orders += linear_supply("B", D(10), D("0.01"), 2000)
    orders += linear_supply("S", D(13), D("0.02"), 2000)
    return matching.ClearingInstance(periods=1, orders=tuple(orders),
                                     network=two_zone_park(interconnector_kva))


def produced(result: matching.ClearingResult, zone: str) -> D:
    return sum((q[0] for oid, q in result.accepted.items() if oid.startswith(f"g{zone}")),
               D(0))


def test_kirschen_strbac_borduria_syldavia_separate_markets():
    """D. Kirschen, G. Strbac, *Fundamentals of Power System Economics* (Wiley, 2004), ch. 6
    (transmission networks and electricity markets), the Borduria–Syldavia example: supply
    π_B = 10 + 0.01·P_B and π_S = 13 + 0.02·P_S $/MWh, loads 500 MW and 1500 MW. Without
    the interconnection each country clears alone at 15 $/MWh and 43 $/MWh."""
    instance = borduria_syldavia(D(0))
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.node_prices["B-F"][0] == D("15.0000")
    assert result.node_prices["S-F"][0] == D("43.0000")
    assert produced(result, "B") == D(500) and produced(result, "S") == D(1500)


def test_kirschen_strbac_borduria_syldavia_congested_interconnector():
    """Same example, interconnection limited to 800 MW: Borduria produces 1300 MW at
    23 $/MWh, Syldavia 700 MW at 27 $/MWh, 800 MW flow, congestion surplus
    (27 − 23) × 800 = 3200 $/h."""
    instance = borduria_syldavia(D(800))
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.node_prices["B-F"][0] == D("23.0000")
    assert result.node_prices["S-F"][0] == D("27.0000")
    assert produced(result, "B") == D(1300) and produced(result, "S") == D(700)
    assert result.congestion_rent == D(3200)
    # The loads pay their zone's price.
    assert result.order_prices["load-S"][0] == D(27) and result.order_prices["load-B"][0] == D(23)


def test_kirschen_strbac_borduria_syldavia_unconstrained():
    """Same example with ample interconnection: one price of about 24.33 $/MWh, Borduria
    producing about 1433 MW and Syldavia 567 MW (933 MW flow). On 1 MW steps the price lies
    between the last accepted step (24.33) and the first rejected one (24.335)."""
    instance = borduria_syldavia(D(5000))
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.node_prices["B-F"][0] == result.node_prices["S-F"][0]
    assert result.node_prices["B-F"][0].quantize(D("0.01")) == D("24.33")
    assert produced(result, "B") == D(1433) and produced(result, "S") == D(567)
    assert result.congestion_rent == 0


def single_node(orders) -> matching.ClearingInstance:
    big = D(1_000_000)
    network = matching.Network(
        assets=(matching.Asset("T", "transformer", big, (D(0),)),
                matching.Asset("F", "feeder", big, (D(0),), parent="T")),
        enterprise_feeder={name: "F" for name in {o.enterprise for o in orders}})
    return matching.ClearingInstance(periods=1, orders=tuple(orders), network=network)


def test_sim_companies_merit_order_example():
    """Sim Companies' public game wiki, "Vocabulary / Power grid" (simcompanies.atlassian.net,
    page 2097119245), Example 2: demand 10 MWh; a solar plant offers 4 MWh at $150 and a coal
    plant 8 MWh at $230. Result: solar produces 4 MWh, coal 6 MWh, spot price $230, which both
    are paid (solar 4 × 230 = $920, coal 6 × 230 = $1380)."""
    instance = single_node([
        matching.Order("city", "buy", "city", PRICE_CAP, ((0, D(10)),)),
        matching.Order("solar", "sell", "solar", D(150), ((0, D(4)),)),
        matching.Order("coal", "sell", "coal", D(230), ((0, D(8)),)),
    ])
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.accepted["solar"][0] == D(4) and result.accepted["coal"][0] == D(6)
    assert result.system_prices[0] == D(230)
    assert result.order_prices["solar"][0] * result.accepted["solar"][0] == D(920)
    assert result.order_prices["coal"][0] * result.accepted["coal"][0] == D(1380)


def test_unit_double_auction_example():
    """A published double-auction exercise (SmartSolve question "You are the Independent System
    Operator (ISO) in an electricity market that runs by auction", smartsolve.ai): one unit per
    order; buyers Grumpy 1, Sleepy 3, Bashful 20, Sneezy 10, Happy 3 $; sellers Mickey 17,
    Minnie 15, Daffy 5, Donald 10, Goofy 16 $. Stated answer: the market clears at $10, with
    Bashful–Daffy and Sneezy–Donald trading."""
    buyers = {"Grumpy": 1, "Sleepy": 3, "Bashful": 20, "Sneezy": 10, "Happy": 3}
    sellers = {"Mickey": 17, "Minnie": 15, "Daffy": 5, "Donald": 10, "Goofy": 16}
    orders = [matching.Order(name, "buy", name, D(p), ((0, D(1)),)) for name, p in buyers.items()]
    orders += [matching.Order(name, "sell", name, D(p), ((0, D(1)),))
               for name, p in sellers.items()]
    instance = single_node(orders)
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    assert result.system_prices[0] == D(10)
    assert set(result.accepted) == {"Bashful", "Sneezy", "Daffy", "Donald"}
    assert result.volume == D(2)
