"""The life of a dispatched job (repair request, alarm, patrol, inspection) as a pure state
machine: `apply(state, event)` returns the next state or refuses with a stable code.

Happy path: new → offered → accepted → en route → on site → in progress → awaiting sign-off
→ closed. A decline, an expired offer or a no-show sends the job back to awaiting dispatch
and excludes that electrician from it for good; so does "cannot complete", which may instead
escalate the job to staff and the provider. Closed and cancelled jobs never change again.

Times are timezone-aware datetimes stamped by the platform when it receives an event;
events are applied in that order, so an event older than the last one applied is refused
(a check-in cannot be backdated to meet the 30-minute on-site promise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from alliance.errors import (  # noqa: F401  (re-exported)
    InvalidJobInputError,
    LifecycleError,
    TransitionRefused,
)

# A shared electrician must be on site within 30 minutes of an urgent job being raised.
ON_SITE_WITHIN = timedelta(minutes=30)


class JobKind(StrEnum):
    REPAIR = "repair"
    ALARM = "alarm"
    PATROL = "patrol"
    INSPECTION = "inspection"


class JobStatus(StrEnum):
    NEW = "new"
    AWAITING_DISPATCH = "awaiting_dispatch"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    IN_PROGRESS = "in_progress"
    AWAITING_SIGN_OFF = "awaiting_sign_off"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"


_S = JobStatus
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({_S.CLOSED, _S.CANCELLED})
# While a job is in one of these, its electrician is committed to it (no double booking).
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(
    {_S.OFFERED, _S.ACCEPTED, _S.EN_ROUTE, _S.ON_SITE, _S.IN_PROGRESS})
_OPEN_FOR_OFFERS = (_S.NEW, _S.AWAITING_DISPATCH, _S.ESCALATED)
_PHOTO_STATUSES = (_S.ON_SITE, _S.IN_PROGRESS, _S.AWAITING_SIGN_OFF)

# Every status change `apply` can make (an attached photo keeps the status).
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType({
    _S.NEW: frozenset({_S.OFFERED, _S.ESCALATED, _S.CANCELLED}),
    _S.AWAITING_DISPATCH: frozenset({_S.OFFERED, _S.ESCALATED, _S.CANCELLED}),
    _S.ESCALATED: frozenset({_S.OFFERED, _S.CANCELLED}),
    _S.OFFERED: frozenset({_S.ACCEPTED, _S.AWAITING_DISPATCH, _S.CANCELLED}),
    _S.ACCEPTED: frozenset({_S.EN_ROUTE, _S.ON_SITE, _S.AWAITING_DISPATCH, _S.CANCELLED}),
    _S.EN_ROUTE: frozenset({_S.ON_SITE, _S.AWAITING_DISPATCH, _S.CANCELLED}),
    _S.ON_SITE: frozenset({_S.IN_PROGRESS, _S.AWAITING_DISPATCH, _S.ESCALATED, _S.CANCELLED}),
    _S.IN_PROGRESS: frozenset({_S.AWAITING_SIGN_OFF, _S.AWAITING_DISPATCH, _S.ESCALATED,
                               _S.CANCELLED}),
    _S.AWAITING_SIGN_OFF: frozenset({_S.CLOSED, _S.CANCELLED}),
    _S.CLOSED: frozenset(),
    _S.CANCELLED: frozenset(),
})

# Refusal codes carried by TransitionRefused.code.
JOB_CLOSED = "job_closed"
OUT_OF_ORDER = "out_of_order"
WRONG_STATUS = "wrong_status"
NOT_OFFERED_TO_YOU = "not_offered_to_you"
NOT_ASSIGNED_TO_YOU = "not_assigned_to_you"
OFFER_EXPIRED = "offer_expired"
OFFER_STILL_OPEN = "offer_still_open"
ELECTRICIAN_EXCLUDED = "electrician_excluded"
NO_PHOTO = "no_photo"
NO_SIGNATURE = "no_signature"


# ----------------------------------------------------------------------------- input checks

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidJobInputError(message)


def _check_aware(what: str, value: object) -> None:
    _require(isinstance(value, datetime), f"{what} must be a datetime, got {value!r}")
    _require(value.utcoffset() is not None,
             f"{what} must be timezone-aware (e.g. Asia/Shanghai), got naive {value!r}")


def _check_text(what: str, value: object) -> None:
    _require(isinstance(value, str) and value.strip() != "", f"{what} must be a non-empty string")


# ----------------------------------------------------------------------------- the state

_OPTIONAL_TIMES = ("on_site_deadline", "offered_at", "offer_expires_at", "accepted_at",
                   "checked_in_at", "clock_stopped_at", "closed_at")


@dataclass(frozen=True)
class JobState:
    """A job as dispatch sees it.

    `electrician_id` and the offer/accept/check-in times belong to the current assignment and
    are cleared when the job goes back to dispatch. `clock_stopped_at` is the first check-in
    on the job: it stops the on-site clock for good. `excluded` holds every electrician who
    declined, let the offer expire, did not show or could not complete; they are never
    offered this job again. `last_reason` is the reason given with the latest decline,
    cancellation, cannot-complete or escalation.
    """

    id: str
    kind: JobKind
    urgent: bool
    created_at: datetime
    on_site_deadline: datetime | None
    status: JobStatus = JobStatus.NEW
    electrician_id: str | None = None
    offered_at: datetime | None = None
    offer_expires_at: datetime | None = None
    accepted_at: datetime | None = None
    checked_in_at: datetime | None = None
    clock_stopped_at: datetime | None = None
    excluded: frozenset[str] = frozenset()
    photos: int = 0
    signed_off_by: str | None = None
    closed_at: datetime | None = None
    cancelled_by: str | None = None
    last_reason: str | None = None
    updated_at: datetime | None = None
    events_applied: int = 0

    def __post_init__(self) -> None:
        _check_text("job id", self.id)
        try:
            object.__setattr__(self, "kind", JobKind(self.kind))
            object.__setattr__(self, "status", JobStatus(self.status))
        except ValueError as exc:
            raise InvalidJobInputError(f"job {self.id}: {exc}") from None
        _require(isinstance(self.urgent, bool), f"job {self.id}: urgent must be True or False")
        _check_aware(f"job {self.id}: created_at", self.created_at)
        for name in _OPTIONAL_TIMES:
            value = getattr(self, name)
            if value is not None:
                _check_aware(f"job {self.id}: {name}", value)
        _require(self.urgent == (self.on_site_deadline is not None),
                 f"job {self.id}: an on-site deadline is set exactly for urgent jobs")
        object.__setattr__(self, "excluded", frozenset(self.excluded))
        if self.updated_at is None:
            object.__setattr__(self, "updated_at", self.created_at)
        _check_aware(f"job {self.id}: updated_at", self.updated_at)
        _require(isinstance(self.photos, int) and self.photos >= 0,
                 f"job {self.id}: photos must be a non-negative integer")


def new_job(job_id: str, kind: JobKind | str, *, urgent: bool, created_at: datetime,
            on_site_within: timedelta = ON_SITE_WITHIN) -> JobState:
    """A job just raised, awaiting its first offer. An urgent job must see an electrician
    checked in on site within `on_site_within` (30 minutes) of `created_at`.
    """
    _check_aware("created_at", created_at)
    _require(isinstance(on_site_within, timedelta) and on_site_within > timedelta(0),
             f"on_site_within must be a positive timedelta, got {on_site_within!r}")
    deadline = created_at + on_site_within if urgent else None
    return JobState(id=job_id, kind=kind, urgent=urgent, created_at=created_at,
                    on_site_deadline=deadline)


# ----------------------------------------------------------------------------- the events

_TIME_FIELDS = frozenset({"at", "expires_at"})
_ID_FIELDS = frozenset({"electrician_id", "by"})


@dataclass(frozen=True)
class _Event:
    """Checks shared by every event: aware times, non-empty ids."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _TIME_FIELDS:
                _check_aware(f"{name}.{f.name}", value)
            elif f.name in _ID_FIELDS:
                _check_text(f"{name}.{f.name}", value)
            elif f.name == "reason":
                _require(isinstance(value, str), f"{name}.reason must be a string")


def _require_reason(event: _Event) -> None:
    _require(event.reason.strip() != "", f"{type(event).__name__} needs a reason")


@dataclass(frozen=True)
class Offer(_Event):
    """Offer the job to one electrician until `expires_at`."""

    electrician_id: str
    at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.expires_at > self.at,
                 f"offer expiry {self.expires_at} must be after the offer time {self.at}")


@dataclass(frozen=True)
class Accept(_Event):
    electrician_id: str
    at: datetime


@dataclass(frozen=True)
class Decline(_Event):
    electrician_id: str
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class OfferExpired(_Event):
    at: datetime


@dataclass(frozen=True)
class StartTravel(_Event):
    electrician_id: str
    at: datetime


@dataclass(frozen=True)
class CheckIn(_Event):
    """The electrician is on site; the first check-in stops the on-site clock."""

    electrician_id: str
    at: datetime


@dataclass(frozen=True)
class NoShow(_Event):
    """The accepted electrician did not turn up (the platform or staff decides when)."""

    at: datetime


@dataclass(frozen=True)
class StartWork(_Event):
    electrician_id: str
    at: datetime


@dataclass(frozen=True)
class AttachPhoto(_Event):
    at: datetime


@dataclass(frozen=True)
class RequestSignOff(_Event):
    electrician_id: str
    at: datetime


@dataclass(frozen=True)
class SignOff(_Event):
    """The customer's sign-off; `signature` says whether they actually signed."""

    by: str
    at: datetime
    signature: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(isinstance(self.signature, bool), "SignOff.signature must be True or False")


@dataclass(frozen=True)
class Cancel(_Event):
    by: str
    at: datetime
    reason: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_reason(self)


@dataclass(frozen=True)
class CannotComplete(_Event):
    """On site, the electrician cannot finish: back to dispatch, or escalate when asked."""

    electrician_id: str
    at: datetime
    reason: str
    escalate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_reason(self)
        _require(isinstance(self.escalate, bool), "CannotComplete.escalate must be True or False")


@dataclass(frozen=True)
class Escalate(_Event):
    """Hand the job to staff and the provider: nobody can arrive in time."""

    at: datetime
    reason: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_reason(self)


JobEvent = (Offer | Accept | Decline | OfferExpired | StartTravel | CheckIn | NoShow | StartWork
            | AttachPhoto | RequestSignOff | SignOff | Cancel | CannotComplete | Escalate)


# ----------------------------------------------------------------------------- the rules

def _refuse(code: str, message: str) -> TransitionRefused:
    return TransitionRefused(code, message)


def _expect_status(state: JobState, event: _Event, *allowed: JobStatus) -> None:
    if state.status not in allowed:
        raise _refuse(WRONG_STATUS, f"{type(event).__name__} is not allowed while job "
                                    f"{state.id} is {state.status.value}")


def _expect_offeree(state: JobState, electrician_id: str) -> None:
    if electrician_id != state.electrician_id:
        raise _refuse(NOT_OFFERED_TO_YOU,
                      f"job {state.id} was not offered to electrician {electrician_id}")


def _expect_assignee(state: JobState, electrician_id: str) -> None:
    if electrician_id != state.electrician_id:
        raise _refuse(NOT_ASSIGNED_TO_YOU,
                      f"job {state.id} is not assigned to electrician {electrician_id}")


def _release(state: JobState, status: JobStatus = _S.AWAITING_DISPATCH,
             reason: str | None = None) -> JobState:
    """Take the job off its electrician, who is excluded from it from now on."""
    return replace(state, status=status, electrician_id=None, offered_at=None,
                   offer_expires_at=None, accepted_at=None, checked_in_at=None,
                   excluded=state.excluded | {state.electrician_id},
                   last_reason=reason if reason is not None else state.last_reason)


def _offer(state: JobState, e: Offer) -> JobState:
    """Only a job awaiting dispatch (or escalated, by staff) is offered, never to an
    electrician already excluded from it."""
    _expect_status(state, e, *_OPEN_FOR_OFFERS)
    if e.electrician_id in state.excluded:
        raise _refuse(ELECTRICIAN_EXCLUDED,
                      f"electrician {e.electrician_id} is excluded from job {state.id}")
    return replace(state, status=_S.OFFERED, electrician_id=e.electrician_id, offered_at=e.at,
                   offer_expires_at=e.expires_at)


def _accept(state: JobState, e: Accept) -> JobState:
    """Only the offeree accepts, and only until the offer expires (inclusive)."""
    _expect_status(state, e, _S.OFFERED)
    _expect_offeree(state, e.electrician_id)
    if e.at > state.offer_expires_at:
        raise _refuse(OFFER_EXPIRED, f"the offer of job {state.id} expired at "
                                     f"{state.offer_expires_at.isoformat()}")
    return replace(state, status=_S.ACCEPTED, accepted_at=e.at)


def _decline(state: JobState, e: Decline) -> JobState:
    _expect_status(state, e, _S.OFFERED)
    _expect_offeree(state, e.electrician_id)
    return _release(state, reason=e.reason)


def _offer_expired(state: JobState, e: OfferExpired) -> JobState:
    _expect_status(state, e, _S.OFFERED)
    if e.at < state.offer_expires_at:
        raise _refuse(OFFER_STILL_OPEN, f"the offer of job {state.id} is open until "
                                        f"{state.offer_expires_at.isoformat()}")
    return _release(state)


def _start_travel(state: JobState, e: StartTravel) -> JobState:
    _expect_status(state, e, _S.ACCEPTED)
    _expect_assignee(state, e.electrician_id)
    return replace(state, status=_S.EN_ROUTE)


def _check_in(state: JobState, e: CheckIn) -> JobState:
    """Arrival, with or without a recorded start of travel; the first one stops the clock."""
    _expect_status(state, e, _S.ACCEPTED, _S.EN_ROUTE)
    _expect_assignee(state, e.electrician_id)
    stopped = state.clock_stopped_at if state.clock_stopped_at is not None else e.at
    return replace(state, status=_S.ON_SITE, checked_in_at=e.at, clock_stopped_at=stopped)


def _no_show(state: JobState, e: NoShow) -> JobState:
    _expect_status(state, e, _S.ACCEPTED, _S.EN_ROUTE)
    return _release(state)


def _start_work(state: JobState, e: StartWork) -> JobState:
    _expect_status(state, e, _S.ON_SITE)
    _expect_assignee(state, e.electrician_id)
    return replace(state, status=_S.IN_PROGRESS)


def _attach_photo(state: JobState, e: AttachPhoto) -> JobState:
    _expect_status(state, e, *_PHOTO_STATUSES)
    return replace(state, photos=state.photos + 1)


def _request_sign_off(state: JobState, e: RequestSignOff) -> JobState:
    _expect_status(state, e, _S.IN_PROGRESS)
    _expect_assignee(state, e.electrician_id)
    return replace(state, status=_S.AWAITING_SIGN_OFF)


def _sign_off(state: JobState, e: SignOff) -> JobState:
    """A job closes only on the customer's signed sign-off with at least one photo."""
    _expect_status(state, e, _S.AWAITING_SIGN_OFF)
    if not e.signature:
        raise _refuse(NO_SIGNATURE, f"job {state.id} closes only with the customer's signature")
    if state.photos < 1:
        raise _refuse(NO_PHOTO, f"job {state.id} closes only with at least one photo")
    return replace(state, status=_S.CLOSED, signed_off_by=e.by, closed_at=e.at)


def _cancel(state: JobState, e: Cancel) -> JobState:
    """Any open job may be cancelled; the electrician is released but not excluded."""
    return replace(state, status=_S.CANCELLED, cancelled_by=e.by, closed_at=e.at,
                   last_reason=e.reason)


def _cannot_complete(state: JobState, e: CannotComplete) -> JobState:
    _expect_status(state, e, _S.ON_SITE, _S.IN_PROGRESS)
    _expect_assignee(state, e.electrician_id)
    return _release(state, _S.ESCALATED if e.escalate else _S.AWAITING_DISPATCH, e.reason)


def _escalate(state: JobState, e: Escalate) -> JobState:
    """Only a job nobody holds is escalated; an open offer must be declined or expire first."""
    _expect_status(state, e, _S.NEW, _S.AWAITING_DISPATCH)
    return replace(state, status=_S.ESCALATED, last_reason=e.reason)


_HANDLERS = {
    Offer: _offer, Accept: _accept, Decline: _decline, OfferExpired: _offer_expired,
    StartTravel: _start_travel, CheckIn: _check_in, NoShow: _no_show, StartWork: _start_work,
    AttachPhoto: _attach_photo, RequestSignOff: _request_sign_off, SignOff: _sign_off,
    Cancel: _cancel, CannotComplete: _cannot_complete, Escalate: _escalate,
}


def apply(state: JobState, event: JobEvent) -> JobState:
    """The job after `event`, or `TransitionRefused` (the given state stays as it was).

    A closed or cancelled job refuses every event ("job_closed"); an event older than the
    last one applied is refused ("out_of_order").
    """
    _require(isinstance(state, JobState), f"not a job state: {state!r}")
    handler = _HANDLERS.get(type(event))
    _require(handler is not None, f"not a job event: {event!r}")
    if state.status in TERMINAL_STATUSES:
        raise _refuse(JOB_CLOSED, f"job {state.id} is {state.status.value}; "
                                  f"{type(event).__name__} changes nothing")
    if event.at < state.updated_at:
        raise _refuse(OUT_OF_ORDER, f"{type(event).__name__} at {event.at.isoformat()} is "
                                    f"older than job {state.id}'s last event "
                                    f"at {state.updated_at.isoformat()}")
    after = handler(state, event)
    return replace(after, updated_at=event.at, events_applied=state.events_applied + 1)


# ----------------------------------------------------------------------------- helpers

def needs_dispatch(state: JobState) -> bool:
    """Automatic dispatch looks for an electrician; escalated jobs are staff's to offer."""
    return state.status in (_S.NEW, _S.AWAITING_DISPATCH)


def commits_electrician(status: JobStatus | str) -> bool:
    """Whether a job in `status` holds its electrician (for the no-double-booking rule)."""
    return JobStatus(status) in ACTIVE_STATUSES


def time_left(state: JobState, now: datetime) -> timedelta | None:
    """Time until the on-site deadline, negative once overdue. None for a non-urgent job or
    one cancelled before anyone checked in; after the first check-in the clock is stopped and
    the margin at check-in is returned.
    """
    _check_aware("now", now)
    if state.on_site_deadline is None:
        return None
    if state.clock_stopped_at is not None:
        return state.on_site_deadline - state.clock_stopped_at
    if state.status == _S.CANCELLED:
        return None
    return state.on_site_deadline - now


def sla_met(state: JobState) -> bool | None:
    """Whether the first check-in came by the on-site deadline (inclusive); None for a
    non-urgent job or before anyone checked in.
    """
    if state.on_site_deadline is None or state.clock_stopped_at is None:
        return None
    return state.clock_stopped_at <= state.on_site_deadline
