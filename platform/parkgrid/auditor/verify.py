"""The auditor's checks of one market day.

`check_published` needs only the chain history (`history.read_day`) and the published
extract: every on-chain order matched to its published document, each published file matched
to its on-chain root or hash, the clearing recomputed from the on-chain orders, each
settlement run recomputed from its published inputs and compared line by line, each statement
line proved against its on-chain root. `check_database` adds what only the platform can show:
each database record matched to its on-chain record, and the stored meter readings matched to
what was settled. Every mismatch becomes a finding naming what differs; the counts say what
was checked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from settlement.day import (
    differences,
    inputs_from_extract,
    metering_leaves,
    rule_bytes,
    settle_day,
)
from settlement.errors import SettlementError
from settlement.metering import ACTUAL
from settlement.run import Line

from ..canonical import (
    bytes32_to_uuid,
    canonical_json,
    merkle_proofs,
    merkle_root,
    order_differs_from,
    uuid_to_bytes32,
    verify_merkle_proof,
    version_hash_broken,
)
from ..chain import enterprise_key
from ..models import (
    ChainStatus,
    ClearingRun,
    ClearingStatus,
    Enterprise,
    Order,
    Park,
    SettlementRun,
    SettlementStatus,
)
from ..services import calendar, clearing, metering
from ..services.errors import ServiceError
from ..services.settlement import statement_leaves
from .extract import DayExtract
from .history import ChainDay

LISTED = 25  # differences listed one by one per check; the rest are counted
CLEARING_TIME_LIMIT_S = 60.0  # the platform's own limit, so a recomputation is comparable


@dataclass(frozen=True)
class Finding:
    area: str  # "orders", "clearing", "settlement", "metering", "files"
    subject: str  # what it is about: an order id, "run 2", "run 1 line 17", a file name
    detail: str  # what differs

    def document(self) -> dict:
        return {"area": self.area, "subject": self.subject, "detail": self.detail}


@dataclass
class Checks:
    findings: list[Finding] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def add(self, area: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(area, subject, detail))

    def listed(self, area: str, subject: str, details: list[str]) -> None:
        for detail in details[:LISTED]:
            self.add(area, subject, detail)
        if len(details) > LISTED:
            self.add(area, subject, f"and {len(details) - LISTED} more differences")


def _hex(value: bytes | None) -> str:
    return "-" if value is None else "0x" + bytes(value).hex()


# ------------------------------------------------------------------ from the chain and extract

def check_published(history: ChainDay, extract: DayExtract) -> Checks:
    checks = Checks()
    for problem in extract.problems:
        checks.add("files", problem.split(":")[0], problem)
    if extract.day != history.day:
        checks.add("files", "manifest.json",
                   f"the extract is of {extract.day}, the chain history of {history.day}")
    for item in history.void_items:
        checks.add("orders", "batch item", item)
    documents = _check_orders(history, extract, checks)
    period_minutes = int(extract.manifest.get("period_minutes") or 60)
    published_run = _check_clearing(history, extract, documents, period_minutes, checks)
    _check_settlement(history, extract, published_run, checks)
    return checks


def _check_orders(history: ChainDay, extract: DayExtract, checks: Checks) -> dict[bytes, dict]:
    documents = {keccak(canonical_json(doc)): doc for doc in extract.orders}
    cancelled = {doc.get("order") for doc in extract.orders if doc.get("status") == "cancelled"}
    used: set[bytes] = set()
    checks.counts["orders_on_chain"] = len(history.orders)
    for order_id, order in sorted(history.orders.items()):
        for action in order.actions:
            checks.counts["order_actions_on_chain"] += 1
            if action.content_hash is None:
                continue
            doc = documents.get(action.content_hash)
            if doc is None:
                checks.add("orders", order_id, f"version {action.version}: no published "
                           f"document has the on-chain content hash {_hex(action.content_hash)}")
                continue
            used.add(action.content_hash)
            wrong = [name for name, ok in (
                ("order id", doc.get("order") == order_id),
                ("side", doc.get("side") == order.side),
                ("delivery day", doc.get("delivery_day") == history.day.isoformat()),
                ("enterprise", enterprise_key(str(doc.get("enterprise"))) == order.enterprise_key),
                ("version", doc.get("version") == action.version)) if not ok]
            if wrong:
                checks.add("orders", order_id, f"version {action.version}: the published "
                           f"document's {', '.join(wrong)} differ from the chain")
            else:
                checks.counts["order_documents_matched"] += 1
        if order_id in cancelled and not order.cancelled:
            checks.add("orders", order_id, "published as cancelled, not cancelled on chain")
    for content, doc in documents.items():
        if content not in used and doc.get("status") != "cancelled":
            checks.add("orders", str(doc.get("order")), f"published document of version "
                       f"{doc.get('version')} is not on chain")
    return documents


def _check_clearing(history: ChainDay, extract: DayExtract, documents: dict[bytes, dict],
                    period_minutes: int, checks: Checks):
    """Each run: its file against its root, its trades against its events, and the day
    cleared again. Returns the result of the day's valid published run, if any."""
    sides = {order_id: o.side for order_id, o in history.orders.items()}
    valid = None
    for run in history.runs:
        subject = f"run {run.run_number}"
        checks.counts["clearing_runs"] += 1
        files = extract.clearing.get(run.run_number)
        if not run.published:
            continue
        if files is None or files.result is None:
            checks.add("clearing", subject, "published on chain, its result file is not in "
                       "the extract")
            continue
        try:
            result = clearing.DayResult.from_canonical_bytes(files.result)
        except (ValueError, KeyError, TypeError) as exc:
            checks.add("clearing", subject, f"the published result file is unreadable: {exc}")
            continue
        unknown = sorted(set(result.accepted) - set(sides))
        if unknown:
            checks.add("clearing", subject, f"the result trades orders not on chain: "
                       f"{', '.join(unknown[:LISTED])}")
        lines = clearing.trade_lines(period_minutes, result,
                                     {k: sides[k] for k in result.accepted if k in sides})
        root = merkle_root(clearing.result_leaves(files.result, lines, files.input))
        if root != run.result_root:
            checks.add("clearing", subject, f"the published result and input files give root "
                       f"{_hex(root)}, the chain holds {_hex(run.result_root)}")
        else:
            checks.counts["clearing_files_matched"] += 1
        _compare_trades(run, lines, checks)
        if not run.voided:
            valid = result
        if files.input is None:
            checks.add("clearing", subject, "its input file is not in the extract: the "
                       "clearing cannot be recomputed")
            continue
        _recompute_clearing(history, documents, files, result, subject, checks)
    for number in sorted(set(extract.clearing) - {r.run_number for r in history.runs}):
        checks.add("clearing", f"run {number}", "in the extract, not on chain")
    return valid


def _compare_trades(run, lines, checks: Checks) -> None:
    expected = [(uuid_to_bytes32(x.order_public_id), x.quantity_tenths_kvah, x.amount_fen,
                 x.leaf()) for x in lines]
    found = [(t.order_id, t.quantity, t.amount_fen, t.detail_hash) for t in run.trades]
    checks.counts["trades_on_chain"] += len(found)
    if run.trade_count != len(found):
        checks.add("clearing", f"run {run.run_number}", f"the chain counts {run.trade_count} "
                   f"trades, its events hold {len(found)}")
    if expected == found:
        checks.counts["trades_matched"] += len(found)
        return
    want, have = set(expected), set(found)
    details = [f"trade of order {bytes32_to_uuid(e[0])} in the result file "
               f"({e[1]} × 0.1 kVA·h, {e[2]} fen) is not on chain" for e in expected
               if e not in have]
    details += [f"on-chain trade of order {bytes32_to_uuid(f[0])} ({f[1]} × 0.1 kVA·h, "
                f"{f[2]} fen) is not in the result file" for f in found if f not in want]
    checks.listed("clearing", f"run {run.run_number}",
                  details or ["trades are in another order"])


def _recompute_clearing(history, documents, files, result, subject, checks) -> None:
    try:
        inputs = json.loads(files.input)
        orders = []
        for order in history.book():
            doc = documents.get(order.content_hash)
            if doc is None:
                checks.add("clearing", subject, "cannot clear again: the document of order "
                           f"{order.order_id} is not published")
                return
            orders.append(clearing.book_order(doc, order.first_block))
        instance = clearing.instance_from_input(inputs, orders)
        again = clearing.clear_day(instance, inputs["scope"], inputs["groups"],
                                   time_limit_s=CLEARING_TIME_LIMIT_S)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        checks.add("clearing", subject, f"cannot clear again from the published input: {exc}")
        return
    checks.counts["clearings_recomputed"] += 1
    if again.canonical_bytes() == files.result:
        checks.counts["clearings_identical"] += 1
        return
    ours, theirs = again.accepted, result.accepted
    details = [f"order {k}: published {dict(theirs.get(k, {}))}, recomputed "
               f"{dict(ours.get(k, {}))} kVA by period"
               for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    checks.listed("clearing", subject, details or [
        "clearing the on-chain orders again gives another result file (same trades, other "
        "prices or figures)"])


def _check_settlement(history: ChainDay, extract: DayExtract, clearing_result,
                      checks: Checks) -> None:
    previous_full: list[Line] | None = None
    for event in history.settlements:
        subject = f"settlement run {event.run_number}"
        checks.counts["settlement_runs"] += 1
        files = extract.settlement.get(event.run_number)
        if files is None or files.result is None:
            checks.add("settlement", subject, "published on chain, its files are not in the "
                       "extract")
            previous_full = None
            continue
        if keccak(files.result) != event.result_hash:
            checks.add("settlement", subject, "the published result file does not match its "
                       f"on-chain hash {_hex(event.result_hash)}")
        else:
            checks.counts["settlement_files_matched"] += 1
        rows = files.line_rows()
        published = [Line(r["account"], r["kind"], r["period"], r["reference"], r["fen"])
                     for r in rows]
        sections = [r["section"] for r in rows]
        full = [x for x, s in zip(published, sections, strict=True) if s == "full"]
        diff = [x for x, s in zip(published, sections, strict=True) if s == "difference"]
        _prove_lines(event, files.result, full, diff, rows, checks)
        try:
            inputs = inputs_from_extract(files.inputs or b"")
        except (SettlementError, ValueError, KeyError, TypeError) as exc:
            checks.add("settlement", subject, f"the published inputs are unreadable: {exc}")
            previous_full = full
            continue
        meter_root = merkle_root([keccak(x) for x in metering_leaves(inputs.meter)])
        if meter_root != event.metering_root:
            checks.add("metering", subject, f"the published metering data give root "
                       f"{_hex(meter_root)}, the chain holds {_hex(event.metering_root)}")
        if keccak(rule_bytes(inputs.rule)) != event.rule_hash:
            checks.add("settlement", subject, "the published rule does not match the on-chain "
                       "rule hash")
        if clearing_result is not None:
            _compare_settled_trades(inputs, clearing_result, subject, checks)
        again = settle_day(inputs, final=event.kind != "initial")
        lines = list(again.lines)
        if again.canonical_bytes() != files.result:
            checks.add("settlement", subject, "settling the published inputs again gives another "
                       "result file")
        expected = [("full", x) for x in lines] + (
            [("difference", x) for x in differences(previous_full, lines)]
            if previous_full is not None else [])
        _compare_lines(subject, expected, list(zip(sections, published, strict=True)), checks)
        checks.counts["settlements_recomputed"] += 1
        previous_full = lines


def _prove_lines(event, result_file: bytes, full, diff, rows, checks: Checks) -> None:
    subject = f"settlement run {event.run_number}"
    leaves = statement_leaves(result_file, full, diff)
    if len(full) + len(diff) != event.line_count:
        checks.add("settlement", subject, f"{len(full) + len(diff)} published lines, the chain "
                   f"counts {event.line_count}")
    if [r["position"] for r in rows] != list(range(1, len(rows) + 1)):
        checks.add("settlement", subject, "line positions are not 1, 2, 3, ...")
    failed = []
    for position, proof in enumerate(merkle_proofs(leaves)):
        if position == 0:
            continue
        if verify_merkle_proof(leaves[position], proof, event.statements_root):
            checks.counts["statement_lines_proved"] += 1
        else:
            row = rows[position - 1]
            failed.append(f"line {position} ({row['account']} {row['kind']} {row['fen']} fen) "
                          "is not proved by the on-chain statements root")
    checks.counts["statement_lines"] += len(rows)
    checks.listed("settlement", subject, failed)


def _compare_lines(subject: str, expected: list[tuple[str, Line]],
                   published: list[tuple[str, Line]], checks: Checks) -> None:
    details = []
    for position, (want, have) in enumerate(zip(expected, published, strict=False), start=1):
        if want != have:
            (ws, w), (hs, h) = want, have
            if (ws, w.account, w.kind, w.period, w.reference) == (hs, h.account, h.kind,
                                                                  h.period, h.reference):
                details.append(f"line {position} ({w.account} {w.kind}): published {h.fen} "
                               f"fen, recomputed {w.fen} fen")
            else:
                details.append(f"line {position}: published {hs} {h}, recomputed {ws} {w}")
    if len(expected) != len(published):
        details.append(f"{len(published)} lines published, {len(expected)} recomputed")
    if not details:
        checks.counts["statement_lines_recomputed"] += len(published)
    checks.listed("settlement", subject, details)


def _allocated(result) -> set[tuple[str, int, Decimal, Decimal]]:
    """(order, period, kVA, price) of every quantity a day's clearing result accepted."""
    return {(order_id, int(period), qty.normalize(), price.normalize())
            for order_id in result.accepted
            for period, qty, price in clearing.result_allocations(result, order_id) if qty > 0}


def _compare_settled_trades(inputs, result, subject: str, checks: Checks) -> None:
    settled = {(t.order_id, t.period, t.kva.normalize(), t.price.normalize())
               for t in inputs.trades}
    if _allocated(result) != settled:
        checks.add("settlement", subject, "the trades settled differ from the published "
                   "clearing")


# ------------------------------------------------------------------ the platform's database

def check_database(session: Session, park: Park, history: ChainDay,
                   extract: DayExtract) -> Checks:
    checks = Checks()
    _check_db_orders(session, park, history, checks)
    _check_db_runs(session, park, history, checks)
    _check_db_metering(session, park, extract, checks)
    return checks


def _check_db_orders(session: Session, park: Park, history: ChainDay, checks: Checks) -> None:
    rows = session.scalars(select(Order).join(Enterprise).where(
        Enterprise.park_id == park.id, Order.delivery_day == history.day)
        .options(selectinload(Order.actions), selectinload(Order.periods),
                 joinedload(Order.enterprise))).all()
    seen = set()
    for order in rows:
        recorded = sorted((a for a in order.actions if a.chain_status == ChainStatus.RECORDED),
                          key=lambda a: a.version)
        if not recorded:
            continue
        checks.counts["database_orders"] += 1
        seen.add(order.public_id)
        problems = [f"stored version {action.version} differs from its hash"
                    for action in recorded if version_hash_broken(action)]
        if order_differs_from(order, recorded[-1]):
            problems.append("the stored order differs from its recorded version "
                            f"{recorded[-1].version}")
        chain = history.orders.get(order.public_id)
        if chain is None:
            problems.append("recorded in the database, not on chain")
        else:
            content = [a for a in recorded if a.action != "cancel"]
            if content and _hex(chain.content_hash) != content[-1].content_hash:
                problems.append(f"content hash: database {content[-1].content_hash}, chain "
                                f"{_hex(chain.content_hash)}")
            if chain.version + (1 if chain.cancelled else 0) != order.chain_version:
                problems.append(f"actions: database {order.chain_version}, chain "
                                f"{chain.version + (1 if chain.cancelled else 0)}")
            if chain.side != order.side:
                problems.append(f"side: database {order.side}, chain {chain.side}")
            if chain.enterprise_key != enterprise_key(order.enterprise.code):
                problems.append("enterprise differs")
        for problem in problems:
            checks.add("orders", order.public_id, problem)
        if not problems:
            checks.counts["database_orders_matched"] += 1
    for order_id in sorted(set(history.orders) - seen):
        checks.add("orders", order_id, "on chain, not in the database")


def _check_db_runs(session: Session, park: Park, history: ChainDay, checks: Checks) -> None:
    runs = {r.run_number: r for r in session.scalars(select(ClearingRun).where(
        ClearingRun.park_id == park.id, ClearingRun.delivery_day == history.day))}
    for chain in history.runs:
        row = runs.get(chain.run_number)
        subject = f"run {chain.run_number}"
        if chain.published and (row is None or row.status not in (ClearingStatus.PUBLISHED,
                                                                  ClearingStatus.VOIDED)):
            checks.add("clearing", subject, "published on chain, not in the database")
            continue
        if row is None:
            continue
        if row.result_root != _hex(chain.result_root) and chain.published:
            checks.add("clearing", subject, f"result root: database {row.result_root}, chain "
                       f"{_hex(chain.result_root)}")
        if (row.status == ClearingStatus.VOIDED) != chain.voided:
            checks.add("clearing", subject, f"database says {row.status}, chain says "
                       f"{'voided' if chain.voided else 'not voided'}")
        allocations = {(a.order.public_id, a.period_index, Decimal(a.quantity_kva).normalize(),
                        Decimal(a.price).normalize()) for a in row.allocations}
        expected = _allocated(clearing.DayResult.from_canonical_bytes(row.result_file))
        if allocations != expected:
            checks.add("clearing", subject, f"{len(allocations ^ expected)} stored allocations "
                       "differ from the run's result file")
        checks.counts["database_runs_matched"] += 1
    settled = {r.run_number: r for r in session.scalars(select(SettlementRun).where(
        SettlementRun.park_id == park.id,
        SettlementRun.period_id == calendar.day_number(history.day),
        SettlementRun.status == SettlementStatus.PUBLISHED))}
    for event in history.settlements:
        row = settled.get(event.run_number)
        subject = f"settlement run {event.run_number}"
        if row is None:
            checks.add("settlement", subject, "published on chain, not in the database")
            continue
        wrong = [name for name, mine, theirs in (
            ("metering root", row.metering_root, event.metering_root),
            ("rule hash", row.rule_hash, event.rule_hash),
            ("statements root", row.statements_root, event.statements_root),
            ("result hash", row.result_hash, event.result_hash)) if mine != _hex(theirs)]
        if row.line_count != event.line_count:
            wrong.append("line count")
        if wrong:
            checks.add("settlement", subject, f"database and chain differ in {', '.join(wrong)}")
        else:
            checks.counts["database_settlement_runs_matched"] += 1


def _check_db_metering(session: Session, park: Park, extract: DayExtract,
                       checks: Checks) -> None:
    """The stored readings against those the day's last settlement run settled: each interval
    that was settled as read (actual) must still read the same."""
    if not extract.settlement:
        return
    last = extract.settlement[max(extract.settlement)]
    try:
        inputs = inputs_from_extract(last.inputs or b"")
    except (SettlementError, ValueError, KeyError, TypeError):
        return  # reported by check_published
    settled = inputs.meter
    try:
        stored = metering.load_days(session, park, [settled.day], settled.points)[settled.day]
    except (SettlementError, ServiceError) as exc:
        checks.add("metering", settled.day.isoformat(), f"the stored readings are unreadable: "
                   f"{exc}")
        return
    details = []
    for row, point in enumerate(settled.points):
        for interval in range(settled.watts.shape[1]):
            if settled.quality[row, interval] != ACTUAL:
                continue
            checks.counts["meter_intervals_checked"] += 1
            if stored.quality[row, interval] != ACTUAL or \
                    stored.watts[row, interval] != settled.watts[row, interval]:
                details.append(f"{point} interval {interval}: stored {stored.watts[row, interval]}"
                               f" W, settled {settled.watts[row, interval]} W")
    checks.listed("metering", f"settlement run {max(extract.settlement)}", details)
