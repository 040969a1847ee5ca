"""Custody O&M contracts (托管运维) of the energy-cloud butler: entering and ending them, who
sees which, and generating their planned patrol and inspection jobs.

The calendar (due days, windows in UTC) is the `alliance.contracts` core's; this module
checks input field by field, stores contracts, and turns each due visit into a non-urgent
butler job through `services.jobs.create_job`. Generation is idempotent: the database holds
one job per contract item and day, so a second run, or a run racing another, adds nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from alliance import contracts as core
from alliance import lifecycle

from ..models import (
    Alliance,
    Enterprise,
    Job,
    OmContract,
    OmContractItem,
    PatrolFrequency,
    Provider,
    ProviderStatus,
    Role,
    User,
    utcnow,
)
from . import alliance as membership
from . import jobs as job_service
from .calendar import local_day
from .errors import N_, Conflict, FieldProblem, Forbidden, NotFound, ValidationFailed

log = logging.getLogger(__name__)

# Staff who may enter and end any contract; auditors only read.
CONTRACT_STAFF = (Role.ADMIN, Role.SETTLEMENT)
CONTRACT_READERS = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
JOB_KINDS = tuple(k.value for k in core.VISIT_KINDS)
DEFAULT_SKILLS = job_service.DEFAULT_SKILLS
MAX_ITEMS = 200
# One generation run covers at most this many days (the task runs it a week or so ahead).
MAX_GENERATION_DAYS = 92
# Generated jobs not yet under way when their contract ends early are cancelled.
NOT_YET_UNDER_WAY = tuple(s.value for s in (
    lifecycle.JobStatus.NEW, lifecycle.JobStatus.AWAITING_DISPATCH,
    lifecycle.JobStatus.ESCALATED, lifecycle.JobStatus.OFFERED, lifecycle.JobStatus.ACCEPTED))
# Job titles are stored text shown as they are, in the park's language, like the titles
# people type: the equipment's name and what is done to it.
TITLE_SUFFIX = {"patrol": "巡视", "inspection": "检查"}
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_RETRIES = 3


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ItemInput:
    """One piece of equipment as typed; without a position it stands at the enterprise's
    site."""

    name: str
    equipment_kind: str = ""
    lat: Decimal | float | str | None = None
    lon: Decimal | float | str | None = None


@dataclass(frozen=True)
class ContractInput:
    """A custody O&M contract as typed. A provider user may leave `provider_code` out (its
    own company); `code` is generated when left out."""

    enterprise_code: str
    frequency: str
    window_start: time | str
    window_end: time | str
    starts_on: date | str
    items: Sequence[ItemInput]
    provider_code: str | None = None
    job_kind: str = "patrol"
    service_minutes: int | str = 30
    skills: Sequence[str] | str = DEFAULT_SKILLS
    ends_on: date | str | None = None
    code: str | None = None


@dataclass
class _Item:
    name: str
    equipment_kind: str
    lat: Decimal | None
    lon: Decimal | None
    at_site: bool = False


@dataclass
class _Parsed:
    code: str | None
    frequency: str | None
    job_kind: str | None
    window_start: time | None
    window_end: time | None
    service_minutes: int | None
    skills: list[str]
    starts_on: date | None
    ends_on: date | None
    items: list[_Item]


# --------------------------------------------------------------------------- parsing


def _blank(raw) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def _day(raw, name: str, problems: list[FieldProblem], *, required: bool) -> date | None:
    if _blank(raw):
        if required:
            problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
        return None
    if isinstance(raw, datetime):
        problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
        return None
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
        return None


def _time(raw, name: str, problems: list[FieldProblem]) -> time | None:
    if isinstance(raw, time):
        if raw.tzinfo is None:
            return raw.replace(microsecond=0)
    elif not _blank(raw):
        try:
            value = time.fromisoformat(str(raw).strip())
        except ValueError:
            value = None
        if value is not None and value.tzinfo is None:
            return value.replace(microsecond=0)
    problems.append(FieldProblem(name, N_("Give a time of day as HH:MM.")))
    return None


def _choice(raw, name: str, known: Sequence[str], problems: list[FieldProblem]) -> str | None:
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in known:
        problems.append(FieldProblem(name, N_("Choose one of: %(known)s."),
                                     {"known": ", ".join(known)}))
        return None
    return value


def _minutes(raw, problems: list[FieldProblem]) -> int | None:
    value = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if value is None or not 1 <= value <= core.MAX_SERVICE_MINUTES:
        problems.append(FieldProblem("service_minutes", N_("Give the expected work in minutes "
                                                           "(1 to 1440).")))
        return None
    return value


def _items(raw: Sequence[ItemInput], problems: list[FieldProblem]) -> list[_Item]:
    if not raw:
        problems.append(FieldProblem("items", N_("List the equipment to look after.")))
        return []
    if len(raw) > MAX_ITEMS:
        problems.append(FieldProblem("items", N_("At most %(n)s pieces of equipment per "
                                                 "contract."), {"n": MAX_ITEMS}))
        return []
    items = []
    for i, data in enumerate(raw):
        where = f"items[{i}]"
        name = (data.name or "").strip() if isinstance(data.name, str) else ""
        if not 1 <= len(name) <= 128:
            problems.append(FieldProblem(f"{where}.name", N_("Give the equipment's name (1 to "
                                                             "128 characters).")))
        kind = (data.equipment_kind or "").strip() if isinstance(
            data.equipment_kind, str | None) else None
        if kind is None or len(kind) > 32:
            problems.append(FieldProblem(f"{where}.equipment_kind",
                                         N_("At most %(n)s characters."), {"n": 32}))
        lat = lon = None
        at_site = _blank(data.lat) and _blank(data.lon)
        if at_site:
            pass  # filled in from the enterprise's site once it is known
        elif _blank(data.lat) or _blank(data.lon):
            problems.append(FieldProblem(f"{where}.lat", N_(
                "Give both the latitude and the longitude, or neither (the equipment then "
                "stands at the enterprise's site).")))
        else:
            lat = membership.coordinate(data.lat, f"{where}.lat", 90, problems)
            lon = membership.coordinate(data.lon, f"{where}.lon", 180, problems)
        items.append(_Item(name, kind or "", lat, lon, at_site))
    names = [i.name for i in items if i.name]
    if len(set(names)) != len(names):
        problems.append(FieldProblem("items", N_("Each piece of equipment needs a name of its "
                                                 "own.")))
    return items


def _parse(data: ContractInput, problems: list[FieldProblem]) -> _Parsed:
    code = None
    if not _blank(data.code):
        code = str(data.code).strip()
        if not _CODE.match(code):
            problems.append(FieldProblem("code", N_("A code is 1 to 32 letters, digits, - or "
                                                    "_.")))
    frequency = _choice(data.frequency, "frequency", PatrolFrequency.ALL, problems)
    job_kind = _choice(data.job_kind, "job_kind", JOB_KINDS, problems)
    start = _time(data.window_start, "window_start", problems)
    end = _time(data.window_end, "window_end", problems)
    if start is not None and end is not None and end <= start:
        problems.append(FieldProblem("window_end", N_("The time window must end after it "
                                                      "starts.")))
    minutes = _minutes(data.service_minutes, problems)
    skills = membership.skill_codes(data.skills or DEFAULT_SKILLS, "skills", problems)
    starts_on = _day(data.starts_on, "starts_on", problems, required=True)
    ends_on = _day(data.ends_on, "ends_on", problems, required=False)
    if starts_on is not None and ends_on is not None and ends_on < starts_on:
        problems.append(FieldProblem("ends_on", N_("The contract cannot end before it "
                                                   "starts.")))
    items = _items(data.items, problems)
    return _Parsed(code=code, frequency=frequency, job_kind=job_kind, window_start=start,
                   window_end=end, service_minutes=minutes, skills=skills,
                   starts_on=starts_on, ends_on=ends_on, items=items)


# --------------------------------------------------------------------------- rows -> core


def core_contract(row: OmContract) -> core.Contract:
    """The core's view of a stored contract (items keyed by their row ids)."""
    return core.Contract(
        id=row.code, frequency=row.frequency, window_start=row.window_start,
        window_end=row.window_end, starts_on=row.starts_on, ends_on=row.ends_on,
        job_kind=row.job_kind, service_minutes=row.service_minutes,
        skills=frozenset(row.skill_list),
        items=tuple(core.ContractItem(id=str(i.id), name=i.name, lat=i.lat, lon=i.lon,
                                      kind=i.equipment_kind or "") for i in row.items))


# --------------------------------------------------------------------------- access


def _user(session: Session, actor_id: int | None) -> User | None:
    if actor_id is None:
        return None
    user = session.get(User, actor_id)
    if user is None or not user.active:
        raise Forbidden(N_("Unknown or inactive user."))
    return user


def _may_manage(user: User | None, contract: OmContract) -> None:
    if user is None or user.role in CONTRACT_STAFF:
        return
    if user.role == Role.PROVIDER and user.provider_id == contract.provider_id:
        return
    raise Forbidden(N_("Only the park's staff or the contract's O&M provider may do this."))


def may_view(user: User | None, contract: OmContract) -> bool:
    if user is None or user.role in CONTRACT_READERS:
        return True
    if user.role == Role.PROVIDER:
        return user.provider_id == contract.provider_id
    if user.role == Role.ENTERPRISE:
        return user.enterprise_id == contract.enterprise_id
    return False


def visible_contracts(session: Session, user: User | None) -> list[OmContract]:
    """The contracts a user may see, by code: staff and auditors all, a provider its own,
    an enterprise those covering it."""
    query = (select(OmContract).order_by(OmContract.code)
             .options(selectinload(OmContract.items)))
    if user is not None and user.role == Role.PROVIDER:
        query = query.where(OmContract.provider_id == user.provider_id)
    elif user is not None and user.role == Role.ENTERPRISE:
        query = query.where(OmContract.enterprise_id == user.enterprise_id)
    elif user is not None and user.role not in CONTRACT_READERS:
        return []
    return list(session.scalars(query))


def _contract(session: Session, code: str) -> OmContract:
    found = session.scalar(select(OmContract).where(OmContract.code == code))
    if found is None:
        raise NotFound(N_("No such contract."))
    return found


def get_contract(session: Session, user: User | None, code: str) -> OmContract:
    """A contract its viewer may see (others get NotFound, not a hint that it exists)."""
    found = _contract(session, code)
    if not may_view(user, found):
        raise NotFound(N_("No such contract."))
    return found


# --------------------------------------------------------------------------- use cases


def _provider_for(session: Session, user: User | None, code: str | None,
                  problems: list[FieldProblem]) -> Provider | None:
    """The contract's provider: a provider user's own company, or the one staff name; it
    must be an admitted member of the energy-cloud butler alliance."""
    code = (str(code).strip() if code is not None else "") or None
    if user is not None and user.role == Role.PROVIDER:
        own = user.provider
        if code is not None and code != own.code:
            raise Forbidden(N_("You may only enter contracts of your own company."))
        provider, code = own, own.code
    elif code is None:
        problems.append(FieldProblem("provider", N_("Name the O&M provider.")))
        return None
    else:
        provider = session.scalar(select(Provider).where(Provider.code == code))
    if (provider is None or provider.alliance != Alliance.ENERGY_CLOUD_BUTLER
            or provider.status != ProviderStatus.APPROVED):
        problems.append(FieldProblem("provider", N_(
            "%(code)s is not an admitted O&M provider of the energy-cloud butler alliance."),
            {"code": code}))
        return None
    return provider


def _new_code(session: Session, at: datetime, zone: str) -> str:
    while True:
        code = f"OM{local_day(at, zone):%y%m%d}-{secrets.token_hex(3).upper()}"
        if session.scalar(select(OmContract.id).where(OmContract.code == code)) is None:
            return code


def add_contract(session: Session, data: ContractInput, *, user: User | None = None,
                 at: datetime | None = None) -> OmContract:
    """Check and store a contract in the session's transaction (flushed, not committed):
    every bad field is reported at once and nothing is stored. `user` None is the platform
    itself (the demo, the CLI); access is the caller's to check."""
    at = at or utcnow()
    problems: list[FieldProblem] = []
    parsed = _parse(data, problems)
    provider = _provider_for(session, user, data.provider_code, problems)
    enterprise_code = (data.enterprise_code or "").strip()
    enterprise = session.scalar(select(Enterprise).where(Enterprise.code == enterprise_code)) \
        if enterprise_code else None
    if enterprise is None:
        problems.append(FieldProblem("enterprise", N_("No enterprise has the code %(code)s."),
                                     {"code": enterprise_code or "-"}))
    if parsed.code is not None and session.scalar(
            select(OmContract.id).where(OmContract.code == parsed.code)) is not None:
        problems.append(FieldProblem("code", N_("The code %(code)s is taken."),
                                     {"code": parsed.code}))
    if enterprise is not None:
        for i, item in enumerate(parsed.items):
            if not item.at_site:
                continue
            if enterprise.site_lat is None or enterprise.site_lon is None:
                problems.append(FieldProblem(f"items[{i}].lat", N_(
                    "Give the equipment's position: the enterprise's site is not "
                    "recorded.")))
            else:
                item.lat, item.lon = enterprise.site_lat, enterprise.site_lon
    if problems:
        raise ValidationFailed(problems)
    code = parsed.code or _new_code(session, at, enterprise.park.timezone)
    try:  # the core's own checks of the whole contract
        core.Contract(
            id=code, frequency=parsed.frequency, window_start=parsed.window_start,
            window_end=parsed.window_end, starts_on=parsed.starts_on, ends_on=parsed.ends_on,
            job_kind=parsed.job_kind, service_minutes=parsed.service_minutes,
            skills=frozenset(parsed.skills),
            items=tuple(core.ContractItem(id=str(i), name=item.name, lat=item.lat,
                                          lon=item.lon, kind=item.equipment_kind)
                        for i, item in enumerate(parsed.items)))
    except core.InvalidContractError as exc:
        raise ValidationFailed([FieldProblem("contract", N_("not accepted: %(error)s"),
                                             {"error": str(exc)})]) from exc
    row = OmContract(code=code, provider=provider, enterprise=enterprise,
                     frequency=parsed.frequency, job_kind=parsed.job_kind,
                     window_start=parsed.window_start, window_end=parsed.window_end,
                     service_minutes=parsed.service_minutes,
                     required_skills=",".join(parsed.skills), starts_on=parsed.starts_on,
                     ends_on=parsed.ends_on, active=True,
                     created_by_id=user.id if user is not None else None, created_at=at)
    row.items = [OmContractItem(name=i.name, equipment_kind=i.equipment_kind, lat=i.lat,
                                lon=i.lon) for i in parsed.items]
    session.add(row)
    session.flush()
    log.info("O&M contract %s: %s for %s, %s, %d item(s)", code, provider.code,
             enterprise.code, parsed.frequency, len(parsed.items))
    return row


def create_contract(platform, data: ContractInput, actor_id: int | None, *,
                    at: datetime | None = None) -> str:
    """Enter a custody O&M contract: staff (admin, settlement) for any admitted butler
    provider, a provider user for its own company. Returns the contract's code."""
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        if user is not None and user.role not in (*CONTRACT_STAFF, Role.PROVIDER):
            raise Forbidden(N_("Only the park's staff or an O&M provider enters contracts."))
        return add_contract(session, data, user=user, at=at).code


def end_contract(platform, code: str, reason: str, *, actor_id: int | None,
                 last_day: date | None = None, at: datetime | None = None) -> list[str]:
    """End a contract after `last_day` (default: today in the park): no visits fall due
    after it, and its jobs due later that nobody is on the way to yet are cancelled with
    `reason`. A contract ended before its first day is withdrawn (inactive). Returns the
    codes of the cancelled jobs."""
    at = at or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed([FieldProblem("reason", N_("Say why."))])
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        contract = get_contract(session, user, code)
        _may_manage(user, contract)
        if not contract.active:
            raise Conflict(N_("This contract was withdrawn already."))
        last_day = last_day or local_day(at, contract.enterprise.park.timezone)
        if contract.ends_on is not None and last_day >= contract.ends_on:
            raise ValidationFailed([FieldProblem("last_day", N_(
                "The contract ends on %(day)s already; it can only end earlier."),
                {"day": contract.ends_on.isoformat()})])
        if last_day < contract.starts_on:
            contract.active = False
        else:
            contract.ends_on = last_day
        cancelled = []
        items = [i.id for i in contract.items]
        later = session.scalars(select(Job).where(
            Job.contract_item_id.in_(items), Job.due_on > last_day,
            Job.status.in_(NOT_YET_UNDER_WAY)).order_by(Job.due_on, Job.id)).all()
        by = "system" if user is None else f"user:{user.id}"
        for job in later:
            try:
                job_service.apply_event(session, user, job, lifecycle.Cancel(by, at, reason))
            except job_service.JobRefused as exc:  # e.g. changed after `at`: leave it
                log.info("job %s of ended contract %s not cancelled: %s", job.code, code, exc)
                continue
            job.cancelled_by_id = user.id if user is not None else None
            cancelled.append(job.code)
        session.flush()
        log.info("O&M contract %s ended after %s; %d job(s) cancelled", code, last_day,
                 len(cancelled))
        return cancelled


# --------------------------------------------------------------------------- generation


def _check_range(first, last) -> None:
    problems: list[FieldProblem] = []
    for name, value in (("first", first), ("last", last)):
        if not isinstance(value, date) or isinstance(value, datetime):
            problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
    if not problems and last < first:
        problems.append(FieldProblem("last", N_("The last day must not be before the "
                                                "first.")))
    elif not problems and (last - first).days + 1 > MAX_GENERATION_DAYS:
        problems.append(FieldProblem("last", N_("Generate at most %(n)s days at a time."),
                                     {"n": MAX_GENERATION_DAYS}))
    if problems:
        raise ValidationFailed(problems)


def _is_duplicate(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the constraint; SQLite names the columns.
    return any(name in text for name in (
        "uq_jobs_contract_item_id_due_on", "jobs.contract_item_id", "uq_jobs_code",
        "jobs.code"))


def _existing(session: Session, item_ids: list[int], first: date,
              last: date) -> set[tuple[int, date]]:
    """The (item, day) pairs that have a job already."""
    rows = session.execute(select(Job.contract_item_id, Job.due_on).where(
        Job.contract_item_id.in_(item_ids), Job.due_on >= first, Job.due_on <= last))
    return {(item_id, day) for item_id, day in rows}


def _generate_for(session: Session, contract: OmContract, first: date, last: date,
                  at: datetime) -> list[str]:
    if contract.provider.status != ProviderStatus.APPROVED:
        log.warning("O&M contract %s: provider %s is %s; no jobs generated", contract.code,
                    contract.provider.code, contract.provider.status)
        return []
    try:
        due = core.visits(core_contract(contract), first, last,
                          contract.enterprise.park.timezone)
    except core.InvalidContractError as exc:  # a row edited by hand: skip it, say why
        log.warning("O&M contract %s is not valid input (%s); no jobs generated",
                    contract.code, exc)
        return []
    items = {i.id: i for i in contract.items}
    done = _existing(session, list(items), first, last)
    codes = []
    for visit in due:
        item = items[int(visit.item.id)]
        if (item.id, visit.day) in done:
            continue
        job, _ = job_service.create_job(
            session, enterprise=contract.enterprise, kind=visit.job_kind.value,
            title=f"{item.name}{TITLE_SUFFIX[visit.job_kind.value]}", lat=item.lat,
            lon=item.lon, urgent=False, at=at,
            description=" · ".join(x for x in (contract.code, item.equipment_kind,
                                               visit.day.isoformat()) if x),
            skills=sorted(visit.skills), provider=contract.provider,
            window_start=visit.window_start, window_end=visit.window_end,
            service_minutes=visit.service_minutes,
            data={"contract": contract.code, "due_on": visit.day},
            contract_item=item, due_on=visit.day)
        codes.append(job.code)
    return codes


def _generate_contract(platform, contract_id: int, first: date, last: date,
                       at: datetime) -> list[str]:
    """One contract's jobs in one transaction; a run racing another (the same job stored
    meanwhile) starts over and then skips what the other stored."""
    for attempt in range(1, _RETRIES + 1):
        try:
            with platform.unit_of_work() as session:
                contract = session.get(OmContract, contract_id)
                if contract is None or not contract.active:
                    return []  # ended meanwhile
                return _generate_for(session, contract, first, last, at)
        except IntegrityError as exc:
            if not _is_duplicate(exc) or attempt == _RETRIES:
                raise
            log.info("patrols of contract %s stored meanwhile by another run; skipping them",
                     contract_id)
    return []  # not reached


def generate_patrols(platform, first: date, last: date, *, park_id: int | None = None,
                     at: datetime | None = None) -> list[str]:
    """Create the planned patrol and inspection jobs of every active contract (of one park,
    or all) due from `first` to `last` (local days): one job per item and due day, skipping
    those that exist. Returns the new jobs' codes."""
    at = at or utcnow()
    _check_range(first, last)
    with platform.unit_of_work() as session:
        query = (select(OmContract.id).join(Enterprise)
                 .where(OmContract.active.is_(True), OmContract.starts_on <= last,
                        or_(OmContract.ends_on.is_(None), OmContract.ends_on >= first))
                 .order_by(OmContract.code))
        if park_id is not None:
            query = query.where(Enterprise.park_id == park_id)
        contract_ids = list(session.scalars(query))
    created = []
    for contract_id in contract_ids:
        created.extend(_generate_contract(platform, contract_id, first, last, at))
    log.info("patrols %s to %s: %d job(s) from %d contract(s)", first, last, len(created),
             len(contract_ids))
    return created


# --------------------------------------------------------------------------- documents


def _document_problem(name: str) -> ValidationFailed:
    return ValidationFailed([FieldProblem(name, N_("missing or not of the expected form"))])


def contract_from_document(doc: dict) -> ContractInput:
    """A contract as JSON (the API's and the CLI's form) as input: {provider, enterprise,
    frequency, job_kind, window_start, window_end, service_minutes, skills, starts_on,
    ends_on, code, items: [{name, equipment_kind, lat, lon}]}."""
    if not isinstance(doc, dict):
        raise _document_problem("contract")
    items = doc.get("items") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _document_problem("items")
    skills = doc.get("skills") or DEFAULT_SKILLS
    if not isinstance(skills, list | tuple | str):
        raise _document_problem("skills")
    return ContractInput(
        provider_code=doc.get("provider"), enterprise_code=str(doc.get("enterprise") or ""),
        frequency=doc.get("frequency"), job_kind=doc.get("job_kind") or "patrol",
        window_start=doc.get("window_start"), window_end=doc.get("window_end"),
        service_minutes=doc.get("service_minutes", 30), skills=skills,
        starts_on=doc.get("starts_on"), ends_on=doc.get("ends_on"), code=doc.get("code"),
        items=[ItemInput(name=i.get("name"), equipment_kind=i.get("equipment_kind") or "",
                         lat=i.get("lat"), lon=i.get("lon")) for i in items])
