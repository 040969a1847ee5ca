"""Jobs: enterprise repair requests and every step of a job's life, from the offer to the
customer's sign-off.

Each action loads the job's state, lets the `alliance.lifecycle` core apply the event, and
stores the new state with one `job_events` row in one transaction; the core's refusals
become `JobRefused` (409) with a message per refusal code and nothing changes. Who may act:
an enterprise on its own jobs, a provider for its own electricians, staff (settlement,
admin) on any job; `actor_id=None` is the platform itself (sweeps, tasks, the demo).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from alliance import lifecycle as core
from alliance.membership import LOW_VOLTAGE

from ..models import (
    Alliance,
    Attachment,
    AttachmentKind,
    Electrician,
    Enterprise,
    Job,
    JobEvent,
    JobEventKind,
    JobExclusion,
    OmContractItem,
    Provider,
    ProviderStatus,
    Role,
    User,
    utcnow,
)
from ..storage import PHOTO_FORMATS, SIGNATURE_FORMATS, CheckedImage, FileStorage
from . import alliance as membership
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

# Staff who may act on any job (the dispatch desk); auditors only read.
JOB_STAFF = (Role.ADMIN, Role.SETTLEMENT)
JOB_READERS = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
MAX_REQUEST_PHOTOS = 10
DEFAULT_SKILLS = (LOW_VOLTAGE,)

REFUSALS: dict[str, str] = {
    core.JOB_CLOSED: N_("This job is closed or cancelled; nothing was changed."),
    core.OUT_OF_ORDER: N_("This report is older than the job's last event; nothing was "
                          "changed."),
    core.WRONG_STATUS: N_("This is not possible while the job is %(status)s."),
    core.NOT_OFFERED_TO_YOU: N_("This job was not offered to that electrician."),
    core.NOT_ASSIGNED_TO_YOU: N_("This job is not assigned to that electrician."),
    core.OFFER_EXPIRED: N_("The offer has expired."),
    core.OFFER_STILL_OPEN: N_("The offer is still open."),
    core.ELECTRICIAN_EXCLUDED: N_("That electrician is excluded from this job."),
    core.NO_PHOTO: N_("A job closes only with at least one photo of the work."),
    core.NO_SIGNATURE: N_("A job closes only with the customer's signature."),
}
UNKNOWN_REFUSAL = N_("The job refused this step (%(code)s).")

# Which events release the electrician (and exclude them from the job).
_EXCLUDING = {core.Decline: JobEventKind.DECLINE, core.OfferExpired: JobEventKind.OFFER_EXPIRED,
              core.NoShow: JobEventKind.NO_SHOW, core.CannotComplete: JobEventKind.CANNOT_COMPLETE}
_KINDS = {core.Offer: JobEventKind.OFFER, core.Accept: JobEventKind.ACCEPT,
          core.Decline: JobEventKind.DECLINE, core.OfferExpired: JobEventKind.OFFER_EXPIRED,
          core.StartTravel: JobEventKind.START_TRAVEL, core.CheckIn: JobEventKind.CHECK_IN,
          core.NoShow: JobEventKind.NO_SHOW, core.StartWork: JobEventKind.START_WORK,
          core.AttachPhoto: JobEventKind.ATTACH_PHOTO,
          core.RequestSignOff: JobEventKind.REQUEST_SIGN_OFF, core.SignOff: JobEventKind.SIGN_OFF,
          core.Cancel: JobEventKind.CANCEL, core.CannotComplete: JobEventKind.CANNOT_COMPLETE,
          core.Escalate: JobEventKind.ESCALATE}


class JobRefused(Conflict):
    """The core refused the step in the job's current state; `code` is the core's code."""

    def __init__(self, code: str, status: str):
        super().__init__(REFUSALS.get(code, UNKNOWN_REFUSAL),
                         **({"status": status} if code == core.WRONG_STATUS else
                            {} if code in REFUSALS else {"code": code}))
        self.code = code


class NotOfferable(ValidationFailed):
    """The electrician may not be offered this job now; each reason is one problem."""

    status = 409

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        ServiceError.__init__(self, N_("That electrician cannot be offered this job: "
                                       "%(details)s"),
                              details="; ".join(p.text() for p in problems))


class DoubleBooked(Conflict):
    def __init__(self):
        super().__init__(N_("That electrician already holds an active urgent job."))


# --------------------------------------------------------------------------- state


def _electrician_key(electrician_id: int | None) -> str | None:
    return None if electrician_id is None else str(electrician_id)


def _actor_key(user: User | None) -> str:
    return "system" if user is None else f"user:{user.id}"


def _last_seq(session: Session, job: Job) -> int:
    return session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job.id)) or 0


def state_of(session: Session, job: Job) -> core.JobState:
    """The core's state of a stored job."""
    return core.JobState(
        id=job.code, kind=job.kind, urgent=job.urgent, created_at=job.created_at,
        on_site_deadline=job.on_site_deadline, status=job.status,
        electrician_id=_electrician_key(job.electrician_id), offered_at=job.offered_at,
        offer_expires_at=job.offer_expires_at, accepted_at=job.accepted_at,
        checked_in_at=job.checked_in_at, clock_stopped_at=job.clock_stopped_at,
        excluded=frozenset(str(x.electrician_id) for x in job.exclusions), photos=job.photos,
        signed_off_by=(f"user:{job.signed_off_by_id}" if job.signed_off_by_id else None),
        closed_at=job.closed_at,
        cancelled_by=(f"user:{job.cancelled_by_id}" if job.cancelled_by_id else None),
        last_reason=job.last_reason, updated_at=job.last_event_at,
        events_applied=max(_last_seq(session, job) - 1, 0))


def _write_state(job: Job, after: core.JobState) -> None:
    job.status = after.status.value
    job.electrician_id = None if after.electrician_id is None else int(after.electrician_id)
    job.offered_at = after.offered_at
    job.offer_expires_at = after.offer_expires_at
    job.accepted_at = after.accepted_at
    job.checked_in_at = after.checked_in_at
    job.clock_stopped_at = after.clock_stopped_at
    job.closed_at = after.closed_at
    job.photos = after.photos
    job.last_reason = after.last_reason
    job.last_event_at = after.updated_at


def _jsonable(data: dict) -> str:
    return json.dumps({k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
                       for k, v in data.items() if v is not None},
                      ensure_ascii=False, sort_keys=True)


def _is_double_booking(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names the column of the (only) unique index on it.
    return "uq_jobs_active_urgent_electrician" in text or "jobs.electrician_id" in text


def apply_event(session: Session, actor: User | None, job: Job, event, *,
                data: dict | None = None) -> JobEvent:
    """Apply one event through the core and store state + event row (flushed, not
    committed). Refusals raise before anything is written."""
    before = state_of(session, job)
    try:
        after = core.apply(before, event)
    except core.TransitionRefused as exc:
        raise JobRefused(exc.code, job.status) from exc
    except core.InvalidJobInputError as exc:
        raise ValidationFailed([FieldProblem("event", N_("not accepted: %(error)s"),
                                             {"error": str(exc)})]) from exc
    _write_state(job, after)
    kind = _KINDS[type(event)]
    if type(event) in _EXCLUDING:
        for key in sorted(after.excluded - before.excluded):
            job.exclusions.append(JobExclusion(electrician_id=int(key), reason=kind,
                                               excluded_at=event.at))
    electrician = getattr(event, "electrician_id", None) or before.electrician_id
    row = JobEvent(job=job, seq=before.events_applied + 2, kind=kind, at=event.at,
                   actor_id=actor.id if actor is not None else None,
                   electrician_id=int(electrician) if electrician else None,
                   data=_jsonable({**(data or {}),
                                   "reason": getattr(event, "reason", None) or None}))
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        if _is_double_booking(exc):
            raise DoubleBooked() from exc
        raise
    except StaleDataError as exc:
        raise Conflict(N_("The job was changed by someone else meanwhile; reload it and try "
                          "again.")) from exc
    session.expire(job, ["electrician"])
    return row


# --------------------------------------------------------------------------- access


def _user(session: Session, actor_id: int | None) -> User | None:
    if actor_id is None:
        return None
    user = session.get(User, actor_id)
    if user is None or not user.active:
        raise Forbidden(N_("Unknown or inactive user."))
    return user


def _is_staff(user: User | None) -> bool:
    return user is None or user.role in JOB_STAFF


def _require_staff(user: User | None) -> None:
    if not _is_staff(user):
        raise Forbidden(N_("Only the dispatch desk may do this."))


def _require_customer(user: User | None, job: Job) -> None:
    if _is_staff(user):
        return
    if user.role == Role.ENTERPRISE and user.enterprise_id == job.enterprise_id:
        return
    raise Forbidden(N_("Only the enterprise that raised this job may do this."))


def _require_provider_of(session: Session, user: User | None,
                         electrician_id: int | None) -> None:
    if _is_staff(user):
        return
    if user.role == Role.PROVIDER and electrician_id is not None:
        row = session.get(Electrician, electrician_id)
        if row is not None and row.provider_id == user.provider_id:
            return
    raise Forbidden(N_("Only the company of the job's electrician may do this."))


def may_view(user: User | None, job: Job) -> bool:
    if user is None or user.role in JOB_READERS:
        return True
    if user.role == Role.ENTERPRISE:
        return user.enterprise_id == job.enterprise_id
    if user.role == Role.PROVIDER:
        if job.provider_id is not None and job.provider_id == user.provider_id:
            return True
        return job.electrician is not None and job.electrician.provider_id == user.provider_id
    return False


def _job(session: Session, code: str) -> Job:
    job = session.scalar(select(Job).where(Job.code == code))
    if job is None:
        raise NotFound(N_("No such job."))
    return job


def get_job(session: Session, user: User | None, code: str) -> Job:
    """A job its viewer may see (others get NotFound, not a hint that it exists)."""
    job = _job(session, code)
    if not may_view(user, job):
        raise NotFound(N_("No such job."))
    return job


def visible_jobs(session: Session, user: User | None, *, open_only: bool = False) -> list[Job]:
    """The jobs a user may see, newest first: an enterprise its own, a provider those of its
    electricians and its butler jobs, staff all."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
    if user is not None and user.role == Role.ENTERPRISE:
        query = query.where(Job.enterprise_id == user.enterprise_id)
    elif user is not None and user.role == Role.PROVIDER:
        mine = select(Electrician.id).where(Electrician.provider_id == user.provider_id)
        query = query.where(or_(Job.provider_id == user.provider_id,
                                Job.electrician_id.in_(mine)))
    elif user is not None and user.role not in JOB_READERS:
        return []
    if open_only:
        query = query.where(Job.status.not_in([s.value for s in core.TERMINAL_STATUSES]))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Clock:
    """The on-site promise of an urgent job (None values for a non-urgent one)."""

    time_left_s: int | None
    sla_met: bool | None


def clock(session: Session, job: Job, now: datetime) -> Clock:
    state = state_of(session, job)
    left = core.time_left(state, now)
    return Clock(None if left is None else int(left.total_seconds()), core.sla_met(state))


# --------------------------------------------------------------------------- creation


@dataclass(frozen=True)
class RepairRequest:
    """An enterprise's repair request as typed."""

    lat: Decimal | float | str
    lon: Decimal | float | str
    title: str
    description: str = ""
    urgent: bool = True
    skills: Sequence[str] = DEFAULT_SKILLS
    window_start: datetime | None = None
    window_end: datetime | None = None
    service_minutes: int = 60
    # Left out: the shared-electricians pool. A butler member's code: that O&M provider.
    provider_code: str | None = None


def new_code(at: datetime, zone: str) -> str:
    return f"J{at.astimezone(ZoneInfo(zone)):%y%m%d}-{secrets.token_hex(3).upper()}"


def create_job(session: Session, *, enterprise: Enterprise, kind: str, title: str,
               lat: Decimal, lon: Decimal, urgent: bool, at: datetime,
               description: str = "", skills: Sequence[str] = DEFAULT_SKILLS,
               provider: Provider | None = None, window_start: datetime | None = None,
               window_end: datetime | None = None, service_minutes: int = 60,
               created_by: User | None = None, data: dict | None = None,
               contract_item: OmContractItem | None = None,
               due_on: date | None = None) -> tuple[Job, JobEvent]:
    """Store a new job (state from the core's `new_job`) and its creation event; a job of
    an O&M contract names the contract item and the day it is due."""
    park = enterprise.park
    code = new_code(at, park.timezone)
    try:
        state = core.new_job(code, kind, urgent=urgent, created_at=at)
    except core.InvalidJobInputError as exc:
        raise ValidationFailed([FieldProblem("job", N_("not accepted: %(error)s"),
                                             {"error": str(exc)})]) from exc
    job = Job(code=code, park=park, enterprise=enterprise, kind=state.kind.value,
              alliance=(Alliance.ENERGY_CLOUD_BUTLER if provider is not None
                        else Alliance.SHARED_ELECTRICIANS),
              provider=provider, urgent=urgent, title=title, description=description,
              lat=lat, lon=lon, required_skills=",".join(skills), window_start=window_start,
              window_end=window_end, service_minutes=service_minutes,
              status=state.status.value, on_site_deadline=state.on_site_deadline, photos=0,
              created_by_id=created_by.id if created_by is not None else None,
              created_at=at, last_event_at=state.updated_at, contract_item=contract_item,
              due_on=due_on)
    session.add(job)
    event = JobEvent(job=job, seq=1, kind=JobEventKind.CREATED, at=at,
                     actor_id=created_by.id if created_by is not None else None,
                     data=_jsonable({"urgent": urgent, **(data or {})}))
    session.add(event)
    session.flush()
    return job, event


def store_attachment(session: Session, storage: FileStorage, job: Job, event: JobEvent,
                     image: CheckedImage, kind: str, user: User | None) -> Attachment:
    key = storage.put(image)
    attachment = Attachment(job=job, event_id=event.id, kind=kind, storage_key=key,
                            content_type=image.content_type, size_bytes=image.size,
                            sha256=image.sha256, uploaded_at=event.at,
                            uploaded_by_id=user.id if user is not None else None)
    session.add(attachment)
    session.flush()
    return attachment


def request_repair(platform, data: RepairRequest, *, actor_id: int,
                   photos: Sequence[bytes] = (), at: datetime | None = None) -> str:
    """An enterprise asks for a repair at a place (urgent: on site within 30 minutes).
    Photos are optional and must be real images; returns the job's code."""
    at = at or utcnow()
    problems: list[FieldProblem] = []
    lat = membership.coordinate(data.lat, "lat", 90, problems)
    lon = membership.coordinate(data.lon, "lon", 180, problems)
    title = (data.title or "").strip()
    if not 1 <= len(title) <= 200:
        problems.append(FieldProblem("title", N_("Say in a few words what is wrong (at most "
                                                 "200 characters).")))
    skills = membership.skill_codes(data.skills or DEFAULT_SKILLS, "skills", problems)
    if not isinstance(data.service_minutes, int) or not 1 <= data.service_minutes <= 24 * 60:
        problems.append(FieldProblem("service_minutes", N_("Give the expected work in minutes "
                                                           "(1 to 1440).")))
    if data.window_start and data.window_end and data.window_end <= data.window_start:
        problems.append(FieldProblem("window_end", N_("The time window must end after it "
                                                      "starts.")))
    for name, value in (("window_start", data.window_start), ("window_end", data.window_end)):
        if value is not None and value.utcoffset() is None:
            problems.append(FieldProblem(name, N_("Give the time with its UTC offset.")))
    if len(photos) > MAX_REQUEST_PHOTOS:
        problems.append(FieldProblem("photos", N_("At most %(n)s photos."),
                                     {"n": MAX_REQUEST_PHOTOS}))
    if problems:
        raise ValidationFailed(problems)
    images = [platform.storage.check(p, field="photos") for p in photos]

    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        if user is None or user.role != Role.ENTERPRISE:
            raise Forbidden(N_("Only an enterprise raises repair requests."))
        provider = None
        if data.provider_code:
            provider = session.scalar(select(Provider).where(
                Provider.code == data.provider_code,
                Provider.alliance == Alliance.ENERGY_CLOUD_BUTLER,
                Provider.status == ProviderStatus.APPROVED))
            if provider is None:
                raise ValidationFailed([FieldProblem("provider", N_(
                    "%(code)s is not an admitted O&M provider of the energy-cloud butler "
                    "alliance."), {"code": data.provider_code})])
        job, event = create_job(
            session, enterprise=user.enterprise, kind=core.JobKind.REPAIR.value, title=title,
            lat=lat, lon=lon, urgent=bool(data.urgent), at=at,
            description=(data.description or "").strip(), skills=skills, provider=provider,
            window_start=data.window_start, window_end=data.window_end,
            service_minutes=data.service_minutes, created_by=user,
            data={"photos": len(images)})
        for image in images:
            store_attachment(session, platform.storage, job, event, image,
                             AttachmentKind.PHOTO, user)
        log.info("repair request %s by %s (urgent: %s)", job.code, user.username, job.urgent)
        return job.code


# --------------------------------------------------------------------------- lifecycle


def _act(platform, code: str, actor_id: int | None,
         step: Callable[[Session, User | None, Job], JobEvent | None]) -> str:
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        job = _job(session, code)
        step(session, user, job)
        return job.code


def offer(platform, code: str, electrician_id: int, *, actor_id: int | None,
          at: datetime | None = None, expires_at: datetime | None = None) -> str:
    """Offer a job to one electrician until `expires_at` (default: the configured minutes).

    The electrician's row is locked first and must be offerable (see
    `alliance.offerable_electricians`); the database's partial unique index refuses a
    second active urgent job for the same person even if two offers race."""
    at = at or utcnow()
    expires_at = expires_at or at + timedelta(minutes=platform.settings.offer_minutes)

    def step(session, user, job):
        electrician = session.scalar(select(Electrician).where(
            Electrician.id == electrician_id).with_for_update())
        if electrician is None:
            raise NotFound(N_("No such electrician."))
        if not _is_staff(user):
            # A butler provider dispatches its own jobs to its own electricians.
            if not (user.role == Role.PROVIDER and job.provider_id == user.provider_id
                    and electrician.provider_id == user.provider_id):
                raise Forbidden(N_("Only the dispatch desk may do this."))
        reasons = membership.eligibility(session, job, electrician, at)
        if reasons:
            raise NotOfferable(membership.ineligible_problems(reasons))
        return apply_event(session, user, job, core.Offer(str(electrician.id), at, expires_at),
                      data={"expires_at": expires_at})

    return _act(platform, code, actor_id, step)


def _electrician_step(event_type):
    """A step the assigned (or offered) electrician's company reports."""

    def run(platform, code: str, *, actor_id: int | None, electrician_id: int | None = None,
            at: datetime | None = None, **extra) -> str:
        when = at or utcnow()

        def step(session, user, job):
            who = electrician_id if electrician_id is not None else job.electrician_id
            _require_provider_of(session, user, who)
            if who is None:
                raise JobRefused(core.WRONG_STATUS, job.status)
            return apply_event(session, user, job, event_type(str(who), when, **extra))

        return _act(platform, code, actor_id, step)

    return run


def accept(platform, code: str, *, actor_id: int | None, electrician_id: int | None = None,
           at: datetime | None = None) -> str:
    """The offered electrician takes the job (until the offer expires)."""
    return _electrician_step(core.Accept)(platform, code, actor_id=actor_id,
                                          electrician_id=electrician_id, at=at)


def start_travel(platform, code: str, *, actor_id: int | None,
                 electrician_id: int | None = None, at: datetime | None = None) -> str:
    """The assigned electrician sets off."""
    return _electrician_step(core.StartTravel)(platform, code, actor_id=actor_id,
                                               electrician_id=electrician_id, at=at)


def start_work(platform, code: str, *, actor_id: int | None,
               electrician_id: int | None = None, at: datetime | None = None) -> str:
    """The electrician on site starts the work."""
    return _electrician_step(core.StartWork)(platform, code, actor_id=actor_id,
                                             electrician_id=electrician_id, at=at)


def request_sign_off(platform, code: str, *, actor_id: int | None,
                     electrician_id: int | None = None, at: datetime | None = None) -> str:
    """The work is done: the customer is asked to sign it off."""
    return _electrician_step(core.RequestSignOff)(platform, code, actor_id=actor_id,
                                                  electrician_id=electrician_id, at=at)


def decline(platform, code: str, *, actor_id: int | None, reason: str = "",
            electrician_id: int | None = None, at: datetime | None = None) -> str:
    """The offered electrician turns the job down; they are never offered it again."""
    return _electrician_step(core.Decline)(platform, code, actor_id=actor_id,
                                           electrician_id=electrician_id, at=at,
                                           reason=(reason or "").strip())


def cannot_complete(platform, code: str, reason: str, *, actor_id: int | None,
                    escalate: bool = False, electrician_id: int | None = None,
                    at: datetime | None = None) -> str:
    """On site the electrician cannot finish: back to dispatch (or to staff, escalated)."""
    if not (reason or "").strip():
        raise ValidationFailed([FieldProblem("reason", N_("Say why."))])
    return _electrician_step(core.CannotComplete)(
        platform, code, actor_id=actor_id, electrician_id=electrician_id, at=at,
        reason=reason.strip(), escalate=bool(escalate))


def check_in(platform, code: str, *, actor_id: int | None, electrician_id: int | None = None,
             lat=None, lon=None, at: datetime | None = None) -> str:
    """The electrician is on site (the first check-in stops the 30-minute clock); a position
    sent with it is recorded as the electrician's last known position."""
    at = at or utcnow()

    def step(session, user, job):
        who = electrician_id if electrician_id is not None else job.electrician_id
        _require_provider_of(session, user, who)
        if who is None:
            raise JobRefused(core.WRONG_STATUS, job.status)
        row = apply_event(session, user, job, core.CheckIn(str(who), at),
                     data={"lat": None if lat is None else str(lat),
                           "lon": None if lon is None else str(lon)})
        if lat is not None and lon is not None:
            membership.set_position(session.get(Electrician, who), lat, lon, at)
        return row

    return _act(platform, code, actor_id, step)


def no_show(platform, code: str, *, actor_id: int | None, at: datetime | None = None) -> str:
    """The accepted electrician did not turn up: back to dispatch, and excluded from the job."""
    at = at or utcnow()

    def step(session, user, job):
        _require_staff(user)
        return apply_event(session, user, job, core.NoShow(at))

    return _act(platform, code, actor_id, step)


def escalate(platform, code: str, reason: str, *, actor_id: int | None,
             at: datetime | None = None) -> str:
    """Hand a job nobody holds to staff and the provider (nobody can arrive in time)."""
    at = at or utcnow()
    if not (reason or "").strip():
        raise ValidationFailed([FieldProblem("reason", N_("Say why."))])

    def step(session, user, job):
        _require_staff(user)
        return apply_event(session, user, job, core.Escalate(at, reason.strip()))

    return _act(platform, code, actor_id, step)


def cancel(platform, code: str, reason: str, *, actor_id: int | None,
           at: datetime | None = None) -> str:
    """The customer (or staff) calls the job off; the electrician is released."""
    at = at or utcnow()
    if not (reason or "").strip():
        raise ValidationFailed([FieldProblem("reason", N_("Say why."))])

    def step(session, user, job):
        _require_customer(user, job)
        job.cancelled_by_id = user.id if user is not None else None  # rolled back if refused
        return apply_event(session, user, job, core.Cancel(_actor_key(user), at, reason.strip()))

    return _act(platform, code, actor_id, step)


def attach_photo(platform, code: str, data: bytes, *, actor_id: int | None,
                 at: datetime | None = None) -> int:
    """A photo of the work (on site, in progress or awaiting sign-off); returns its id.
    The file is checked before anything else and stored only if the job takes it."""
    at = at or utcnow()
    image = platform.storage.check(data, field="photo", formats=PHOTO_FORMATS)
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        job = _job(session, code)
        _require_provider_of(session, user, job.electrician_id)
        event = apply_event(session, user, job, core.AttachPhoto(at),
                       data={"sha256": image.sha256})
        return store_attachment(session, platform.storage, job, event, image, AttachmentKind.PHOTO,
                       user).id


def sign_off(platform, code: str, signature: bytes | None, *, actor_id: int | None,
             signer_name: str = "", at: datetime | None = None) -> str:
    """The customer signs the finished job off (a PNG of the signature); it closes only with
    the signature and at least one photo of the work."""
    at = at or utcnow()
    image = None
    if signature:
        image = platform.storage.check(signature, field="signature", formats=SIGNATURE_FORMATS)
    signer = (signer_name or "").strip()
    if len(signer) > 64:
        raise ValidationFailed([FieldProblem("signer_name", N_("At most 64 characters."))])
    with platform.unit_of_work() as session:
        user = _user(session, actor_id)
        job = _job(session, code)
        _require_customer(user, job)
        job.signed_off_by_id = user.id if user is not None else None  # rolled back if refused
        job.signer_name = signer or None
        event = apply_event(session, user, job,
                       core.SignOff(_actor_key(user), at, signature=image is not None),
                       data={"signer": signer or None})
        store_attachment(session, platform.storage, job, event, image, AttachmentKind.SIGNATURE,
                         user)
        return job.code


def expire_offers(platform, now: datetime | None = None) -> list[str]:
    """Take back every offer open past its expiry (one transaction per job); the electrician
    is excluded from that job. Returns the codes of the jobs sent back to dispatch."""
    now = now or utcnow()
    with platform.unit_of_work() as session:
        codes = list(session.scalars(select(Job.code).where(
            Job.status == core.JobStatus.OFFERED.value, Job.offer_expires_at <= now)
            .order_by(Job.offer_expires_at, Job.id)))
    expired = []
    for code in codes:
        try:
            _act(platform, code, None,
                 lambda session, user, job: apply_event(session, user, job, core.OfferExpired(now)))
        except (JobRefused, Conflict) as exc:  # accepted or changed meanwhile: leave it
            log.info("offer of %s not expired: %s", code, exc)
            continue
        expired.append(code)
    return expired


def attachment(session: Session, user: User | None, code: str, attachment_id: int) -> Attachment:
    job = get_job(session, user, code)
    found = session.get(Attachment, attachment_id)
    if found is None or found.job_id != job.id:
        raise NotFound(N_("No such file."))
    return found
