"""The result's canonical bytes and hash, and the checker catching broken results."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal as D

import pytest

import matching

BIG = D(1_000_000)


def congested() -> matching.ClearingInstance:
    network = matching.Network(
        assets=(matching.Asset("T1", "transformer", D(1000), (D(0),)),
                matching.Asset("T2", "transformer", D(1000), (D(940),)),
                matching.Asset("F1", "feeder", BIG, (D(0),), parent="T1"),
                matching.Asset("F2", "feeder", BIG, (D(0),), parent="T2")),
        enterprise_feeder={"cheap": "F1", "buyer": "F2", "local": "F2"})
    orders = (matching.Order("s-cheap", "sell", "cheap", D(10), ((0, D(200)),)),
              matching.Order("b", "buy", "buyer", D(50), ((0, D(100)),)),
              matching.Order("s-local", "sell", "local", D(40), ((0, D(100)),)))
    return matching.ClearingInstance(periods=1, orders=orders, network=network)


@pytest.fixture(scope="module")
def cleared():
    instance = congested()
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    return instance, result


def test_canonical_bytes_are_sorted_json_without_floats(cleared):
    _, result = cleared
    data = result.canonical_bytes()
    doc = json.loads(data)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["accepted"]["b"] == {"0": "100.0"}
    assert doc["order_prices"]["b"] == {"0": "40.0000"}
    assert doc["welfare"] == "2800.00000" and doc["congestion_rent"] == "1800.00000"
    assert b"e+" not in data.lower() and b"." in data

    def no_floats(value):
        if isinstance(value, dict):
            return all(no_floats(v) for v in value.values())
        if isinstance(value, list):
            return all(no_floats(v) for v in value)
        return not isinstance(value, float)

    assert no_floats(doc)


def test_round_trip_and_hash(cleared):
    _, result = cleared
    back = matching.ClearingResult.from_canonical_bytes(result.canonical_bytes())
    assert back == result and back.result_hash == result.result_hash
    assert result.result_hash.startswith("0x") and len(result.result_hash) == 66
    with pytest.raises(ValueError):
        matching.ClearingResult.from_canonical_bytes(b'{"format": 99}')


def test_rerun_gives_identical_bytes(cleared):
    instance, result = cleared
    assert matching.clear(instance).canonical_bytes() == result.canonical_bytes()


def tamper(result, **changes):
    return dataclasses.replace(result, **changes)


def test_checker_catches_an_overloaded_transformer(cleared):
    instance, result = cleared
    accepted = {"s-cheap": {0: D(100)}, "b": {0: D(100)}}
    bad = tamper(result, accepted=accepted, order_prices={"s-cheap": {0: D(40)},
                                                          "b": {0: D(40)}})
    problems = matching.check(instance, bad)
    assert any("T2" in p and "above limit" in p for p in problems)


def test_checker_catches_unbalanced_and_oversized_quantities(cleared):
    instance, result = cleared
    accepted = {**result.accepted, "b": {0: D(101)}}
    problems = matching.check(instance, tamper(result, accepted=accepted))
    assert any("bought" in p for p in problems)
    assert any("outside" in p for p in problems)


def test_checker_catches_quantities_off_the_grid(cleared):
    instance, result = cleared
    accepted = {**result.accepted, "b": {0: D("99.95")}}
    assert any("0.1 kVA" in p for p in matching.check(instance, tamper(result,
                                                                        accepted=accepted)))


def test_checker_catches_inconsistent_prices(cleared):
    instance, result = cleared
    prices = {**result.order_prices, "b": {0: D(41)}}
    assert any("settles" in p for p in matching.check(instance, tamper(result,
                                                                        order_prices=prices)))
    # A single price everywhere would leave the cheap seller out of the money at T2's price
    # and make the price differ across a limit that is not met.
    flat = {code: {0: D(40)} for code in result.node_prices}
    problems = matching.check(instance, tamper(result, node_prices=flat,
                                               system_prices={0: D(40)}))
    assert any("partly accepted off its node price" in p for p in problems)


def test_checker_catches_a_wrong_welfare_or_rent(cleared):
    instance, result = cleared
    problems = matching.check(instance, tamper(result, welfare=result.welfare + 1,
                                               congestion_rent=D(0)))
    assert any("welfare" in p for p in problems) and any("rent" in p for p in problems)


def test_checker_catches_a_split_block_and_a_missing_reason():
    network = matching.Network(
        assets=(matching.Asset("T", "transformer", BIG, (D(0), D(0))),
                matching.Asset("F", "feeder", BIG, (D(0), D(0)), parent="T")),
        enterprise_feeder={"a": "F", "b": "F"})
    orders = (matching.Order("blk", "buy", "a", D(9), ((0, D(10)), (1, D(10))),
                             all_or_none=True),
              matching.Order("s", "sell", "b", D(1), ((0, D(10)), (1, D(10)))))
    instance = matching.ClearingInstance(periods=2, orders=orders, network=network)
    result = matching.clear(instance)
    assert matching.check(instance, result) == []
    split = tamper(result, accepted={"blk": {0: D(10)}, "s": {0: D(10)}})
    assert any("same fraction" in p for p in matching.check(instance, split))
    empty = tamper(result, status="empty", reason=None, accepted={}, order_prices={},
                   welfare=D(0), congestion_rent=D(0))
    assert any("reason" in p for p in matching.check(instance, empty))
