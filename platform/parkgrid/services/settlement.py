"""Settlement runs: gather a day's inputs, settle them with the core, store and anchor the result.

A run is requested (one unpublished run per day or month at a time), computed by a task with
its progress recorded, and published: its result file's hash, the Merkle root of the metering
data used, the hash of the deviation-rule version and the Merkle root of its statement lines
go on chain under the run's number. Runs after the first also carry their differences against
the previous published run: a re-run pays only those.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

from eth_utils import keccak
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from settlement.day import (
    Account,
    DayInputs,
    IncompleteMeteringError,
    differences,
    extract_bytes,
    line_bytes,
    metering_leaves,
    roll_up,
    rule_bytes,
    rule_from_document,
    settle_day,
)
from settlement.deviation import DeviationRule, Exemption
from settlement.estimation import estimate_day
from settlement.metering import MeteringRules
from settlement.presets import PRESETS
from settlement.run import Line, Trade

from ..canonical import canonical_json, merkle_proof, merkle_root
from ..chain import ChainRevertError
from ..crypto import load_local_account
from ..models import (
    ChainAccount,
    ClearingAllocation,
    ClearingRun,
    ClearingStatus,
    DeviationExemption,
    DeviationRuleVersion,
    Dispute,
    DisputeStatus,
    Enterprise,
    Order,
    Park,
    Role,
    SettlementKind,
    SettlementRun,
    SettlementSettings,
    SettlementStatus,
    StatementLine,
    User,
)
from . import calendar, metering
from .errors import N_, Conflict, FieldProblem, Forbidden, NotFound, ValidationFailed
from .orders import ensure_nothing_in_flight

DEFAULT_RULE = "sichuan-2018"
METERING_RULES = MeteringRules()
# How far back like days are taken from (estimation's own look-back window).
HISTORY_DAYS = 7 * METERING_RULES.like_day_weeks
FULL, DIFFERENCE = "full", "difference"
UNFINISHED = (SettlementStatus.QUEUED, SettlementStatus.RUNNING, SettlementStatus.COMPUTED)
Progress = Callable[[int], None]


# --------------------------------------------------------------------------- rules


def rule_version(session: Session, rule: DeviationRule) -> DeviationRuleVersion:
    """The stored version of `rule`; a rule version's content never changes once stored."""
    body = rule_bytes(rule)
    row = session.scalar(select(DeviationRuleVersion).where(
        DeviationRuleVersion.name == rule.name, DeviationRuleVersion.version == rule.version))
    if row is None:
        row = DeviationRuleVersion(name=rule.name, version=rule.version, body=body,
                                   rule_hash="0x" + keccak(body).hex(), source=rule.source)
        session.add(row)
        session.flush()
    elif row.body != body:
        raise Conflict(N_("Rule %(name)s version %(version)s is already stored with other "
                          "content; give the changed rule a new version."),
                       name=rule.name, version=rule.version)
    return row


def stored_rule(row: DeviationRuleVersion) -> DeviationRule:
    """The rule a stored version holds, checked against its stored bytes and hash."""
    rule = rule_from_document(json.loads(row.body))
    if rule_bytes(rule) != row.body or "0x" + keccak(row.body).hex() != row.rule_hash:
        raise Conflict(N_("The stored rule %(name)s version %(version)s does not match its "
                          "hash."), name=row.name, version=row.version)
    return rule


def rule_from_file(data: bytes) -> DeviationRule:
    """A rule written as JSON in the form `settlement.day.rule_document` gives (a preset's
    document is a starting point); refused with the reason if it is not a valid rule."""
    try:
        return rule_from_document(json.loads(data))
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise ValidationFailed([FieldProblem("rule", N_("not a valid rule document: "
                                                        "%(error)s"), {"error": repr(exc)})]
                               ) from exc


def settings_for(session: Session, park: Park) -> SettlementSettings:
    """The park's settlement settings, created with the default preset on first use."""
    settings = session.get(SettlementSettings, park.id)
    if settings is None:
        settings = SettlementSettings(park_id=park.id,
                                      rule=rule_version(session, PRESETS[DEFAULT_RULE]))
        session.add(settings)
        session.flush()
    return settings


def configure(platform, park_id: int, *, rule_name: str | None = None,
              rule: DeviationRule | None = None,
              dispute_days: int | None = None, materiality_fen: int | None = None,
              reference_price: Decimal | None = None) -> dict:
    """Choose the park's deviation rule, dispute window (days), materiality (fen) and the
    reference price (yuan/kVA·h) penalties use in periods without a clearing price."""
    problems = []
    if rule_name is not None and rule_name not in PRESETS:
        problems.append(FieldProblem("rule", N_("unknown rule %(name)s; known: %(known)s"),
                                     {"name": rule_name, "known": ", ".join(sorted(PRESETS))}))
    for field, value in (("dispute_days", dispute_days), ("materiality_fen", materiality_fen)):
        if value is not None and value < 0:
            problems.append(FieldProblem(field, N_("must not be negative")))
    if reference_price is not None and not (
            Decimal(0) < reference_price <= Decimal("99999999.9999")
            and reference_price == reference_price.quantize(Decimal("0.0001"))):
        problems.append(FieldProblem("reference_price", N_(
            "must be a positive price with at most four decimals")))
    if problems:
        raise ValidationFailed(problems)
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id)
        settings = settings_for(session, park)
        if reference_price is not None:
            settings.reference_price = reference_price
        if rule_name is not None or rule is not None:
            settings.rule = rule_version(session, rule or PRESETS[rule_name])
        if dispute_days is not None:
            settings.dispute_days = dispute_days
        if materiality_fen is not None:
            settings.materiality_fen = materiality_fen
        session.flush()
        return {"rule": f"{settings.rule.name} v{settings.rule.version}",
                "rule_hash": settings.rule.rule_hash, "dispute_days": settings.dispute_days,
                "materiality_fen": settings.materiality_fen,
                "reference_price": str(settings.reference_price)}


def add_exemption(platform, park_id: int, enterprise_code: str, day: date, period: int,
                  reason: str, evidence: str, *, user_id: int | None = None) -> int:
    """Excuse one enterprise's period from deviation charges (a documented outage, force
    majeure), with the evidence recorded; runs made afterwards apply it."""
    problems = []
    if not reason.strip():
        problems.append(FieldProblem("reason", N_("say why the period is exempt")))
    if not evidence.strip():
        problems.append(FieldProblem("evidence", N_("an exemption needs its evidence (a "
                                                    "document, a dispatch log entry)")))
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id)
        enterprise = session.scalar(select(Enterprise).where(
            Enterprise.park_id == park_id, Enterprise.code == enterprise_code))
        if enterprise is None:
            problems.append(FieldProblem("enterprise", N_("no enterprise %(code)s in this "
                                                          "park"), {"code": enterprise_code}))
        if not 0 <= period < calendar.periods_per_day(park):
            problems.append(FieldProblem("period", N_("a period of the day is 0 to %(last)s"),
                                         {"last": calendar.periods_per_day(park) - 1}))
        if problems:
            raise ValidationFailed(problems)
        if session.scalar(select(DeviationExemption).where(
                DeviationExemption.enterprise_id == enterprise.id,
                DeviationExemption.day == day, DeviationExemption.period_index == period)):
            raise Conflict(N_("That period is already exempt."))
        exemption = DeviationExemption(enterprise_id=enterprise.id, day=day,
                                       period_index=period, reason=reason.strip(),
                                       evidence=evidence.strip(), created_by_id=user_id)
        session.add(exemption)
        session.flush()
        return exemption.id


# --------------------------------------------------------------------------- requests


def request_run(platform, park_id: int, kind: str, *, day: date | None = None,
                month: date | None = None, user_id: int | None = None, reason: str = "",
                dispute_id: int | None = None, now: datetime | None = None) -> int:
    """Queue a settlement run after checking the run-type rules; returns the run id."""
    now = now or calendar.utcnow()
    if kind not in SettlementKind.ALL:
        raise ValidationFailed([FieldProblem("kind", N_("unknown run type %(kind)s"),
                                             {"kind": kind})])
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id, with_for_update=True)
        if park is None:
            raise NotFound(N_("No such park."))
        settings = settings_for(session, park)
        if kind == SettlementKind.MONTHLY:
            if month is None:
                raise ValidationFailed([FieldProblem("month", N_("a month is required"))])
            month = month.replace(day=1)
            if calendar.park_today(park, now) < calendar.next_month(month):
                raise Conflict(N_("%(month)s has not ended yet."), month=month.strftime("%Y-%m"))
            period_id, run_day = calendar.month_number(month), None
        else:
            if day is None:
                raise ValidationFailed([FieldProblem("day", N_("a delivery day is required"))])
            if calendar.park_today(park, now) <= day:
                raise Conflict(N_("%(day)s is not over yet; it can be settled from the next "
                                  "day on."), day=day.isoformat())
            period_id, run_day = calendar.day_number(day), day
        runs = session.scalars(select(SettlementRun).where(
            SettlementRun.park_id == park_id, SettlementRun.period_id == period_id)).all()
        if any(r.status in UNFINISHED for r in runs):
            raise Conflict(N_("A settlement run of this day is already under way; wait for it "
                              "to finish."))
        published = [r for r in runs if r.status == SettlementStatus.PUBLISHED]
        kinds = {r.kind for r in published}
        if kind == SettlementKind.INITIAL and published:
            raise Conflict(N_("This day already has a published run; make a final run or a "
                              "re-run instead."))
        if kind == SettlementKind.FINAL and SettlementKind.FINAL in kinds:
            raise Conflict(N_("This day already has its final run; corrections and disputes "
                              "go into re-runs."))
        if kind == SettlementKind.RERUN:
            if SettlementKind.FINAL not in kinds:
                raise Conflict(N_("A re-run needs a published final run first."))
            if not reason.strip() and dispute_id is None:
                raise ValidationFailed([FieldProblem("reason", N_(
                    "say why the day is run again (a correction or a dispute)"))])
        run = SettlementRun(park_id=park_id, period_id=period_id, day=run_day, kind=kind,
                            status=SettlementStatus.QUEUED, reason=reason.strip(),
                            dispute_id=dispute_id, rule_id=settings.rule_id,
                            created_by_id=user_id)
        session.add(run)
        session.flush()
        return run.id


# --------------------------------------------------------------------------- computing


def _accounts(session: Session, park: Park) -> tuple[Account, ...]:
    enterprises = session.scalars(select(Enterprise).where(Enterprise.park_id == park.id)
                                  .options(selectinload(Enterprise.metering_points))
                                  .order_by(Enterprise.code)).all()
    return tuple(Account(e.code, Decimal(e.contracted_kva),
                         tuple(sorted(p.code for p in e.metering_points)))
                 for e in enterprises)


def _clearing(session: Session, park: Park, day: date) -> tuple[tuple[Trade, ...],
                                                                 dict[int, Decimal]]:
    """Trades of the day's published clearing, and each period's highest clearing price."""
    run = session.scalar(select(ClearingRun).where(
        ClearingRun.park_id == park.id, ClearingRun.delivery_day == day,
        ClearingRun.status == ClearingStatus.PUBLISHED).order_by(ClearingRun.run_number.desc()))
    if run is None:
        return (), {}
    rows = session.execute(
        select(ClearingAllocation, Order, Enterprise)
        .join(Order, Order.id == ClearingAllocation.order_id)
        .join(Enterprise, Enterprise.id == Order.enterprise_id)
        .where(ClearingAllocation.run_id == run.id)
        .order_by(Order.public_id, ClearingAllocation.period_index))
    trades, prices = [], {}
    for allocation, order, enterprise in rows:
        trades.append(Trade(enterprise.code, order.public_id, order.side,
                            allocation.period_index, Decimal(allocation.quantity_kva),
                            Decimal(allocation.price)))
        if order.side == "buy":
            prices[allocation.period_index] = max(prices.get(allocation.period_index,
                                                             Decimal(0)),
                                                  Decimal(allocation.price))
    return tuple(trades), prices


def _exemptions(session: Session, park: Park, day: date) -> dict[str, tuple[Exemption, ...]]:
    rows = session.execute(select(DeviationExemption, Enterprise.code)
                           .join(Enterprise, Enterprise.id == DeviationExemption.enterprise_id)
                           .where(Enterprise.park_id == park.id, DeviationExemption.day == day)
                           .order_by(Enterprise.code, DeviationExemption.period_index))
    out: dict[str, list[Exemption]] = defaultdict(list)
    for row, code in rows:
        out[code].append(Exemption(row.period_index, row.reason, row.evidence))
    return {code: tuple(items) for code, items in out.items()}


def meter_day_used(session: Session, park: Park, day: date, codes: list[str]):
    """The day's latest metering versions, estimated where data are missing."""
    metered = metering.load_days(session, park, [day], codes)[day]
    missing = sorted({point for point, _ in metered.missing()})
    history = []
    if missing:  # like days are only read for the points that need them
        days = [day - timedelta(days=back) for back in range(1, HISTORY_DAYS + 1)]
        history = list(metering.load_days(session, park, days, missing).values())
    marked = metering.outages(session, park, day - timedelta(days=HISTORY_DAYS), day)
    return estimate_day(metered, history=history, outages=marked, rules=METERING_RULES)


def day_inputs(session: Session, park: Park, day: date, rule: DeviationRule) -> DayInputs:
    """A day's settlement inputs. The penalty price basis of a period is its clearing price,
    or the park's reference price when nothing cleared in it."""
    accounts = _accounts(session, park)
    codes = sorted(code for account in accounts for code in account.points)
    trades, cleared = _clearing(session, park, day)
    reference = Decimal(settings_for(session, park).reference_price)
    prices = {p: cleared.get(p, reference) for p in range(calendar.periods_per_day(park))}
    return DayInputs(park=park.code, day=day, zone=park.timezone,
                     period_minutes=park.period_minutes, accounts=accounts,
                     meter=meter_day_used(session, park, day, codes), trades=trades,
                     prices=prices, rule=rule, exemptions=_exemptions(session, park, day))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def statement_leaves(result_file: bytes, full: list[Line], diff: list[Line]) -> list[bytes]:
    """The statements root's leaves: the result file's hash (so the root commits to the whole
    file, and is never empty), every line of the run, then its differences against the
    previous run. A line's `position` is the index of its leaf."""
    return ([keccak(result_file)]
            + [keccak(b"full:" + line_bytes(line)) for line in full]
            + [keccak(b"difference:" + line_bytes(line)) for line in diff])


def _previous_published(session: Session, run: SettlementRun) -> SettlementRun | None:
    return session.scalar(select(SettlementRun).where(
        SettlementRun.park_id == run.park_id, SettlementRun.period_id == run.period_id,
        SettlementRun.status == SettlementStatus.PUBLISHED)
        .order_by(SettlementRun.run_number.desc()))


def lines_of(run: SettlementRun, section: str) -> list[Line]:
    return [Line(row.account, row.kind, row.period_index, row.reference, row.fen)
            for row in run.lines if row.section == section]


def compute(platform, run_id: int, progress: Progress | None = None) -> SettlementRun:
    """Compute a queued run and store its result; a failed computation is recorded as such."""
    step = progress or (lambda _percent: None)
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id, with_for_update=True)
        if run is None:
            raise NotFound(N_("No such settlement run."))
        if run.status not in (SettlementStatus.QUEUED, SettlementStatus.RUNNING):
            return run
        run.status = SettlementStatus.RUNNING
        run.progress = 5
    step(5)
    try:
        # Read the inputs, settle without holding a transaction, then write in one go, so
        # the progress written in between is seen by the run's page.
        with platform.unit_of_work() as session:
            run = session.get(SettlementRun, run_id)
            previous = _previous_published(session, run)
            previous_id = previous.id if previous else None
            previous_lines = lines_of(previous, FULL) if previous else None
            if run.kind == SettlementKind.MONTHLY:
                inputs_file, result_file, full, meter_root = _compute_month(session, run)
                inputs = None
            else:
                inputs = day_inputs(session, run.park, run.day, stored_rule(run.rule))
            final = run.kind != SettlementKind.INITIAL
        if inputs is not None:
            _progress(platform, run_id, 40, step)
            result = settle_day(inputs, final=final)
            _progress(platform, run_id, 70, step)
            inputs_file, result_file = extract_bytes(inputs), result.canonical_bytes()
            full = list(result.lines)
            meter_root = merkle_root([keccak(leaf) for leaf in metering_leaves(inputs.meter)])
        diff = differences(previous_lines, full) if previous_lines is not None else []
        leaves = statement_leaves(result_file, full, diff)
        with platform.unit_of_work() as session:
            run = session.get(SettlementRun, run_id, with_for_update=True)
            if run.status != SettlementStatus.RUNNING:
                return run  # another delivery of the task finished it meanwhile
            run.inputs_file, run.result_file = inputs_file, result_file
            run.result_hash = _hex(keccak(result_file))
            run.metering_root = _hex(meter_root)
            run.rule_hash = run.rule.rule_hash
            run.statements_root = _hex(merkle_root(leaves))
            run.line_count = len(full) + len(diff)
            run.previous_run_id = previous_id
            run.lines = [StatementLine(position=i, section=section, account=line.account,
                                       kind=line.kind, period_index=line.period,
                                       reference=line.reference, fen=line.fen)
                         for i, (section, line) in enumerate(
                             [(FULL, x) for x in full] + [(DIFFERENCE, x) for x in diff],
                             start=1)]
            run.status = SettlementStatus.COMPUTED
            run.progress = 90
            run.computed_at = calendar.utcnow()
            run.error = None
        step(90)
    except IncompleteMeteringError as exc:
        _fail(platform, run_id, _missing_text(exc))
        raise Conflict(N_("The final run is refused: %(missing)s"),
                       missing=_missing_text(exc)) from exc
    with platform.unit_of_work() as session:
        return session.get(SettlementRun, run_id)


def _missing_text(exc: IncompleteMeteringError) -> str:
    shown = ", ".join(f"{point} #{interval}" for point, interval in exc.missing[:10])
    more = len(exc.missing) - 10
    return (f"{len(exc.missing)} required intervals are still missing ({shown}"
            f"{f' and {more} more' if more > 0 else ''})")


def _progress(platform, run_id: int, percent: int, step: Progress) -> None:
    with platform.unit_of_work() as session:
        session.get(SettlementRun, run_id).progress = percent
    step(percent)


def _fail(platform, run_id: int, error: str) -> None:
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id)
        run.status = SettlementStatus.FAILED
        run.error = error


def _compute_month(session: Session, run: SettlementRun):
    """A month's roll-up of each day's latest published run."""
    month = date(run.period_id // 10000, run.period_id // 100 % 100, 1)
    runs = session.scalars(select(SettlementRun).where(
        SettlementRun.park_id == run.park_id, SettlementRun.day >= month,
        SettlementRun.day < calendar.next_month(month),
        SettlementRun.status == SettlementStatus.PUBLISHED)
        .order_by(SettlementRun.day, SettlementRun.run_number)).all()
    latest = {r.day: r for r in runs}  # the last published run of each day wins
    lines = roll_up({day: lines_of(r, FULL) for day, r in latest.items()})
    inputs_file = canonical_json({"month": month.strftime("%Y-%m"), "days": {
        day.isoformat(): {"run": r.run_number, "result_hash": r.result_hash,
                          "statements_root": r.statements_root}
        for day, r in sorted(latest.items())}})
    result_file = canonical_json({"inputs": json.loads(inputs_file), "lines": [
        json.loads(line_bytes(line)) for line in lines]})
    return inputs_file, result_file, lines, b"\0" * 32


# --------------------------------------------------------------------------- publishing


def _signer(session: Session, platform, run: SettlementRun):
    """The key of the staff member who asked for the run, else any settlement staff key."""
    query = select(ChainAccount).join(User, User.id == ChainAccount.user_id).where(
        ChainAccount.purpose == "staff", User.role == Role.SETTLEMENT)
    account = None
    if run.created_by_id is not None:
        account = session.scalar(query.where(User.id == run.created_by_id))
    account = account or session.scalar(query.order_by(ChainAccount.id))
    if account is None:
        raise Conflict(N_("No settlement staff member has a chain signing key yet; ask the "
                          "operator to run the chain setup."))
    return load_local_account(platform.keybox, account)


def publish(platform, run_id: int) -> SettlementRun:
    """Anchor a computed run on chain under the next run number of its day; idempotent."""
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id, with_for_update=True)
        if run is None:
            raise NotFound(N_("No such settlement run."))
        if run.status == SettlementStatus.PUBLISHED:
            return run
        if run.status != SettlementStatus.COMPUTED:
            raise Conflict(N_("Only a computed run can be published."))
        market = platform.market(session)
        signer = _signer(session, platform, run)
        # A run whose transaction is still waiting to be mined (its worker died meanwhile) is
        # not counted on chain yet: wait for it rather than publish the run twice.
        ensure_nothing_in_flight(market, signer.address)
        number = market.settlement_run_count(run.period_id)
        published_here = session.scalar(select(func.count()).select_from(SettlementRun).where(
            SettlementRun.park_id == run.park_id, SettlementRun.period_id == run.period_id,
            SettlementRun.status == SettlementStatus.PUBLISHED))
        # A run written on chain whose commit here was lost is the one run the chain holds
        # beyond those published here, with this run's kind, roots and hashes.
        if number == published_here + 1:
            record = market.settlement_run(run.period_id, number)
            if _matches(record, run):
                _mark_published(run, number, None, record.block_number)
                return run
        if number != published_here:
            raise Conflict(N_("The chain holds %(chain)s settlement runs of this day but the "
                              "platform published %(here)s; the auditor must look at this."),
                           chain=number, here=published_here)
        try:
            receipt = market.publish_settlement(
                signer, run.period_id, number + 1, run.kind,
                bytes.fromhex(run.metering_root[2:]), bytes.fromhex(run.rule_hash[2:]),
                bytes.fromhex(run.statements_root[2:]), bytes.fromhex(run.result_hash[2:]),
                run.line_count)
        except ChainRevertError as exc:
            raise Conflict(N_("The chain refused the settlement run: %(error)s"),
                           error=str(exc)) from exc
        _mark_published(run, number + 1, receipt.tx_hash, receipt.block_number)
        return run


def _matches(record, run: SettlementRun) -> bool:
    return record is not None and record.kind == run.kind and (
        "0x" + record.statements_root.hex() == run.statements_root
        and "0x" + record.result_hash.hex() == run.result_hash
        and "0x" + record.metering_root.hex() == run.metering_root
        and "0x" + record.rule_hash.hex() == run.rule_hash
        and record.line_count == run.line_count)


def _mark_published(run: SettlementRun, number: int, tx_hash: str | None,
                    block: int | None) -> None:
    run.run_number = number
    run.status = SettlementStatus.PUBLISHED
    run.progress = 100
    run.published_at = calendar.utcnow()
    run.publish_tx_hash = tx_hash
    run.publish_block_number = block


def execute(platform, run_id: int, progress: Progress | None = None) -> SettlementRun:
    """What the task does: compute (if not yet) and publish."""
    compute(platform, run_id, progress)
    return publish(platform, run_id)


def runs_to_finish(session: Session, stale_after: timedelta = timedelta(minutes=10)) -> list[int]:
    """Runs computed but not anchored, and runs queued or running for longer than a worker
    takes (its worker died; the task is delivered again, this is the safety net)."""
    cutoff = calendar.utcnow() - stale_after
    rows = session.scalars(select(SettlementRun.id).where(
        (SettlementRun.status == SettlementStatus.COMPUTED)
        | (SettlementRun.status.in_((SettlementStatus.QUEUED, SettlementStatus.RUNNING))
           & (SettlementRun.created_at < cutoff))).order_by(SettlementRun.id))
    return list(rows)


# --------------------------------------------------------------------------- statements


def statement(session: Session, run: SettlementRun, account: str) -> dict:
    """An account's lines of a published run with the Merkle proof of each."""
    leaves = statement_leaves(run.result_file, lines_of(run, FULL),
                              lines_of(run, DIFFERENCE))
    tree_lines = []
    for row in run.lines:
        if row.account != account:
            continue
        line = Line(row.account, row.kind, row.period_index, row.reference, row.fen)
        tree_lines.append({"section": row.section, "line": line, "position": row.position,
                           "leaf": _hex(leaves[row.position]),
                           "proof": [_hex(p) for p in merkle_proof(leaves, row.position)]})
    full = sum(x["line"].fen for x in tree_lines if x["section"] == FULL)
    diff = sum(x["line"].fen for x in tree_lines if x["section"] == DIFFERENCE)
    return {"run": run, "account": account, "lines": tree_lines, "total_fen": full,
            "difference_fen": diff}


# --------------------------------------------------------------------------- disputes


def raise_dispute(platform, run_id: int, user_id: int, claimed_fen: int, text: str,
                  now: datetime | None = None) -> int:
    """An enterprise disputes a published run within the window, above the materiality."""
    now = now or calendar.utcnow()
    with platform.unit_of_work() as session:
        user = session.get(User, user_id)
        run = session.get(SettlementRun, run_id)
        if user is None or user.role != Role.ENTERPRISE or run is None \
                or run.status != SettlementStatus.PUBLISHED \
                or run.park_id != user.enterprise.park_id:
            raise NotFound(N_("No such settlement run."))
        settings = settings_for(session, run.park)
        if not text.strip():
            raise ValidationFailed([FieldProblem("text", N_("say what is wrong"))])
        if abs(claimed_fen) < settings.materiality_fen:
            raise ValidationFailed([FieldProblem("claimed_fen", N_(
                "below the materiality threshold of %(fen)s fen"),
                {"fen": settings.materiality_fen})])
        if now > run.published_at + timedelta(days=settings.dispute_days):
            raise Forbidden(N_("The dispute window of %(days)s days after publication has "
                               "closed."), days=settings.dispute_days)
        dispute = Dispute(run_id=run.id, enterprise_id=user.enterprise_id,
                          claimed_fen=claimed_fen, text=text.strip(), raised_by_id=user.id,
                          raised_at=now)
        session.add(dispute)
        session.flush()
        return dispute.id


def resolve_dispute(platform, dispute_id: int, user_id: int, *, accept: bool,
                    resolution: str) -> int | None:
    """Staff accept a dispute (queuing a re-run of its day) or reject it with a reason."""
    if not resolution.strip():
        raise ValidationFailed([FieldProblem("resolution", N_("give the reason"))])
    with platform.unit_of_work() as session:
        dispute = session.get(Dispute, dispute_id, with_for_update=True)
        if dispute is None:
            raise NotFound(N_("No such dispute."))
        if dispute.status != DisputeStatus.OPEN:
            raise Conflict(N_("This dispute is already resolved."))
        park_id, day = dispute.run.park_id, dispute.run.day
    run_id = None
    if accept:
        run_id = request_run(platform, park_id, SettlementKind.RERUN, day=day, user_id=user_id,
                             reason=f"dispute {dispute_id}: {resolution.strip()}",
                             dispute_id=dispute_id)
    with platform.unit_of_work() as session:
        dispute = session.get(Dispute, dispute_id)
        dispute.status = DisputeStatus.ACCEPTED if accept else DisputeStatus.REJECTED
        dispute.resolution = resolution.strip()
        dispute.resolving_run_id = run_id
        dispute.resolved_by_id = user_id
        dispute.resolved_at = calendar.utcnow()
    return run_id
