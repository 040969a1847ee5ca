"""Canonical encodings and Merkle proofs that auditors recompute."""

from decimal import Decimal

from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from parkgrid.canonical import (
    bytes32_to_uuid,
    canonical_json,
    merkle_proof,
    merkle_root,
    uuid_to_bytes32,
    verify_merkle_proof,
)


def test_canonical_json_is_order_independent_and_exact():
    assert canonical_json({"b": Decimal("1.50"), "a": [1, "x"]}) == b'{"a":[1,"x"],"b":"1.50"}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_uuid_round_trip():
    value = "0b0f6c1e-3a57-4f38-9a0e-2c1d6a0d1f00"
    assert bytes32_to_uuid(uuid_to_bytes32(value)) == value


@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=40))
def test_every_leaf_proves_against_the_root_and_a_changed_leaf_does_not(items):
    leaves = [keccak(item) for item in items]
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        assert verify_merkle_proof(leaf, merkle_proof(leaves, i), root)
        assert not verify_merkle_proof(keccak(leaf), merkle_proof(leaves, i), root)


def test_empty_tree_has_a_zero_root():
    assert merkle_root([]) == b"\0" * 32
