"""What the settlement pages and API read: imports, runs and their totals, statements, extracts.

Nothing here writes; requests, computing, publishing and disputes live in `settlement`.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..chain.market import CapacityMarket
from ..models import (
    ChainDeployment,
    Dispute,
    Enterprise,
    MeteringImport,
    Park,
    Role,
    SettlementRun,
    SettlementSettings,
    SettlementStatus,
    StatementLine,
    User,
)
from . import settlement as service
from .errors import N_, FieldProblem, NotFound, ValidationFailed

FULL, DIFFERENCE = service.FULL, service.DIFFERENCE
PROBLEMS_SHOWN = 20


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals, exactly (no float on the way)."""
    return format(Decimal(int(fen)).scaleb(-2), ".2f")


def default_park(session: Session) -> Park:
    park = session.scalar(select(Park).order_by(Park.id))
    if park is None:
        raise NotFound(N_("No such park."))
    return park


def park_by_code(session: Session, code: str | None) -> Park:
    if not code:
        return default_park(session)
    park = session.scalar(select(Park).where(Park.code == code))
    if park is None:
        raise NotFound(N_("No such park."))
    return park


def period_label(run: SettlementRun) -> str:
    """2026-11-24 for a day's run, 2026-11 for a month's."""
    if run.day is not None:
        return run.day.isoformat()
    return f"{run.period_id // 10000:04d}-{run.period_id // 100 % 100:02d}"


# --------------------------------------------------------------------------- imports


def recent_imports(session: Session, park_id: int, limit: int = 20) -> list[MeteringImport]:
    return list(session.scalars(select(MeteringImport).where(MeteringImport.park_id == park_id)
                                .order_by(MeteringImport.id.desc()).limit(limit)))


def get_import(session: Session, import_id: int) -> MeteringImport:
    record = session.get(MeteringImport, import_id)
    if record is None:
        raise NotFound(N_("No such metering import."))
    return record


def import_report(record: MeteringImport, shown: int = PROBLEMS_SHOWN) -> dict:
    """The import's problem counts by rule and its first problems."""
    report = json.loads(record.report or "{}")
    if not isinstance(report, dict):  # a refused file keeps an empty list
        report = {"counts": {}, "problems": report or []}
    problems = report.get("problems", [])
    return {"counts": dict(sorted(report.get("counts", {}).items())),
            "problems": problems[:shown], "problem_count": len(problems)}


# --------------------------------------------------------------------------- runs


def get_run(session: Session, run_id: int) -> SettlementRun:
    run = session.get(SettlementRun, run_id)
    if run is None:
        raise NotFound(N_("No such settlement run."))
    return run


def runs_by_period(session: Session, park_id: int, limit: int = 100
                   ) -> list[tuple[str, list[SettlementRun]]]:
    """Recent runs grouped by day (or month), newest first."""
    rows = session.scalars(select(SettlementRun).where(SettlementRun.park_id == park_id)
                           .order_by(SettlementRun.period_id.desc(), SettlementRun.id.desc())
                           .limit(limit))
    groups: dict[int, list[SettlementRun]] = {}
    for run in rows:
        groups.setdefault(run.period_id, []).append(run)
    return [(period_label(runs[0]), runs) for runs in groups.values()]


def run_overview(run: SettlementRun) -> dict:
    """A run's money: each account's net, the penalty pool, the congestion rent, the balance."""
    accounts: dict[str, dict] = defaultdict(lambda: {"full": 0, "difference": 0, "capacity": 0,
                                                     "deviation": 0, "penalty_pool": 0})
    by_kind: dict[str, int] = defaultdict(int)
    balance = 0
    for line in run.lines:
        entry = accounts[line.account]
        entry[line.section] += line.fen
        if line.section != FULL:
            continue
        balance += line.fen
        by_kind[line.kind] += line.fen
        key = line.kind.replace("-", "_")
        if key in entry:
            entry[key] += line.fen
    return {
        "accounts": [{"account": name, **values} for name, values in sorted(accounts.items())],
        "balance_fen": balance,
        "capacity_fen": sum(line.fen for line in run.lines
                            if line.section == FULL and line.kind == "capacity" and line.fen > 0),
        "deviation_fen": by_kind["deviation"],
        # The pool is paid back: its lines are negative, the pool the sum of what they return.
        "penalty_pool_fen": -by_kind["penalty-pool"],
        "congestion_rent_fen": -by_kind["congestion-rent"],
        "difference_fen": sum(line.fen for line in run.lines
                              if line.section == DIFFERENCE and line.fen > 0),
    }


def result_document(run: SettlementRun) -> dict | None:
    if not run.result_file:
        return None
    try:
        document = json.loads(run.result_file)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _assessments(document: dict | None) -> list[dict]:
    """The per-account, per-period records of a day's result file (a month has none)."""
    found = (document or {}).get("assessments")
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def assessment_counts(run: SettlementRun) -> dict:
    """How many account-periods were assessed, charged and exempted, and how many
    point-intervals of each quality the run rests on."""
    quality: dict[str, int] = defaultdict(int)
    assessed = charged = exempt = skipped = 0
    for item in _assessments(result_document(run)):
        for flag, count in (item.get("quality") or {}).items():
            quality[flag] += int(count)
        found = item.get("assessment")
        if found is None:
            skipped += 1
            continue
        assessed += 1
        if found.get("exempt_reason"):
            exempt += 1
        elif Decimal(found.get("charge_yuan") or "0") > 0:
            charged += 1
    return {"assessed": assessed, "not_assessed": skipped, "charged": charged,
            "exempt": exempt, "quality": dict(sorted(quality.items()))}


DEVIATION_BINS = (-20, -10, -8, -4, -2, 0, 2, 4, 8, 10, 20)


def deviation_distribution(run: SettlementRun) -> dict:
    """How far account-periods strayed from what they were allowed, in percent, binned.

    Taken from the result file's assessments; a run without them (a month's roll-up) shows
    each account's deviation charges from its statement lines instead.
    """
    values = []
    for item in _assessments(result_document(run)):
        found = item.get("assessment")
        if not found:
            continue
        allowed = Decimal(found["allowed_kva"])
        if allowed > 0:
            values.append(Decimal(found["deviation_kva"]) * 100 / allowed)
    if values:
        edges = DEVIATION_BINS
        counts = [0] * (len(edges) + 1)
        for value in values:
            counts[sum(1 for edge in edges if value >= edge)] += 1
        labels = ([f"< {edges[0]}%"]
                  + [f"{lo}…{hi}%" for lo, hi in zip(edges, edges[1:], strict=False)]
                  + [f"≥ {edges[-1]}%"])
        return {"source": "assessments", "bars": list(zip(labels, counts, strict=True)),
                "count": len(values)}
    charges: dict[str, int] = defaultdict(int)
    for line in run.lines:
        if line.section == FULL and line.kind == "deviation":
            charges[line.account] += line.fen
    bars = sorted(charges.items(), key=lambda item: (-item[1], item[0]))[:24]
    return {"source": "charges", "bars": [(account, Decimal(fen).scaleb(-2))
                                          for account, fen in bars],
            "count": len(charges)}


def run_disputes(session: Session, run: SettlementRun) -> list[Dispute]:
    return list(session.scalars(select(Dispute).where(Dispute.run_id == run.id)
                                .order_by(Dispute.id)))


# --------------------------------------------------------------------------- statements


def enterprise_statements(session: Session, enterprise: Enterprise) -> list[dict]:
    """The park's published runs, newest first, with what the enterprise pays in each."""
    runs = session.scalars(select(SettlementRun).where(
        SettlementRun.park_id == enterprise.park_id,
        SettlementRun.status == SettlementStatus.PUBLISHED)
        .order_by(SettlementRun.period_id.desc(), SettlementRun.run_number.desc())).all()
    sums: dict[tuple[int, str], int] = {}
    if runs:
        rows = session.execute(
            select(StatementLine.run_id, StatementLine.section, func.sum(StatementLine.fen),
                   func.count())
            .where(StatementLine.run_id.in_([r.id for r in runs]),
                   StatementLine.account == enterprise.code)
            .group_by(StatementLine.run_id, StatementLine.section))
        counts: dict[int, int] = defaultdict(int)
        for run_id, section, total, count in rows:
            sums[(run_id, section)] = int(total or 0)
            counts[run_id] += count
    else:
        counts = {}
    return [{"run": run, "label": period_label(run), "total_fen": sums.get((run.id, FULL), 0),
             "difference_fen": sums.get((run.id, DIFFERENCE), 0),
             "lines": counts.get(run.id, 0)} for run in runs]


def statement_of(session: Session, user: User, run_id: int, account: str | None = None) -> dict:
    """A published run's statement for the user's enterprise, or for `account` (staff).

    An enterprise asking for a run of another park, an unpublished run, or another account
    gets NotFound: it cannot tell them apart from runs that do not exist.
    """
    run = session.get(SettlementRun, run_id)
    if run is None or run.status != SettlementStatus.PUBLISHED:
        raise NotFound(N_("No such settlement run."))
    if user.role == Role.ENTERPRISE:
        enterprise = user.enterprise
        if run.park_id != enterprise.park_id or account not in (None, enterprise.code):
            raise NotFound(N_("No such settlement run."))
        account = enterprise.code
    elif not account:
        raise ValidationFailed([FieldProblem("account", N_(
            "name the account (an enterprise code or operator)"))])
    found = service.statement(session, run, account)
    found["label"] = period_label(run)
    found["enterprise"] = session.scalar(select(Enterprise).where(Enterprise.code == account))
    return found


def dispute_deadline(session: Session, run: SettlementRun) -> datetime | None:
    """Until when the run may be disputed (None: not published)."""
    if run.published_at is None:
        return None
    settings = session.get(SettlementSettings, run.park_id)
    days = settings.dispute_days if settings is not None else service.settings_for(
        session, run.park).dispute_days
    return run.published_at + timedelta(days=days)


def enterprise_disputes(session: Session, run: SettlementRun, enterprise_id: int
                        ) -> list[Dispute]:
    return list(session.scalars(select(Dispute).where(Dispute.run_id == run.id,
                                                      Dispute.enterprise_id == enterprise_id)
                                .order_by(Dispute.id)))


def statement_csv(found: dict) -> bytes:
    """A statement as CSV: one row per line, amounts in fen and in yuan, with its leaf."""
    run = found["run"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["settlement_period", "run_number", "run_kind", "account", "position",
                     "section", "kind", "period", "reference", "fen", "yuan", "leaf"])
    for item in found["lines"]:
        line = item["line"]
        writer.writerow([period_label(run), run.run_number, run.kind, line.account,
                         item["position"], item["section"], line.kind,
                         "" if line.period is None else line.period, line.reference, line.fen,
                         yuan(line.fen), item["leaf"]])
    return out.getvalue().encode()


# --------------------------------------------------------------------------- extract


EXTRACT_README = """\
Settlement run extract
======================

period {label} (period id {period_id}), run {run_number}, kind {kind}, status {status}

inputs.json   everything the run settled, canonical: a day's inputs document (accounts, trades
              and clearing prices, the deviation rule, exemptions) and the metering used,
              one record per point with every 15-minute value in W and its quality code
              (0 actual, 1 estimated, 2 substituted, 3 missing); for a month, each day's
              published run it rolls up
result.json   the canonical result file (assessments per account and period, lines)
lines.csv     every statement line with its position (Merkle leaf index) and leaf hash
anchors.json  what was anchored on chain: roots, hashes, transaction, block, contract

How to recompute a day
----------------------
1. Read inputs.json with the open `settlement` package (settlement.day.inputs_from_extract,
   which checks the metering against the digest in the inputs), settle it
   (settlement.day.settle_day, final=True unless the kind is initial) and compare the
   result's canonical bytes with result.json: they must be identical, and
   keccak256(result.json) must equal result_hash in anchors.json.
2. The statement leaves are, by position: 0 keccak256(result.json); then for each line
   keccak256(b"full:" + line bytes) for the run's own lines and keccak256(b"difference:" +
   line bytes) for its differences against the previous run, where the line bytes are the
   canonical JSON of the line (settlement.day.line_bytes). lines.csv lists them in order.
3. The statements root is a keccak Merkle tree over the leaves in that order, each pair
   hashed in sorted order (OpenZeppelin MerkleProof's rule), an odd node carried up
   unchanged. It must equal statements_root in anchors.json and the root the CapacityMarket
   contract returns for settlementRun(period_id, run_number).
4. The metering root is the same kind of tree over keccak256 of each point's metering
   record (settlement.day.metering_leaves); the rule hash is keccak256 of the rule's
   canonical bytes (settlement.day.rule_bytes).
"""


def _anchors(session: Session, run: SettlementRun) -> dict:
    deployment = session.scalar(select(ChainDeployment).where(
        ChainDeployment.contract_name == CapacityMarket.NAME).order_by(ChainDeployment.id.desc()))
    return {
        "park": run.park.code, "period_id": run.period_id, "period": period_label(run),
        "run_number": run.run_number if run.status == SettlementStatus.PUBLISHED else None,
        "kind": run.kind, "status": run.status,
        "previous_run_number": run.previous_run.run_number if run.previous_run else None,
        "rule": {"name": run.rule.name, "version": run.rule.version},
        "metering_root": run.metering_root, "rule_hash": run.rule_hash,
        "statements_root": run.statements_root, "result_hash": run.result_hash,
        "line_count": run.line_count,
        "published_at": run.published_at.isoformat() if run.published_at else None,
        "tx_hash": run.publish_tx_hash, "block_number": run.publish_block_number,
        "contract": None if deployment is None else {
            "name": deployment.contract_name, "chain_id": deployment.chain_id,
            "address": deployment.address},
    }


def run_leaves(run: SettlementRun) -> list[str]:
    """The statement leaves of a computed run, by position, as 0x-hex."""
    leaves = service.statement_leaves(run.result_file, service.lines_of(run, FULL),
                                      service.lines_of(run, DIFFERENCE))
    return ["0x" + leaf.hex() for leaf in leaves]


def extract(session: Session, run: SettlementRun) -> bytes:
    """A zip with everything needed to check a computed run independently."""
    if run.result_file is None:
        raise NotFound(N_("This run has no result yet."))
    leaves = run_leaves(run)
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    writer.writerow(["position", "section", "account", "kind", "period", "reference", "fen",
                     "leaf"])
    for row in run.lines:
        writer.writerow([row.position, row.section, row.account, row.kind,
                         "" if row.period_index is None else row.period_index, row.reference,
                         row.fen, leaves[row.position]])
    stamp = (run.computed_at or run.created_at).timetuple()[:6]
    files = {
        "README.txt": EXTRACT_README.format(label=period_label(run), period_id=run.period_id,
                                            run_number=run.run_number, kind=run.kind,
                                            status=run.status).encode(),
        "inputs.json": run.inputs_file or b"",
        "result.json": run.result_file,
        "lines.csv": lines.getvalue().encode(),
        "anchors.json": json.dumps(_anchors(session, run), indent=2, sort_keys=True).encode(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def account_assessments(run: SettlementRun, account: str) -> list[dict]:
    """One account's assessment per period from a day's result file (empty for a month)."""
    out = []
    for item in _assessments(result_document(run)):
        if item.get("account") != account:
            continue
        out.append({"period": item.get("period"), "quality": item.get("quality") or {},
                    "assessment": item.get("assessment")})
    return sorted(out, key=lambda row: row["period"])
