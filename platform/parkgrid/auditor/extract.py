"""The published extract of a market day: every file an auditor needs besides the chain.

A zip holding:

- `manifest.json`: park, day, time zone, period length, the contract (chain id, address,
  deployment block) and the SHA-256 of every other file;
- `orders.json`: the canonical document of every order version recorded on chain (the chain
  holds their hashes);
- `clearing/run-N/input.json` and `result.json` for each clearing run published on chain:
  the network, limits, base loads and rules the run was cleared with, and its result file;
- `settlement/run-N/inputs.json`, `result.json` and `lines.csv` for each settlement run of the
  day published on chain (N is the chain's run number).

`build_extract` writes it from the database; `read_extract` reads it back for the auditor.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..models import (
    ChainDeployment,
    ChainStatus,
    ClearingRun,
    ClearingStatus,
    Enterprise,
    Order,
    Park,
    SettlementRun,
    SettlementStatus,
)
from ..services import calendar

EXTRACT_TYPE = "parkgrid-day-extract"
LINE_FIELDS = ("position", "section", "account", "kind", "period", "reference", "fen")
_RUN_FILE = re.compile(r"^(clearing|settlement)/run-(\d+)/([a-z]+\.(?:json|csv))$")


class ExtractError(ValueError):
    """The file is not a day extract, or one of its files is malformed."""


@dataclass
class ClearingFiles:
    input: bytes | None = None
    result: bytes | None = None


@dataclass
class SettlementFiles:
    inputs: bytes | None = None
    result: bytes | None = None
    lines: bytes | None = None

    def line_rows(self) -> list[dict]:
        """lines.csv as dicts (position and fen as integers, period as an integer or None)."""
        rows = []
        for row in csv.DictReader(io.StringIO((self.lines or b"").decode())):
            rows.append({"position": int(row["position"]), "section": row["section"],
                         "account": row["account"], "kind": row["kind"],
                         "period": int(row["period"]) if row["period"] else None,
                         "reference": row["reference"], "fen": int(row["fen"])})
        return rows


@dataclass
class DayExtract:
    manifest: dict
    orders: list[dict]
    clearing: dict[int, ClearingFiles] = field(default_factory=dict)
    settlement: dict[int, SettlementFiles] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # files not matching the manifest

    @property
    def day(self) -> date:
        return date.fromisoformat(self.manifest["day"])


def build_extract(session: Session, park: Park, day: date) -> bytes:
    """The day's extract as the platform publishes it, from the database."""
    files: dict[str, bytes] = {}
    documents = []
    orders = session.scalars(select(Order).join(Enterprise)
                             .where(Enterprise.park_id == park.id, Order.delivery_day == day)
                             .options(selectinload(Order.actions))
                             .order_by(Order.public_id))
    for order in orders:
        for action in sorted(order.actions, key=lambda a: a.version):
            if action.chain_status == ChainStatus.RECORDED and action.document:
                documents.append(json.loads(action.document))
    files["orders.json"] = _json(documents)
    for run in session.scalars(select(ClearingRun).where(
            ClearingRun.park_id == park.id, ClearingRun.delivery_day == day,
            ClearingRun.status.in_((ClearingStatus.PUBLISHED, ClearingStatus.VOIDED)))
            .order_by(ClearingRun.run_number)):
        if run.input_file is not None:
            files[f"clearing/run-{run.run_number}/input.json"] = run.input_file
        files[f"clearing/run-{run.run_number}/result.json"] = run.result_file
    for run in session.scalars(select(SettlementRun).where(
            SettlementRun.park_id == park.id,
            SettlementRun.period_id == calendar.day_number(day),
            SettlementRun.status == SettlementStatus.PUBLISHED)
            .order_by(SettlementRun.run_number)):
        base = f"settlement/run-{run.run_number}/"
        files[base + "inputs.json"] = run.inputs_file or b""
        files[base + "result.json"] = run.result_file
        files[base + "lines.csv"] = lines_csv(
            (row.position, row.section, row.account, row.kind, row.period_index,
             row.reference, row.fen) for row in sorted(run.lines, key=lambda r: r.position))
    deployment = session.scalar(select(ChainDeployment).where(
        ChainDeployment.contract_name == "CapacityMarket").order_by(ChainDeployment.id.desc()))
    contract = None if deployment is None else {
        "chain_id": deployment.chain_id, "address": deployment.address,
        "deployment_block": deployment.block_number}
    return pack_extract(park=park.code, day=day, timezone=park.timezone,
                        period_minutes=park.period_minutes, contract=contract, files=files)


def pack_extract(*, park: str, day: date, timezone: str, period_minutes: int,
                 contract: dict | None, files: dict[str, bytes]) -> bytes:
    """The extract zip of `files`, with its manifest."""
    manifest = {
        "type": EXTRACT_TYPE, "version": 1, "park": park, "day": day.isoformat(),
        "timezone": timezone, "period_minutes": period_minutes, "contract": contract,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [("manifest.json", _json(manifest)), *sorted(files.items())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def lines_csv(rows) -> bytes:
    """Statement lines as published: (position, section, account, kind, period or None,
    reference, fen) in position order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LINE_FIELDS)
    for position, section, account, kind, period, reference, fen in rows:
        writer.writerow([position, section, account, kind, "" if period is None else period,
                         reference, fen])
    return out.getvalue().encode()


def read_extract(data: bytes) -> DayExtract:
    """Read an extract; files that differ from the manifest's hashes are listed as problems
    (the auditor reports them), a file that is not an extract at all is refused."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ExtractError(f"not a day extract: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("type") != EXTRACT_TYPE:
        raise ExtractError("not a day extract: its manifest is of another type")
    listed = manifest.get("files") or {}
    problems = []
    contents: dict[str, bytes] = {}
    for name in sorted(names - {"manifest.json"}):
        contents[name] = archive.read(name)
        if name not in listed:
            problems.append(f"{name}: not listed in the manifest")
        elif hashlib.sha256(contents[name]).hexdigest() != listed[name]:
            problems.append(f"{name}: differs from the hash in the manifest")
    problems += [f"{name}: listed in the manifest but missing" for name in listed
                 if name not in names]
    try:
        orders = json.loads(contents.get("orders.json", b"[]"))
    except ValueError as exc:
        raise ExtractError(f"orders.json is not JSON: {exc}") from exc
    extract = DayExtract(manifest=manifest, orders=orders, problems=problems)
    for name, blob in contents.items():
        match = _RUN_FILE.match(name)
        if not match:
            continue
        area, number, leaf = match.group(1), int(match.group(2)), match.group(3)
        files = (extract.clearing.setdefault(number, ClearingFiles()) if area == "clearing"
                 else extract.settlement.setdefault(number, SettlementFiles()))
        attribute = leaf.split(".")[0]
        if attribute in vars(files):
            setattr(files, attribute, blob)
        else:
            problems.append(f"{name}: not a file of an extract")
    return extract


def _json(value) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).encode()
