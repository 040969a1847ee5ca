"""The auditor's views: an order's database record beside its on-chain record, a market day's
signed audit, the staff audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from .. import auditor
from ..auditor.report import sign_file
from ..canonical import (
    bytes32_to_uuid,
    order_differs_from,
    uuid_to_bytes32,
    version_hash_broken,
)
from ..chain import OrderRecord, enterprise_key
from ..models import AuditLogEntry, ChainPath, ChainStatus, Order, Park
from . import calendar
from .errors import N_, FieldProblem, ValidationFailed


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
    if any(version_hash_broken(action) for action in order.actions):
        mismatches.append(N_("a stored version differs from its hash"))
    if latest is not None and order_differs_from(order, latest):
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
    if order.chain_path == ChainPath.BATCH:
        record = batched_record(market, order)
    else:
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
    # A cancellation keeps the content of the version it cancelled.
    content = max((a for a in recorded if a.action != "cancel"), key=lambda a: a.version,
                  default=None)
    if content is None or chain["content_hash"] != content.content_hash:
        mismatches.append(N_("content hash differs"))
    if record.actions != order.chain_version:
        mismatches.append(N_("version differs"))
    if bytes(record.enterprise_id) != enterprise_key(enterprise.code):
        mismatches.append(N_("enterprise differs"))
    if record.delivery_day != calendar.day_number(order.delivery_day):
        mismatches.append(N_("delivery day differs"))
    if record.side != order.side:
        mismatches.append(N_("side differs"))
    if order.chain_tx_hash and record.tx_hash and record.tx_hash != order.chain_tx_hash:
        mismatches.append(N_("transaction hash differs"))
    return OrderComparison(order.public_id, db, chain, mismatches)


def batched_record(market, order: Order) -> OrderRecord | None:
    """What the batches the order's actions went into say about it, as one order record.

    The contract keeps batched orders in events only; the order rules are applied to the
    items here, in chain order: new once and first, amendments after, nothing after a cancel.
    """
    chain_id = uuid_to_bytes32(order.public_id)
    batch_ids = sorted({a.chain_batch_id for a in order.actions if a.chain_batch_id},
                       key=lambda b: min(a.version for a in order.actions
                                         if a.chain_batch_id == b))
    found = None
    version, cancelled, side, content = 0, False, None, None
    for batch_id in batch_ids:
        batch = market.batch(bytes.fromhex(batch_id[2:]))
        if batch is None:
            continue
        for item_id, action, item_side, item_hash in batch.items:
            if item_id != chain_id or cancelled or (action == "new") != (version == 0):
                continue  # not this order, or void under the order rules
            if side is not None and item_side != side:
                continue
            side = item_side
            if action == "cancel":
                cancelled = True
            else:
                version += 1
                content = item_hash
            found = batch
    if found is None:
        return None
    return OrderRecord(order_id=chain_id, enterprise_id=found.enterprise_id,
                       delivery_day=found.delivery_day, side=side, version=version,
                       cancelled=cancelled, content_hash=content,
                       block_number=found.block_number, tx_hash=found.tx_hash,
                       account=found.account)


# --------------------------------------------------------------------------- market days

def parse_audit_day(session, park_code: str | None, day_text: str | None):
    """The park and day an auditor asked for; refused with the field at fault."""
    parks = session.scalars(select(Park).order_by(Park.code)).all()
    park = next((p for p in parks if p.code == park_code), None) if park_code else (
        parks[0] if len(parks) == 1 else None)
    problems = []
    if park is None:
        problems.append(FieldProblem("park", N_("Choose one of the parks.")))
    try:
        day = date.fromisoformat((day_text or "").strip())
    except ValueError:
        day = None
        problems.append(FieldProblem("day", N_("Give a day such as 2026-11-24.")))
    if problems:
        raise ValidationFailed(problems)
    return park, day


def signed_day_report(platform, session, user, park, day, key=None) -> dict:
    """The day's audit (chain, published extract, database), signed with `user`'s key."""
    report = auditor.audit_platform_day(platform, session, park, day)
    return auditor.sign_report(report, key or auditor.auditor_key(session, platform, user))


def signed_day_pdf(platform, session, user, park, day) -> tuple[bytes, str]:
    """The day's signed report as a PDF, and the PDF's own detached signature (as JSON, for
    the X-Report-Signature header)."""
    key = auditor.auditor_key(session, platform, user)
    pdf = auditor.render_pdf(signed_day_report(platform, session, user, park, day, key))
    return pdf, json.dumps(sign_file(pdf, key), separators=(",", ":"))


def recent_audit_log(session, limit: int = 200) -> list[dict]:
    """The latest staff actions, newest first."""
    rows = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id.desc())
                           .limit(max(1, min(int(limit), 1000))))
    return [{"id": row.id, "at": row.created_at.isoformat(), "action": row.action,
             "user": row.user.username if row.user else None, "target": row.target,
             "detail": row.detail} for row in rows]
