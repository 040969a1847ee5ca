"""Canonical bytes and hashes of records written on chain, so anyone can recompute them."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from eth_utils import keccak
from sha3 import keccak_256


def _node_hash(data: bytes) -> bytes:
    """keccak256 in C (pysha3): several times faster on the many hashes of Merkle proofs."""
    return keccak_256(data).digest()


def canonical_json(value) -> bytes:
    """Sorted keys, no spaces, decimals as strings: the same record always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default).encode()


def _default(value):
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"not canonical: {type(value).__name__}")


def content_hash(value) -> str:
    return "0x" + keccak(canonical_json(value)).hex()


def uuid_to_bytes32(public_id: str) -> bytes:
    """A listing's UUID as the bytes32 the contract keys it by (reversible: left-padded)."""
    return uuid.UUID(public_id).bytes.rjust(32, b"\0")


def bytes32_to_uuid(value: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(value)[-16:]))


def order_document(order, enterprise_code: str) -> dict:
    """What an order version's on-chain content hash covers."""
    return {
        "type": "order",
        "order": order.public_id,
        "version": order.version,
        "side": order.side,
        "status": order.status,
        "enterprise": enterprise_code,
        "delivery_day": order.delivery_day.isoformat(),
        "price": format(Decimal(order.price).quantize(Decimal("0.0001")), "f"),
        "all_or_none": bool(order.all_or_none),
        "min_fraction": (None if order.min_fraction is None
                         else format(Decimal(order.min_fraction).quantize(Decimal("0.0001")), "f")),
        "periods": [
            [p.period_index, format(Decimal(p.quantity_kva).quantize(Decimal("0.1")), "f")]
            for p in sorted(order.periods, key=lambda p: p.period_index)
        ],
    }


def version_hash_broken(action) -> bool:
    """Whether a stored order version's document no longer gives its recorded hash."""
    return bool(action.document) and content_hash(json.loads(action.document)) \
        != action.content_hash


def order_differs_from(order, latest) -> bool:
    """Whether the stored order no longer says what its latest recorded version said."""
    return (order.version == latest.version and bool(latest.document)
            and canonical_json(order_document(order, order.enterprise.code))
            != canonical_json(json.loads(latest.document)))


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The tree's levels from the leaves up to the root: pairs hashed sorted (OpenZeppelin
    MerkleProof's rule), an odd node carried up unchanged."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append([_node_hash(b"".join(sorted(level[j:j + 2]))) if j + 1 < len(level)
                       else level[j] for j in range(0, len(level), 2)])
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root of a keccak Merkle tree with sorted pairs (OpenZeppelin MerkleProof's rule).

    Leaves are given already hashed; an odd node is carried up unchanged. No leaves: zero.
    """
    return _levels(leaves)[-1][0] if leaves else b"\0" * 32


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """The sibling hashes that tie ``leaves[index]`` to ``merkle_root(leaves)``."""
    return _proof(_levels(leaves), index)


def merkle_proofs(leaves: list[bytes]) -> list[list[bytes]]:
    """Every leaf's proof (as `merkle_proof` gives it), building the tree once."""
    levels = _levels(leaves)
    return [_proof(levels, index) for index in range(len(leaves))]


def _proof(levels: list[list[bytes]], index: int) -> list[bytes]:
    proof = []
    for level in levels[:-1]:
        if (index ^ 1) < len(level):
            proof.append(level[index ^ 1])
        index //= 2
    return proof


def verify_merkle_proof(leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    node = leaf
    for sibling in proof:
        node = _node_hash(b"".join(sorted((node, sibling))))
    return node == root
