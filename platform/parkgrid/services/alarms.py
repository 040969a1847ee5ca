"""Power monitoring: check a park's day of metering data with the rules of `alliance.alarms`,
store every new alarm once, and open the job it calls for.

The latest version of each metering point's day is checked against the topology (contracted
capacity, the capacity traded in the day's published clearing, main transformers and their
allowed load). Each alarm is stored in a transaction of its own with its job: the unique key
makes a second check of the same data add nothing, and an alarm a concurrent check stored
first is skipped. An alarm job goes to the site of the enterprise, for its custody O&M
provider (an admitted energy-cloud-butler member with an active contract covering the day)
or else for the shared electricians' pool. An enterprise without a site position gets the
alarm without a job, with the reason kept in the alarm's details.

Job titles and descriptions are stored in the park's language (Chinese, the platform's
default), rendered from the English source strings of the catalogue; alarms keep their
figures so that every reader sees the message in their own language.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.support import Translations
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alliance import alarms as core
from alliance.lifecycle import TERMINAL_STATUSES, JobKind
from settlement.metering import INTERVAL, DayGrid

from ..models import (
    Alarm,
    AlarmRule,
    Alliance,
    ClearingAllocation,
    ClearingRun,
    ClearingStatus,
    Electrician,
    Enterprise,
    Feeder,
    Job,
    MeterDayVersion,
    OmContract,
    Order,
    Park,
    Provider,
    ProviderStatus,
    Role,
    Substation,
    Transformer,
    User,
    utcnow,
)
from . import calendar, metering
from . import jobs as job_service
from .errors import N_, FieldProblem, NotFound, ValidationFailed

log = logging.getLogger(__name__)

# Staff and auditors read every alarm.
ALARM_READERS = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"
# Job texts are stored once for everyone who reads them: in the platform's default language.
JOB_TEXT_LOCALE = "zh"
NO_SITE = "no_site_position"

TITLES: dict[tuple[str, str], str] = {
    (core.Check.OVER_LIMIT, core.Subject.ENTERPRISE): N_(
        "Load over the limit at %(enterprise)s: peak %(peak_kva)s kVA, limit %(limit_kva)s "
        "kVA"),
    (core.Check.OVER_LIMIT, core.Subject.TRANSFORMER): N_(
        "Main transformer %(transformer)s over its allowed load: peak %(peak_kva)s kVA, "
        "allowed %(limit_kva)s kVA"),
    (core.Check.GAP, core.Subject.POINT): N_(
        "Metering gap at point %(point)s: %(intervals)s intervals without metered values"),
    (core.Check.NEGATIVE, core.Subject.POINT): N_(
        "Negative reading at point %(point)s: down to %(lowest_kw)s kW"),
    (core.Check.IMPLAUSIBLE, core.Subject.POINT): N_(
        "Implausible reading at point %(point)s: %(peak_kva)s kVA, above %(limit_kva)s kVA"),
    (core.Check.STUCK, core.Subject.POINT): N_(
        "Meter at point %(point)s stuck at %(value_kw)s kW for %(intervals)s intervals"),
}
DESCRIPTION = N_("Raised by power monitoring from the metering data of %(day)s, %(start)s to "
                 "%(end)s (local time).")
NOT_URGENT = {
    core.INSPECTION: N_("Check the meter and its communication; not urgent."),
    core.NOT_RECENT: N_("Found after it was over; check the site, not urgent."),
}
NO_JOB = {
    core.TRANSFORMER_STAFF_ONLY: N_("No job: a main transformer is for the park operator to "
                                    "act on."),
    NO_SITE: N_("No job: the enterprise has no site position to send an electrician to."),
}


@lru_cache(maxsize=4)
def _catalogue(locale: str) -> Translations:
    return Translations.load(str(TRANSLATIONS), [locale])


def _text(message: str, params: dict) -> str:
    return _catalogue(JOB_TEXT_LOCALE).gettext(message) % params


# --------------------------------------------------------------------------- the input


@dataclass
class _Ids:
    """Database ids of what the core names by code."""

    enterprises: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    transformers: dict[str, int] = field(default_factory=dict)
    transformer_codes: dict[str, str] = field(default_factory=dict)


def _transformer_name(park: Park, substation: Substation, transformer: Transformer) -> str:
    # Transformer codes are unique per substation only; alarm keys are unique everywhere.
    return f"{park.code}/{substation.code}/{transformer.code}"


def _traded(session: Session, park: Park, day: date, count: int) -> dict[int, dict[int, Decimal]]:
    """Net capacity each enterprise bought (+) or sold (−) per interval, from the day's
    latest published clearing."""
    run = session.scalar(select(ClearingRun).where(
        ClearingRun.park_id == park.id, ClearingRun.delivery_day == day,
        ClearingRun.status == ClearingStatus.PUBLISHED).order_by(ClearingRun.run_number.desc()))
    if run is None:
        return {}
    per_period = park.period_minutes * 60 // int(INTERVAL.total_seconds())
    traded: dict[int, dict[int, Decimal]] = {}
    rows = session.execute(select(Order.enterprise_id, Order.side, ClearingAllocation.period_index,
                                  ClearingAllocation.quantity_kva)
                           .join(Order, Order.id == ClearingAllocation.order_id)
                           .where(ClearingAllocation.run_id == run.id))
    for enterprise_id, side, period, kva in rows:
        signed = Decimal(kva) if side == "buy" else -Decimal(kva)
        mine = traded.setdefault(enterprise_id, {})
        for interval in range(period * per_period, min((period + 1) * per_period, count)):
            mine[interval] = mine.get(interval, Decimal(0)) + signed
    return traded


def _monitoring_input(session: Session, park: Park, day: date, at: datetime
                      ) -> tuple[core.MonitoringInput | None, _Ids]:
    """The core's input for the park's day; None when no metering data of the day exist."""
    ids = _Ids()
    enterprises = session.scalars(
        select(Enterprise).where(Enterprise.park_id == park.id)
        .options(selectinload(Enterprise.metering_points),
                 selectinload(Enterprise.feeder).selectinload(Feeder.transformer)
                 .selectinload(Transformer.substation))
        .order_by(Enterprise.code)).all()
    points = {p.code: p for e in enterprises for p in e.metering_points}
    ids.points = {code: p.id for code, p in points.items()}
    delivered = session.scalar(select(MeterDayVersion.id).where(
        MeterDayVersion.day == day,
        MeterDayVersion.metering_point_id.in_(list(ids.points.values()))).limit(1))
    if delivered is None:
        return None, ids

    grid = DayGrid(day, ZoneInfo(park.timezone))
    traded = _traded(session, park, day, grid.count)
    monitored = []
    for enterprise in enterprises:
        transformer = enterprise.feeder.transformer
        name = _transformer_name(park, transformer.substation, transformer)
        ids.enterprises[enterprise.code] = enterprise.id
        monitored.append(core.MonitoredEnterprise(
            enterprise.code, Decimal(enterprise.contracted_kva),
            tuple(sorted(p.code for p in enterprise.metering_points)), name,
            traded.get(enterprise.id, {})))
    transformers = []
    for substation in park.substations:
        for transformer in substation.transformers:
            name = _transformer_name(park, substation, transformer)
            ids.transformers[name] = transformer.id
            ids.transformer_codes[name] = transformer.code
            transformers.append(core.MonitoredTransformer(name, Decimal(transformer.allowed_kva)))
    meter = metering.load_days(session, park, [day], list(points))[day]
    ended = (at - grid.start) // INTERVAL
    return core.MonitoringInput(
        meter, tuple(monitored), tuple(transformers),
        multipliers={code: Decimal(p.multiplier) for code, p in points.items()
                     if Decimal(p.multiplier) != 1},
        judged_intervals=max(0, min(grid.count, ended))), ids


# --------------------------------------------------------------------------- checking


def scan_day(platform, park_id: int, day: date, *, at: datetime | None = None,
             thresholds: core.AlarmThresholds | None = None) -> list[str]:
    """Check the park's local `day` (the part of it over by `at`, default now); store each
    new alarm and open its job. Returns the keys of the new alarms (none on a second check
    of the same data)."""
    at = at or utcnow()
    if at.utcoffset() is None:
        raise ValidationFailed([FieldProblem("at", N_("Give the time with its UTC offset."))])
    thresholds = thresholds or core.DEFAULT_THRESHOLDS
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id)
        if park is None:
            raise NotFound(N_("No such park."))
        if day > calendar.local_day(at, park.timezone):
            raise ValidationFailed([FieldProblem(
                "day", N_("%(day)s has not begun in the park; there is nothing to check yet."),
                {"day": day.isoformat()})])
        zone = park.timezone
        data, ids = _monitoring_input(session, park, day, at)
        if data is None:
            log.info("alarms: no metering data of park %s on %s yet", park.code, day)
            return []
        findings = core.scan(data, thresholds)
        keys = [f.key for f in findings]
        known = set(session.scalars(select(Alarm.key).where(Alarm.key.in_(keys)))) if keys \
            else set()
    new = []
    for finding in findings:
        if finding.key not in known and _store(platform, park_id, zone, day, finding, ids, at,
                                               thresholds):
            new.append(finding.key)
    log.info("alarms: park %s day %s: %d found, %d new", park_id, day, len(findings), len(new))
    return new


def _is_duplicate_key(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the constraint; SQLite names the column.
    return "uq_alarms_key" in text or "alarms.key" in text


def _params(finding: core.Finding, ids: _Ids) -> dict:
    params = finding.figures_document()
    params.update(enterprise=finding.enterprise or "", point=finding.code,
                  transformer=ids.transformer_codes.get(finding.code, finding.code))
    return params


def _store(platform, park_id: int, zone: str, day: date, finding: core.Finding, ids: _Ids,
           at: datetime, thresholds: core.AlarmThresholds) -> bool:
    """Store one alarm and its job in one transaction; False if it was there already."""
    plan = core.job_plan(finding, at, thresholds)
    details: dict = {"check": finding.check.value, "subject": finding.subject.value,
                     "code": finding.code, "day": day.isoformat(), "first": finding.first,
                     "last": finding.last, "figures": finding.figures_document()}
    try:
        with platform.unit_of_work() as session:
            enterprise = (session.get(Enterprise, ids.enterprises[finding.enterprise])
                          if finding.enterprise is not None else None)
            alarm = Alarm(
                key=finding.key, park_id=park_id, rule=finding.rule.value,
                enterprise=enterprise, transformer_id=ids.transformers.get(finding.code)
                if finding.subject is core.Subject.TRANSFORMER else None,
                metering_point_id=ids.points.get(finding.code)
                if finding.subject is core.Subject.POINT else None,
                starts_at=finding.starts_at, ends_at=finding.ends_at, raised_at=at,
                details="{}")
            session.add(alarm)
            session.flush()  # a concurrent check that stored this key first stops us here
            if not plan.opens_job:
                details["no_job"] = plan.reason
            elif enterprise is None or enterprise.site_lat is None:
                details["no_job"] = NO_SITE
            else:
                alarm.job = _open_job(session, enterprise, zone, day, finding, plan, ids, at)
                details["job"] = {"urgent": plan.urgent, "reason": plan.reason}
            alarm.details = json.dumps(details, ensure_ascii=False, sort_keys=True)
    except IntegrityError as exc:
        if not _is_duplicate_key(exc):
            raise
        log.info("alarm %s was stored by a concurrent check; skipped", finding.key)
        return False
    return True


def om_provider(session: Session, enterprise: Enterprise, day: date) -> Provider | None:
    """The enterprise's custody O&M provider on `day`: an admitted energy-cloud-butler member
    with an active contract covering the day (the latest such contract), or None."""
    return session.scalar(
        select(Provider).join(OmContract, OmContract.provider_id == Provider.id)
        .where(OmContract.enterprise_id == enterprise.id, OmContract.active.is_(True),
               OmContract.starts_on <= day,
               or_(OmContract.ends_on.is_(None), OmContract.ends_on >= day),
               Provider.alliance == Alliance.ENERGY_CLOUD_BUTLER,
               Provider.status == ProviderStatus.APPROVED)
        .order_by(OmContract.starts_on.desc(), OmContract.id.desc()).limit(1))


def _open_job(session: Session, enterprise: Enterprise, zone: str, day: date,
              finding: core.Finding, plan: core.JobPlan, ids: _Ids, at: datetime) -> Job:
    local = ZoneInfo(zone)
    description = _text(DESCRIPTION, {"day": day.isoformat(),
                                      "start": f"{finding.starts_at.astimezone(local):%H:%M}",
                                      "end": f"{finding.ends_at.astimezone(local):%H:%M}"})
    if plan.reason in NOT_URGENT:
        description += "\n" + _text(NOT_URGENT[plan.reason], {})
    title = _text(TITLES[(finding.check, finding.subject)], _params(finding, ids))
    job, _event = job_service.create_job(
        session, enterprise=enterprise, kind=JobKind.ALARM.value, title=title[:200],
        lat=enterprise.site_lat, lon=enterprise.site_lon, urgent=plan.urgent, at=at,
        description=description, provider=om_provider(session, enterprise, day),
        data={"alarm": finding.key})
    return job


# --------------------------------------------------------------------------- reading


def visible_alarms(session: Session, user: User | None, open_only: bool = False, *,
                   rule: str | None = None) -> list[Alarm]:
    """The alarms a user may see, newest first: staff and auditors all, an enterprise its
    own, a provider those whose job is its company's (its O&M job, or its electrician's).
    `open_only`: only alarms whose job is still open. `rule`: one rule's alarms."""
    if rule is not None and rule not in AlarmRule.ALL:
        raise ValidationFailed([FieldProblem("rule", N_("Choose a rule: %(choices)s."),
                                             {"choices": ", ".join(AlarmRule.ALL)})])
    query = (select(Alarm).options(selectinload(Alarm.job), selectinload(Alarm.enterprise),
                                   selectinload(Alarm.transformer),
                                   selectinload(Alarm.metering_point))
             .order_by(Alarm.raised_at.desc(), Alarm.id.desc()))
    if user is not None and user.role == Role.ENTERPRISE:
        query = query.where(Alarm.enterprise_id == user.enterprise_id)
    elif user is not None and user.role == Role.PROVIDER:
        mine = select(Electrician.id).where(Electrician.provider_id == user.provider_id)
        theirs = select(Job.id).where(or_(Job.provider_id == user.provider_id,
                                          Job.electrician_id.in_(mine)))
        query = query.where(Alarm.job_id.in_(theirs))
    elif user is not None and user.role not in ALARM_READERS:
        return []
    if open_only:
        query = query.where(Alarm.job_id.in_(select(Job.id).where(
            Job.status.not_in([s.value for s in TERMINAL_STATUSES]))))
    if rule is not None:
        query = query.where(Alarm.rule == rule)
    return list(session.scalars(query))


def alarms_by_key(session: Session, keys: list[str]) -> list[Alarm]:
    """Alarms named by key, in that order (unknown keys left out)."""
    found = {a.key: a for a in session.scalars(select(Alarm).where(Alarm.key.in_(keys)))} \
        if keys else {}
    return [found[k] for k in keys if k in found]


def message(alarm: Alarm) -> tuple[str, dict]:
    """What the alarm found, as a msgid and its parameters (for the reader's language)."""
    details = json.loads(alarm.details or "{}")
    params = dict(details.get("figures", {}))
    params.update(
        enterprise=alarm.enterprise.code if alarm.enterprise else "",
        point=alarm.metering_point.code if alarm.metering_point else details.get("code", ""),
        transformer=alarm.transformer.code if alarm.transformer else details.get("code", ""))
    title = TITLES.get((details.get("check"), details.get("subject")))
    if title is None:  # details from elsewhere: name the rule at least
        return "%(rule)s", {"rule": alarm.rule}
    return title, params


def no_job_reason(alarm: Alarm) -> tuple[str, dict] | None:
    """Why the alarm opened no job (msgid, parameters), or None if it did."""
    reason = json.loads(alarm.details or "{}").get("no_job")
    if reason is None:
        return None
    return NO_JOB.get(reason, "%(reason)s"), {"reason": reason}
