"""Alliance membership: applications, the operator's decision, rosters, positions, standing,
and which electricians may be offered a job.

The rules are the `alliance.membership` core's (admission, standing, certificate validity,
skills, shifts); this module turns rows into its objects, validates input through its
dataclasses, and stores what it decides. Days are calendar days in the park's time zone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from alliance import membership as core
from alliance.lifecycle import JobStatus, commits_electrician
from alliance.travel import TravelModel

from ..models import (
    ACTIVE_JOB_STATUSES,
    Alliance,
    Certificate,
    Electrician,
    Job,
    Provider,
    ProviderStatus,
    Role,
    User,
    utcnow,
)
from .calendar import local_day
from .errors import (
    N_,
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    ServiceError,
    ValidationFailed,
)

log = logging.getLogger(__name__)

ALL_WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)
# Statuses of a job its electrician is travelling to or working on.
UNDER_WAY = tuple(s.value for s in (JobStatus.EN_ROUTE, JobStatus.ON_SITE, JobStatus.IN_PROGRESS))
# Staff who may see every provider; only the park operator (admin) decides applications.
VIEWERS = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
# A position report older than this says little about where the electrician is now.
POSITION_FRESH_FOR = timedelta(hours=2)
TRAVEL = TravelModel()
_SKILL = re.compile(r"^[a-z0-9_]{1,32}$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# A provider whose licence data were never recorded cannot be assessed by the core.
LICENCE_MISSING = "licence_missing"
# Standing of a company that is not (or no longer) an admitted member.
NOT_ADMITTED = "not_admitted"

# The core's reason codes (and ours) as messages a person understands; figures are params.
REASON_MESSAGES: dict[str, str] = {
    core.LICENCE_NOT_YET_VALID: N_("licence %(number)s is not valid before %(issued)s"),
    core.LICENCE_EXPIRED: N_("licence %(number)s expired on %(expires)s"),
    core.LICENCE_LEVEL: N_("licence level %(level)s is below the required level "
                           "(%(worst_allowed)s or better)"),
    core.TOO_FEW_VALID_ELECTRICIANS: N_("%(valid)s electricians hold a valid certificate; at "
                                        "least %(required)s are required"),
    LICENCE_MISSING: N_("no licence (number, level and expiry date) is recorded"),
    NOT_ADMITTED: N_("not an admitted member (%(status)s)"),
}
UNKNOWN_REASON = N_("rule %(code)s is not met")

# Why one electrician cannot be offered one job (see `eligibility`).
NOT_A_MEMBER = "not_a_member"
WRONG_PROVIDER = "wrong_provider"
NO_OFFERS = "provider_receives_no_offers"
INACTIVE = "inactive"
NO_HOME = "no_home_base"
EXCLUDED = "excluded"
BUSY = "busy"
NOT_QUALIFIED = "not_qualified"
OFF_SHIFT = "off_shift"
INELIGIBLE_MESSAGES: dict[str, str] = {
    NOT_A_MEMBER: N_("the electrician's company is not an admitted member of this job's "
                     "alliance"),
    WRONG_PROVIDER: N_("this job belongs to another O&M provider"),
    NO_OFFERS: N_("the electrician's company receives no offers now"),
    INACTIVE: N_("the electrician is not active"),
    NO_HOME: N_("the electrician has no home base recorded"),
    EXCLUDED: N_("the electrician is excluded from this job"),
    BUSY: N_("the electrician is committed to another job"),
    NOT_QUALIFIED: N_("the electrician holds no valid certificate for the skills this job "
                      "needs"),
    OFF_SHIFT: N_("the electrician is not on shift"),
}


class NotAdmissible(ValidationFailed):
    """An application fails the alliance's rules; each failed rule is one problem."""

    status = 409

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        ServiceError.__init__(
            self, N_("The application does not meet the alliance's rules: %(details)s"),
            details="; ".join(p.text() for p in problems))


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CertificateInput:
    type: str
    number: str
    expires: date | str


@dataclass(frozen=True)
class ElectricianInput:
    """One roster entry as typed; checked through the core's dataclasses before any write."""

    code: str
    name: str
    home_lat: Decimal | float | str | None
    home_lon: Decimal | float | str | None
    skills: Sequence[str] = ()
    certificates: Sequence[CertificateInput] = ()
    shift_start: time | str | None = None
    shift_end: time | str | None = None
    weekdays: Sequence[int] = ALL_WEEKDAYS
    active: bool = True


@dataclass(frozen=True)
class ElectricianChanges:
    """A partial roster edit: fields left None stay as they are."""

    name: str | None = None
    home_lat: Decimal | float | str | None = None
    home_lon: Decimal | float | str | None = None
    skills: Sequence[str] | None = None
    shift_start: time | str | None = None
    shift_end: time | str | None = None
    clear_shift: bool = False
    weekdays: Sequence[int] | None = None
    active: bool | None = None


@dataclass(frozen=True)
class ApplicationInput:
    """A company's application to an alliance: licence, roster and (optionally) its login."""

    code: str
    name: str
    alliance: str
    licence_number: str
    licence_level: int | str | None
    licence_expires: date | str | None
    licence_issued: date | str | None = None
    electricians: Sequence[ElectricianInput] = ()
    username: str | None = None
    password: str | None = None
    display_name: str | None = None


@dataclass
class _Parsed:
    """An electrician input after parsing and core validation, ready to be stored."""

    code: str
    name: str
    home_lat: Decimal
    home_lon: Decimal
    skills: list[str]
    certificates: list[tuple[str, str, date]]
    shift_start: time | None
    shift_end: time | None
    weekdays: int
    active: bool
    core: core.Electrician = field(repr=False)


# --------------------------------------------------------------------------- parsing


def _day(raw, name: str, problems: list[FieldProblem], *, required: bool = True) -> date | None:
    if raw is None or raw == "":
        if required:
            problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
        return None
    if isinstance(raw, datetime):
        raw = raw.date()
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        problems.append(FieldProblem(name, N_("Give a date as YYYY-MM-DD.")))
        return None


def _time(raw, name: str, problems: list[FieldProblem]) -> time | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, time):
        return raw.replace(tzinfo=None, microsecond=0)
    try:
        return time.fromisoformat(str(raw).strip()).replace(tzinfo=None, microsecond=0)
    except ValueError:
        problems.append(FieldProblem(name, N_("Give a time of day as HH:MM.")))
        return None


def coordinate(raw, name: str, limit: int, problems: list[FieldProblem]) -> Decimal | None:
    """A latitude (limit 90) or longitude (limit 180) to six decimals, or a problem."""
    try:
        value = Decimal(str(raw).strip())
        if not value.is_finite() or not -limit <= value <= limit:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        problems.append(FieldProblem(name, N_("Give a number of degrees between -%(limit)s and "
                                              "%(limit)s."), {"limit": limit}))
        return None
    return value.quantize(Decimal("0.000001"))


def skill_codes(raw: Iterable[str], name: str, problems: list[FieldProblem]) -> list[str]:
    if isinstance(raw, str):
        raw = raw.split(",")
    skills = sorted({str(s).strip().lower() for s in raw if str(s).strip()})
    bad = [s for s in skills if not _SKILL.match(s)]
    if bad:
        problems.append(FieldProblem(name, N_("%(skill)s is not a skill code (lower-case "
                                              "letters, digits and _, e.g. low_voltage)."),
                                     {"skill": bad[0]}))
    elif len(",".join(skills)) > 255:
        problems.append(FieldProblem(name, N_("Too many skills.")))
    return skills


def _weekdays(raw: Iterable[int], name: str, problems: list[FieldProblem]) -> int:
    mask = 0
    for day in raw:
        try:
            number = int(day)
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= 7:
            problems.append(FieldProblem(name, N_("Weekdays are numbered 1 (Monday) to 7 "
                                                  "(Sunday).")))
            return 0
        mask |= 1 << (number - 1)
    return mask


def _core_problem(name: str, exc: Exception) -> FieldProblem:
    # The core's messages are English and precise; they are shown as the detail.
    return FieldProblem(name, N_("not accepted: %(error)s"), {"error": str(exc)})


def _core_position(lat: Decimal | None, lon: Decimal | None, name: str,
                   problems: list[FieldProblem]) -> core.Position | None:
    if lat is None or lon is None:
        return None
    try:
        return core.Position(float(lat), float(lon))
    except core.InvalidMembershipError as exc:
        problems.append(_core_problem(name, exc))
        return None


def parse_electrician(data: ElectricianInput, prefix: str,
                      problems: list[FieldProblem]) -> _Parsed | None:
    """Check one roster entry; problems are named ``<prefix>.<field>``."""
    before = len(problems)
    code = (data.code or "").strip()
    if not _CODE.match(code):
        problems.append(FieldProblem(f"{prefix}.code", N_("A code is 1 to 32 letters, digits, "
                                                          "- or _.")))
    name = (data.name or "").strip()
    if not 1 <= len(name) <= 64:
        problems.append(FieldProblem(f"{prefix}.name", N_("Give a name of 1 to 64 "
                                                          "characters.")))
    lat = coordinate(data.home_lat, f"{prefix}.home_lat", 90, problems)
    lon = coordinate(data.home_lon, f"{prefix}.home_lon", 180, problems)
    home = _core_position(lat, lon, f"{prefix}.home", problems)
    skills = skill_codes(data.skills, f"{prefix}.skills", problems)
    start = _time(data.shift_start, f"{prefix}.shift_start", problems)
    end = _time(data.shift_end, f"{prefix}.shift_end", problems)
    if (start is None) != (end is None):
        problems.append(FieldProblem(f"{prefix}.shift_end", N_("Give both the start and the "
                                                               "end of the shift, or neither.")))
    weekdays = _weekdays(data.weekdays, f"{prefix}.weekdays", problems)
    certificates: list[core.Certificate] = []
    for j, c in enumerate(data.certificates):
        where = f"{prefix}.certificates[{j}]"
        expires = _day(c.expires, f"{where}.expires", problems)
        if expires is None:
            continue
        try:
            certificates.append(core.Certificate(type=(c.type or "").strip(),
                                                 number=(c.number or "").strip(),
                                                 expires=expires))
        except core.InvalidMembershipError as exc:
            problems.append(_core_problem(where, exc))
    if len({(c.type, c.number) for c in certificates}) != len(certificates):
        problems.append(FieldProblem(f"{prefix}.certificates", N_("A certificate is listed "
                                                                  "twice.")))
    if len(problems) > before or home is None:
        return None
    try:
        checked = core.Electrician(id=code, name=name, home=home, certificates=certificates,
                                   skills=frozenset(skills))
    except core.InvalidMembershipError as exc:
        problems.append(_core_problem(prefix, exc))
        return None
    return _Parsed(code=code, name=name, home_lat=lat, home_lon=lon, skills=skills,
                   certificates=[(c.type, c.number, c.expires) for c in certificates],
                   shift_start=start, shift_end=end, weekdays=weekdays,
                   active=bool(data.active), core=checked)


def password_problems(password: str, name: str = "password") -> list[FieldProblem]:
    """The password rules: at least 10 characters, with a letter and a digit."""
    if (len(password) < 10 or not any(c.isalpha() for c in password)
            or not any(c.isdigit() for c in password)):
        return [FieldProblem(name, N_("A password has at least 10 characters, with at least "
                                      "one letter and one digit."))]
    return []


def _licence(data: ApplicationInput, problems: list[FieldProblem]) -> core.Licence | None:
    expires = _day(data.licence_expires, "licence_expires", problems)
    issued = _day(data.licence_issued, "licence_issued", problems, required=False)
    try:
        level = int(data.licence_level)
    except (TypeError, ValueError):
        problems.append(FieldProblem("licence_level", N_("The licence level is a number from "
                                                         "1 (highest) to 5.")))
        return None
    if expires is None:
        return None
    try:
        return core.Licence(number=(data.licence_number or "").strip(), level=level,
                            expires=expires, issued=issued)
    except core.InvalidMembershipError as exc:
        problems.append(_core_problem("licence", exc))
        return None


# --------------------------------------------------------------------------- rows -> core


def today(zone: str) -> date:
    return local_day(utcnow(), zone)


def shifts_around(row: Electrician, at: datetime, zone: str) -> tuple[core.Shift, ...]:
    """The electrician's shifts that could cover `at`: those starting on the local day of
    `at` or the day before (a night shift runs into the next morning) on a working weekday.
    A shift that ends at or before its start time ends on the following day."""
    if row.shift_start is None or row.shift_end is None:
        return ()
    tz = ZoneInfo(zone)
    local = at.astimezone(tz).date()
    shifts = []
    for day in (local - timedelta(days=1), local):
        if not row.weekdays >> (day.isoweekday() - 1) & 1:
            continue
        start = datetime.combine(day, row.shift_start, tz)
        end = datetime.combine(day, row.shift_end, tz)
        if end <= start:
            end += timedelta(days=1)
        shifts.append(core.Shift(start, end))
    return tuple(shifts)


def core_electrician(row: Electrician, *, around: datetime | None = None,
                     zone: str | None = None) -> core.Electrician | None:
    """The core's view of a roster row (None without a home base, which the core needs).

    A stored certificate the core refuses (an unknown type from before certificates were
    checked) counts as no certificate.
    """
    if row.home_lat is None or row.home_lon is None:
        return None
    certificates = []
    for c in row.certificates:
        try:
            certificates.append(core.Certificate(type=c.type, number=c.number, expires=c.expires))
        except core.InvalidMembershipError:
            log.warning("certificate %s of electrician %s is not valid input: ignored",
                        c.id, row.id)
    last = None
    if row.last_lat is not None and row.last_lon is not None and row.last_seen_at is not None:
        last = core.PositionFix(core.Position(float(row.last_lat), float(row.last_lon)),
                                row.last_seen_at)
    return core.Electrician(
        id=str(row.id), name=row.name,
        home=core.Position(float(row.home_lat), float(row.home_lon)),
        certificates=tuple(certificates), skills=frozenset(row.skill_list),
        shifts=shifts_around(row, around, zone) if around is not None else (),
        last_position=last)


def core_provider(row: Provider, *, around: datetime | None = None,
                  zone: str | None = None) -> core.ServiceProvider | None:
    """The core's view of a provider and its active roster (None without licence data)."""
    if not row.licence_number or row.licence_level is None or row.licence_expiry is None:
        return None
    electricians = [core_electrician(e, around=around, zone=zone)
                    for e in row.electricians if e.active]
    return core.ServiceProvider(
        id=row.code, name=row.name, alliance=row.alliance,
        licence=core.Licence(number=row.licence_number, level=row.licence_level,
                             expires=row.licence_expiry, issued=row.licence_issued),
        electricians=tuple(e for e in electricians if e is not None))


def _figure(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def reason_documents(reasons: Iterable[core.Reason]) -> list[dict]:
    """Reasons as stored and sent: [{code, figures}] with dates in ISO form."""
    return [{"code": r.code, "figures": {k: _figure(v) for k, v in r.figures}} for r in reasons]


def reason_problems(reasons: list[dict]) -> list[FieldProblem]:
    """Stored reasons as translatable problems (field: licence or electricians)."""
    problems = []
    for reason in reasons:
        code = reason["code"]
        target = {core.TOO_FEW_VALID_ELECTRICIANS: "electricians",
                  NOT_ADMITTED: "status"}.get(code, "licence")
        if code in REASON_MESSAGES:
            problems.append(FieldProblem(target, REASON_MESSAGES[code], dict(reason["figures"])))
        else:
            problems.append(FieldProblem(target, UNKNOWN_REASON, {"code": code}))
    return problems


@dataclass(frozen=True)
class StandingResult:
    receives_offers: bool
    reasons: list[dict]
    valid_electricians: int


def assess(row: Provider, day: date, *, admission: bool = False) -> StandingResult:
    """The core's admission assessment (or standing) of a stored provider on `day`."""
    provider = core_provider(row)
    if provider is None:
        return StandingResult(False, [{"code": LICENCE_MISSING, "figures": {}}], 0)
    result = (core.assess_admission(provider, day) if admission
              else core.standing(provider, day))
    ok = result.admissible if admission else result.receives_offers
    return StandingResult(ok, reason_documents(result.reasons), result.valid_electricians)


def refresh_provider(row: Provider, day: date) -> StandingResult:
    """Store a provider's standing on `day`; only admitted members ever receive offers."""
    result = assess(row, day)
    if row.status != ProviderStatus.APPROVED:
        result = StandingResult(False, [{"code": NOT_ADMITTED, "figures": {"status": row.status}},
                                        *result.reasons], result.valid_electricians)
    row.receives_offers = result.receives_offers
    row.standing_reasons = json.dumps(result.reasons, ensure_ascii=False, sort_keys=True)
    row.standing_checked_on = day
    return result


# --------------------------------------------------------------------------- access


def _user(session: Session, actor_id: int | None) -> User | None:
    if actor_id is None:
        return None
    user = session.get(User, actor_id)
    if user is None or not user.active:
        raise Forbidden(N_("Unknown or inactive user."))
    return user


def _may_manage(user: User | None, provider: Provider) -> None:
    """The company itself (its provider users) or the park operator; None is the system."""
    if user is None or user.role == Role.ADMIN:
        return
    if user.role == Role.PROVIDER and user.provider_id == provider.id:
        return
    raise Forbidden(N_("You may only manage your own company's roster."))


def may_view(user: User | None, provider: Provider) -> bool:
    return (user is None or user.role in VIEWERS
            or (user.role == Role.PROVIDER and user.provider_id == provider.id))


def provider_by_code(session: Session, code: str) -> Provider:
    provider = session.scalar(select(Provider).where(Provider.code == code))
    if provider is None:
        raise NotFound(N_("No such provider."))
    return provider


def visible_provider(session: Session, user: User | None, code: str) -> Provider:
    provider = provider_by_code(session, code)
    if not may_view(user, provider):
        raise NotFound(N_("No such provider."))
    return provider


def visible_providers(session: Session, user: User | None) -> list[Provider]:
    query = select(Provider).order_by(Provider.code)
    if user is not None and user.role not in VIEWERS:
        query = query.where(Provider.id == (user.provider_id or -1))
    return list(session.scalars(query))


def _electrician(session: Session, electrician_id: int, *, lock: bool = False) -> Electrician:
    query = select(Electrician).where(Electrician.id == electrician_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound(N_("No such electrician."))
    return row


# --------------------------------------------------------------------------- use cases


def _store_electrician(session: Session, provider: Provider, parsed: _Parsed) -> Electrician:
    row = Electrician(provider=provider, code=parsed.code, name=parsed.name,
                      skills=",".join(parsed.skills), shift_start=parsed.shift_start,
                      shift_end=parsed.shift_end, weekdays=parsed.weekdays,
                      home_lat=parsed.home_lat, home_lon=parsed.home_lon,
                      active=parsed.active)
    session.add(row)
    for kind, number, expires in parsed.certificates:
        row.certificates.append(Certificate(type=kind, number=number, expires=expires))
    return row


def apply(platform, data: ApplicationInput, *, actor_id: int | None = None,
          now: datetime | None = None) -> str:
    """A company applies to an alliance with its licence and roster (and, optionally, the
    login it will use). Everything is checked first; returns the provider code."""
    now = now or utcnow()
    problems: list[FieldProblem] = []
    code = (data.code or "").strip()
    if not _CODE.match(code):
        problems.append(FieldProblem("code", N_("A code is 1 to 32 letters, digits, - or _.")))
    name = (data.name or "").strip()
    if not 1 <= len(name) <= 128:
        problems.append(FieldProblem("name", N_("Give a name of 1 to 128 characters.")))
    if data.alliance not in Alliance.ALL:
        problems.append(FieldProblem("alliance", N_("Choose one of the alliances: %(known)s."),
                                     {"known": ", ".join(Alliance.ALL)}))
    licence = _licence(data, problems)
    parsed = [parse_electrician(e, f"electricians[{i}]", problems)
              for i, e in enumerate(data.electricians)]
    if not data.electricians:
        problems.append(FieldProblem("electricians", N_("List the company's electricians.")))
    codes = [p.code for p in parsed if p is not None]
    if len(set(codes)) != len(codes):
        problems.append(FieldProblem("electricians", N_("Each electrician needs a code of "
                                                        "their own.")))
    username = (data.username or "").strip()
    if username or data.password:
        if not 3 <= len(username) <= 64:
            problems.append(FieldProblem("username", N_("A username has 3 to 64 characters.")))
        problems.extend(password_problems(data.password or ""))
    if not problems and licence is not None:
        try:  # the core's own checks of the whole application (e.g. repeated ids)
            core.ServiceProvider(id=code, name=name, alliance=data.alliance, licence=licence,
                                 electricians=tuple(p.core for p in parsed))
        except core.InvalidMembershipError as exc:
            problems.append(_core_problem("electricians", exc))
    if problems:
        raise ValidationFailed(problems)

    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        if user is not None and user.role != Role.ADMIN:
            raise Forbidden(N_("Only the park operator enters applications for others."))
        taken = []
        if session.scalar(select(Provider.id).where(Provider.code == code)) is not None:
            taken.append(FieldProblem("code", N_("The code %(code)s is taken."), {"code": code}))
        if username and session.scalar(select(User.id).where(User.username == username)):
            taken.append(FieldProblem("username", N_("The username %(name)s is taken."),
                                      {"name": username}))
        if taken:
            raise ValidationFailed(taken)
        provider = Provider(code=code, name=name, alliance=data.alliance,
                            licence_number=licence.number, licence_level=licence.level,
                            licence_issued=licence.issued, licence_expiry=licence.expires,
                            status=ProviderStatus.APPLIED, applied_at=now,
                            receives_offers=False, standing_reasons="[]", created_at=now)
        session.add(provider)
        for item in parsed:
            _store_electrician(session, provider, item)
        if username:
            login = User(username=username, display_name=(data.display_name or name)[:128],
                         role=Role.PROVIDER, provider=provider)
            login.set_password(data.password)
            session.add(login)
        session.flush()
        log.info("provider %s applied to %s with %d electricians", code, data.alliance,
                 len(parsed))
        return code


def decide(platform, code: str, *, actor_id: int | None, approve: bool, note: str = "",
           day: date | None = None, now: datetime | None = None) -> StandingResult:
    """The park operator approves or rejects an application. Approval is refused, with every
    failed rule, while the core's admission assessment on `day` says no."""
    now = now or utcnow()
    note = (note or "").strip()
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        if user is not None and user.role != Role.ADMIN:
            raise Forbidden(N_("Only the park operator decides applications."))
        provider = provider_by_code(session, code)
        if provider.status != ProviderStatus.APPLIED:
            raise Conflict(N_("This application was decided already (%(status)s)."),
                           status=provider.status)
        day = day or local_day(now, platform.settings.park_timezone)
        if approve:
            result = assess(provider, day, admission=True)
            if not result.receives_offers:
                raise NotAdmissible(reason_problems(result.reasons))
            provider.status = ProviderStatus.APPROVED
        else:
            if not note:
                raise ValidationFailed([FieldProblem("note", N_("Say why the application is "
                                                                "rejected."))])
            provider.status = ProviderStatus.REJECTED
        provider.decided_at = now
        provider.decided_by_id = user.id if user is not None else None
        provider.decision_note = note or None
        result = refresh_provider(provider, day)
        session.flush()
        log.info("provider %s %s", code, provider.status)
        return result


def refresh_standing(platform, day: date | None = None) -> dict[str, StandingResult]:
    """Recompute and store every provider's standing on `day` (default: today): an expired
    licence or too few valid electricians stops offers at once, with the reasons kept."""
    day = day or today(platform.settings.park_timezone)
    with platform.unit_of_work() as session:
        providers = session.scalars(select(Provider).order_by(Provider.code).options(
            selectinload(Provider.electricians).selectinload(Electrician.certificates))).all()
        return {p.code: refresh_provider(p, day) for p in providers}


def _after_roster_change(platform, provider: Provider) -> None:
    refresh_provider(provider, today(platform.settings.park_timezone))


def add_electrician(platform, code: str, data: ElectricianInput, *,
                    actor_id: int | None) -> int:
    """Add an electrician to a provider's roster; returns its id."""
    problems: list[FieldProblem] = []
    parsed = parse_electrician(data, "electrician", problems)
    if problems:
        raise ValidationFailed(problems)
    with platform.unit_of_work() as session:
        provider = provider_by_code(session, code)
        _may_manage(_user(session, actor_id), provider)
        if session.scalar(select(Electrician.id).where(Electrician.provider_id == provider.id,
                                                       Electrician.code == parsed.code)):
            raise ValidationFailed([FieldProblem("electrician.code", N_(
                "The code %(code)s is taken."), {"code": parsed.code})])
        row = _store_electrician(session, provider, parsed)
        session.flush()
        _after_roster_change(platform, provider)
        session.flush()
        return row.id


def update_electrician(platform, electrician_id: int, changes: ElectricianChanges, *,
                       actor_id: int | None) -> None:
    """Change an electrician's name, home base, skills, shift, weekdays or active flag."""
    with platform.unit_of_work() as session:
        row = _electrician(session, electrician_id)
        _may_manage(_user(session, actor_id), row.provider)
        merged = ElectricianInput(
            code=row.code,
            name=changes.name if changes.name is not None else row.name,
            home_lat=changes.home_lat if changes.home_lat is not None else row.home_lat,
            home_lon=changes.home_lon if changes.home_lon is not None else row.home_lon,
            skills=changes.skills if changes.skills is not None else row.skill_list,
            certificates=[CertificateInput(c.type, c.number, c.expires)
                          for c in row.certificates],
            shift_start=None if changes.clear_shift else (
                changes.shift_start if changes.shift_start is not None else row.shift_start),
            shift_end=None if changes.clear_shift else (
                changes.shift_end if changes.shift_end is not None else row.shift_end),
            weekdays=changes.weekdays if changes.weekdays is not None else row.weekday_list,
            active=changes.active if changes.active is not None else row.active)
        problems: list[FieldProblem] = []
        parsed = parse_electrician(merged, "electrician", problems)
        if problems:
            raise ValidationFailed(problems)
        row.name, row.skills = parsed.name, ",".join(parsed.skills)
        row.home_lat, row.home_lon = parsed.home_lat, parsed.home_lon
        row.shift_start, row.shift_end = parsed.shift_start, parsed.shift_end
        row.weekdays, row.active = parsed.weekdays, parsed.active
        session.flush()
        _after_roster_change(platform, row.provider)


def put_certificate(platform, electrician_id: int, data: CertificateInput, *,
                    actor_id: int | None) -> int:
    """Add a certificate, or renew one (same type and number: its expiry date is replaced)."""
    problems: list[FieldProblem] = []
    expires = _day(data.expires, "certificate.expires", problems)
    checked = None
    if expires is not None:
        try:
            checked = core.Certificate(type=(data.type or "").strip(),
                                       number=(data.number or "").strip(), expires=expires)
        except core.InvalidMembershipError as exc:
            problems.append(_core_problem("certificate", exc))
    if problems:
        raise ValidationFailed(problems)
    with platform.unit_of_work() as session:
        row = _electrician(session, electrician_id)
        _may_manage(_user(session, actor_id), row.provider)
        existing = next((c for c in row.certificates
                         if c.type == checked.type and c.number == checked.number), None)
        if existing is None:
            existing = Certificate(type=checked.type, number=checked.number,
                                   expires=checked.expires)
            row.certificates.append(existing)
        else:
            existing.expires = checked.expires
        session.flush()
        _after_roster_change(platform, row.provider)
        session.flush()
        return existing.id


def remove_certificate(platform, certificate_id: int, *, actor_id: int | None) -> None:
    with platform.unit_of_work() as session:
        certificate = session.get(Certificate, certificate_id)
        if certificate is None:
            raise NotFound(N_("No such certificate."))
        row = certificate.electrician
        _may_manage(_user(session, actor_id), row.provider)
        row.certificates.remove(certificate)
        session.flush()
        _after_roster_change(platform, row.provider)


def set_position(row: Electrician, lat, lon, at: datetime) -> None:
    """Record where an electrician was seen (checked as the core's PositionFix)."""
    problems: list[FieldProblem] = []
    lat_value = coordinate(lat, "lat", 90, problems)
    lon_value = coordinate(lon, "lon", 180, problems)
    position = _core_position(lat_value, lon_value, "position", problems)
    if position is not None:
        try:
            core.PositionFix(position, at)
        except core.InvalidMembershipError as exc:
            problems.append(_core_problem("at", exc))
    if problems:
        raise ValidationFailed(problems)
    if row.last_seen_at is not None and at < row.last_seen_at:
        return  # an older report arriving late does not move the electrician back
    row.last_lat, row.last_lon, row.last_seen_at = lat_value, lon_value, at


def update_position(platform, electrician_id: int, lat, lon, *, actor_id: int | None,
                    at: datetime | None = None) -> None:
    """An electrician's position report (sent by its company's app or staff)."""
    now = utcnow()
    at = at or now
    if at.utcoffset() is not None and at > now + timedelta(minutes=1):
        raise ValidationFailed([FieldProblem("at", N_("A position cannot be reported from the "
                                                      "future."))])
    with platform.unit_of_work() as session:
        row = _electrician(session, electrician_id)
        _may_manage(_user(session, actor_id), row.provider)
        set_position(row, lat, lon, at)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ElectricianStatus:
    """An electrician as the roster page and CLI show it on a day."""

    electrician: Electrician
    valid: bool
    offerable_skills: list[str]
    expiring: list[dict]


def roster(session: Session, user: User | None, code: str, day: date,
           warn_days: int = 30) -> tuple[Provider, StandingResult, list[ElectricianStatus]]:
    """A provider's standing and roster on `day`, with what is valid and what runs out soon."""
    provider = visible_provider(session, user, code)
    standing = assess(provider, day) if provider.status == ProviderStatus.APPROVED \
        else assess(provider, day, admission=True)
    whole = core_provider(provider)
    expiring: dict[str, list[dict]] = {}
    if whole is not None:
        for x in core.expiries_within(whole, day, warn_days):
            if x.kind == "certificate":
                expiring.setdefault(x.electrician_id, []).append(
                    {"type": x.certificate_type, "number": x.number,
                     "expires": x.expires.isoformat(), "days_left": x.days_left})
    rows = []
    for e in provider.electricians:
        checked = core_electrician(e)
        if checked is None:
            rows.append(ElectricianStatus(e, False, [], []))
            continue
        rows.append(ElectricianStatus(e, core.is_valid_electrician(checked, day),
                                      sorted(core.offerable_skills(checked, day)),
                                      expiring.get(str(e.id), [])))
    return provider, standing, rows


# --------------------------------------------------------------------------- offers


@dataclass(frozen=True)
class Candidate:
    """An electrician who may be offered a job now, and how far away they are."""

    electrician_id: int
    code: str
    name: str
    provider_code: str
    minutes: float
    in_time: bool | None  # urgent jobs: can they be on site by the deadline?


@dataclass
class _Context:
    """What every eligibility check of one job at one time shares."""

    job: Job
    at: datetime
    zone: str
    day: date
    on_urgent: set[int]  # electricians holding an active urgent job
    at_work: set[int]  # electricians travelling to or working on any job
    excluded: set[int]
    standing: dict[int, bool] = field(default_factory=dict)


def _context(session: Session, job: Job, at: datetime) -> _Context:
    zone = job.park.timezone
    rows = session.execute(select(Job.electrician_id, Job.status, Job.urgent).where(
        Job.electrician_id.is_not(None), Job.status.in_(ACTIVE_JOB_STATUSES), Job.id != job.id))
    on_urgent: set[int] = set()
    at_work: set[int] = set()
    for electrician_id, status, urgent in rows:
        if urgent and commits_electrician(status):
            on_urgent.add(electrician_id)
        if status in UNDER_WAY:
            at_work.add(electrician_id)
    when = max(at, job.window_start) if job.window_start is not None else at
    return _Context(job=job, at=when, zone=zone, day=local_day(when, zone),
                    on_urgent=on_urgent, at_work=at_work,
                    excluded={x.electrician_id for x in job.exclusions})


def _reasons(ctx: _Context, row: Electrician) -> list[str]:
    job, provider = ctx.job, row.provider
    if provider.status != ProviderStatus.APPROVED or provider.alliance != job.alliance:
        return [NOT_A_MEMBER]
    if job.provider_id is not None and provider.id != job.provider_id:
        return [WRONG_PROVIDER]
    reasons = []
    if provider.id not in ctx.standing:
        ctx.standing[provider.id] = assess(provider, ctx.day).receives_offers
    if not ctx.standing[provider.id]:
        reasons.append(NO_OFFERS)
    if not row.active:
        reasons.append(INACTIVE)
    if row.id in ctx.excluded:
        reasons.append(EXCLUDED)
    # An urgent job needs someone neither holding an urgent job nor at work on another one
    # (planned work offered or accepted for later holds nobody now); a planned job only
    # someone not holding an urgent job (planned jobs queue up on one person's day).
    if row.id in ctx.on_urgent or (job.urgent and row.id in ctx.at_work):
        reasons.append(BUSY)
    checked = core_electrician(row, around=ctx.at, zone=ctx.zone)
    if checked is None:
        reasons.append(NO_HOME)
        return reasons
    if not core.can_be_offered(checked, ctx.day, job.skill_list):
        reasons.append(NOT_QUALIFIED)
    if not core.on_shift(checked, ctx.at):
        reasons.append(OFF_SHIFT)
    return reasons


def eligibility(session: Session, job: Job, electrician: Electrician,
                at: datetime) -> list[str]:
    """Why `electrician` may not be offered `job` at `at` (empty: they may)."""
    return _reasons(_context(session, job, at), electrician)


def ineligible_problems(reasons: list[str]) -> list[FieldProblem]:
    return [FieldProblem("electrician", INELIGIBLE_MESSAGES[r]) for r in reasons]


def position_of(row: Electrician, at: datetime) -> tuple[float, float]:
    """Where the electrician is taken to be at `at`: the last reported position while it is
    fresh, else the home base (which an offerable electrician always has)."""
    if row.last_seen_at is not None and at - row.last_seen_at <= POSITION_FRESH_FOR:
        return float(row.last_lat), float(row.last_lon)
    return float(row.home_lat), float(row.home_lon)


def _travel_minutes(row: Electrician, job: Job, at: datetime) -> float:
    return TRAVEL.minutes(position_of(row, at), (float(job.lat), float(job.lon)))


def offerable_electricians(session: Session, job: Job, at: datetime) -> list[Candidate]:
    """Every electrician who may be offered `job` at `at`, nearest first: their company is an
    admitted member of the job's alliance (the job's own provider for a butler job) receiving
    offers; they are active, hold a valid certificate for each needed skill, are on shift, are
    not excluded from the job and not committed elsewhere."""
    ctx = _context(session, job, at)
    query = (select(Electrician).join(Provider)
             .where(Provider.status == ProviderStatus.APPROVED,
                    Provider.alliance == job.alliance, Electrician.active.is_(True))
             .options(selectinload(Electrician.certificates))
             .order_by(Provider.code, Electrician.code))
    if job.provider_id is not None:
        query = query.where(Provider.id == job.provider_id)
    found = []
    for row in session.scalars(query):
        if _reasons(ctx, row):
            continue
        minutes = _travel_minutes(row, job, ctx.at)
        in_time = None
        if job.on_site_deadline is not None:
            in_time = ctx.at + timedelta(minutes=minutes) <= job.on_site_deadline
        found.append(Candidate(row.id, row.code, row.name, row.provider.code,
                               round(minutes, 1), in_time))
    found.sort(key=lambda c: (c.minutes, c.provider_code, c.code))
    return found


# --------------------------------------------------------------------------- documents


def _document_problem(name: str) -> ValidationFailed:
    return ValidationFailed([FieldProblem(name, N_("missing or not of the expected form"))])


def electrician_from_document(doc: dict, name: str = "electrician") -> ElectricianInput:
    """An electrician as JSON (the API's and the CLI's roster form) as input."""
    if not isinstance(doc, dict):
        raise _document_problem(name)
    try:
        certificates = [CertificateInput(type=c.get("type", ""), number=c.get("number", ""),
                                         expires=c.get("expires"))
                        for c in doc.get("certificates") or []]
        return ElectricianInput(
            code=str(doc.get("code", "")), name=str(doc.get("name", "")),
            home_lat=doc.get("home_lat"), home_lon=doc.get("home_lon"),
            skills=doc.get("skills") or (), certificates=certificates,
            shift_start=doc.get("shift_start"), shift_end=doc.get("shift_end"),
            weekdays=doc.get("weekdays") or ALL_WEEKDAYS, active=doc.get("active", True))
    except (AttributeError, TypeError) as exc:
        raise _document_problem(name) from exc


def application_from_document(doc: dict) -> ApplicationInput:
    """An application as JSON: {code, name, alliance, licence: {number, level, issued,
    expires}, electricians: [...], login: {username, password}} as input."""
    if not isinstance(doc, dict):
        raise _document_problem("application")
    licence = doc.get("licence") or {}
    login = doc.get("login") or {}
    if not isinstance(licence, dict) or not isinstance(login, dict):
        raise _document_problem("licence")
    electricians = doc.get("electricians") or []
    if not isinstance(electricians, list):
        raise _document_problem("electricians")
    return ApplicationInput(
        code=str(doc.get("code", "")), name=str(doc.get("name", "")),
        alliance=str(doc.get("alliance", "")), licence_number=str(licence.get("number", "")),
        licence_level=licence.get("level"), licence_expires=licence.get("expires"),
        licence_issued=licence.get("issued"),
        electricians=[electrician_from_document(e, f"electricians[{i}]")
                      for i, e in enumerate(electricians)],
        username=login.get("username"), password=login.get("password"),
        display_name=login.get("display_name"))
