"""The auditor's view of an order: the database record beside what the chain says about it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..canonical import (
    bytes32_to_uuid,
    canonical_json,
    content_hash,
    order_document,
    uuid_to_bytes32,
)
from ..chain import enterprise_key
from ..models import ChainStatus, Order
from .errors import N_


@dataclass(frozen=True)
class OrderComparison:
    public_id: str
    db: dict
    chain: dict | None
    mismatches: list[str]

    @property
    def matches(self) -> bool:
        return not self.mismatches


def compare_order(market, order: Order) -> OrderComparison:
    """Re-hash each stored version of the order and check the chain's version against it."""
    enterprise = order.enterprise
    recorded = [a for a in order.actions if a.chain_status == ChainStatus.RECORDED]
    latest = max(recorded, key=lambda a: a.version) if recorded else None
    mismatches: list[str] = []
    for action in order.actions:
        document = json.loads(action.document) if action.document else None
        if document is not None and content_hash(document) != action.content_hash:
            mismatches.append(N_("a stored version differs from its hash"))
            break
    if latest is not None and latest.document:
        current = json.loads(latest.document)
        # The stored order must still say what its latest recorded version said.
        if order.version == latest.version and canonical_json(
                order_document(order, enterprise.code)) != canonical_json(current):
            mismatches.append(N_("the stored order differs from its recorded version"))
    db = {
        "order_id": order.public_id,
        "side": order.side,
        "enterprise": enterprise.code,
        "delivery_day": order.delivery_day.isoformat(),
        "version": order.version,
        "chain_version": order.chain_version,
        "content_hash": latest.content_hash if latest else order.content_hash,
        "tx_hash": order.chain_tx_hash,
        "block_number": order.chain_block_number,
        "status": order.status,
    }
    record = market.order(uuid_to_bytes32(order.public_id))
    if record is None:
        if order.chain_version > 0:
            mismatches.append(N_("no record on chain"))
        return OrderComparison(order.public_id, db, None, mismatches)
    chain = {
        "order_id": bytes32_to_uuid(record.order_id),
        "enterprise_key": "0x" + bytes(record.enterprise_id).hex(),
        "side": record.side,
        "delivery_day": str(record.delivery_day),
        "version": record.version,
        "cancelled": record.cancelled,
        "content_hash": "0x" + bytes(record.content_hash).hex(),
        "tx_hash": record.tx_hash,
        "block_number": record.block_number,
        "account": record.account,
    }
    if latest is None or chain["content_hash"] != latest.content_hash:
        mismatches.append(N_("content hash differs"))
    if record.version + (1 if record.cancelled else 0) != order.chain_version:
        mismatches.append(N_("version differs"))
    if bytes(record.enterprise_id) != enterprise_key(enterprise.code):
        mismatches.append(N_("enterprise differs"))
    if record.delivery_day != int(order.delivery_day.strftime("%Y%m%d")):
        mismatches.append(N_("delivery day differs"))
    if record.side != order.side:
        mismatches.append(N_("side differs"))
    if order.chain_tx_hash and record.tx_hash and record.tx_hash != order.chain_tx_hash:
        mismatches.append(N_("transaction hash differs"))
    return OrderComparison(order.public_id, db, chain, mismatches)
