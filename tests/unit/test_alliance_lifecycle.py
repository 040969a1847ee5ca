"""The job lifecycle state machine: every transition, every refusal, the 30-minute clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import reduce
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_stat
from hypothesis import strategies as st

from alliance.errors import AllianceError
from alliance.lifecycle import (
    ACTIVE_STATUSES,
    ELECTRICIAN_EXCLUDED,
    JOB_CLOSED,
    NO_PHOTO,
    NO_SIGNATURE,
    NOT_ASSIGNED_TO_YOU,
    NOT_OFFERED_TO_YOU,
    OFFER_EXPIRED,
    OFFER_STILL_OPEN,
    ON_SITE_WITHIN,
    OUT_OF_ORDER,
    TERMINAL_STATUSES,
    TRANSITIONS,
    WRONG_STATUS,
    Accept,
    AttachPhoto,
    Cancel,
    CannotComplete,
    CheckIn,
    Decline,
    Escalate,
    InvalidJobInputError,
    JobKind,
    JobState,
    JobStatus,
    NoShow,
    Offer,
    OfferExpired,
    RequestSignOff,
    SignOff,
    StartTravel,
    StartWork,
    TransitionRefused,
    apply,
    commits_electrician,
    needs_dispatch,
    new_job,
    sla_met,
    time_left,
)

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 6, 10, 9, 0, tzinfo=CST)
S = JobStatus


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def urgent_job() -> JobState:
    return new_job("J1", JobKind.REPAIR, urgent=True, created_at=T0)


def drive(state: JobState, *events) -> JobState:
    return reduce(apply, events, state)


def refused(state: JobState, event, code: str) -> TransitionRefused:
    with pytest.raises(TransitionRefused) as info:
        apply(state, event)
    assert info.value.code == code, info.value.message
    return info.value


HAPPY = (Offer("e1", t(1), t(15)), Accept("e1", t(2)), StartTravel("e1", t(3)),
         CheckIn("e1", t(4)), StartWork("e1", t(5)), AttachPhoto(t(6)),
         RequestSignOff("e1", t(7)), SignOff("customer-7", t(8), signature=True))
_HAPPY_PREFIX = {S.NEW: 0, S.OFFERED: 1, S.ACCEPTED: 2, S.EN_ROUTE: 3, S.ON_SITE: 4,
                 S.IN_PROGRESS: 5, S.AWAITING_SIGN_OFF: 7, S.CLOSED: 8}


def at_status(status: JobStatus) -> JobState:
    """An urgent job brought to `status` with electrician e1 (where one is assigned)."""
    if status in _HAPPY_PREFIX:
        return drive(urgent_job(), *HAPPY[:_HAPPY_PREFIX[status]])
    side = {S.AWAITING_DISPATCH: (Offer("e1", t(1), t(15)), Decline("e1", t(2), "busy")),
            S.ESCALATED: (Escalate(t(1), "nobody within 30 minutes"),),
            S.CANCELLED: (Cancel("customer-7", t(1), "power came back"),)}
    return drive(urgent_job(), *side[status])


# ------------------------------------------------------------------------------ happy path

def test_happy_path_end_to_end():
    job = urgent_job()
    assert job.status is S.NEW and job.on_site_deadline == t(30) and needs_dispatch(job)
    seen = [job.status]
    for event in HAPPY:
        job = apply(job, event)
        seen.append(job.status)
    assert seen == [S.NEW, S.OFFERED, S.ACCEPTED, S.EN_ROUTE, S.ON_SITE, S.IN_PROGRESS,
                    S.IN_PROGRESS, S.AWAITING_SIGN_OFF, S.CLOSED]
    assert job.electrician_id == "e1" and job.accepted_at == t(2) and job.checked_in_at == t(4)
    assert job.photos == 1 and job.signed_off_by == "customer-7" and job.closed_at == t(8)
    assert job.events_applied == len(HAPPY) and job.updated_at == t(8)
    assert job.excluded == frozenset() and sla_met(job) is True


def test_check_in_straight_from_accepted_is_allowed():
    job = drive(at_status(S.ACCEPTED), CheckIn("e1", t(3)))
    assert job.status is S.ON_SITE and job.clock_stopped_at == t(3)


def test_photos_may_be_attached_while_awaiting_sign_off():
    job = drive(urgent_job(), *HAPPY[:5], RequestSignOff("e1", t(6)), AttachPhoto(t(7)),
                AttachPhoto(t(7)), SignOff("customer-7", t(8), True))
    assert job.status is S.CLOSED and job.photos == 2


def test_the_given_state_is_never_modified():
    before = at_status(S.OFFERED)
    after = apply(before, Accept("e1", t(2)))
    assert before.status is S.OFFERED and after.status is S.ACCEPTED


# ------------------------------------------------------------------------------ side exits

def test_decline_returns_the_job_to_dispatch_and_excludes_the_electrician():
    job = apply(at_status(S.OFFERED), Decline("e1", t(2), "too far"))
    assert job.status is S.AWAITING_DISPATCH and needs_dispatch(job)
    assert job.excluded == {"e1"} and job.electrician_id is None and job.offer_expires_at is None
    assert job.last_reason == "too far"
    refused(job, Offer("e1", t(3), t(10)), ELECTRICIAN_EXCLUDED)
    assert apply(job, Offer("e2", t(3), t(10))).electrician_id == "e2"


def test_an_expired_offer_returns_the_job_and_excludes_the_electrician():
    job = apply(at_status(S.OFFERED), OfferExpired(t(15)))
    assert job.status is S.AWAITING_DISPATCH and job.excluded == {"e1"}
    refused(job, Offer("e1", t(16), t(20)), ELECTRICIAN_EXCLUDED)


def test_offer_expired_before_the_expiry_time_is_refused():
    refused(at_status(S.OFFERED), OfferExpired(t(15) - timedelta(seconds=1)), OFFER_STILL_OPEN)


@pytest.mark.parametrize("status", [S.ACCEPTED, S.EN_ROUTE])
def test_no_show_returns_the_job_and_excludes_the_electrician(status):
    job = apply(at_status(status), NoShow(t(31)))
    assert job.status is S.AWAITING_DISPATCH and job.excluded == {"e1"}
    assert job.accepted_at is None and job.electrician_id is None
    refused(job, Offer("e1", t(32), t(40)), ELECTRICIAN_EXCLUDED)


def test_exclusions_accumulate_over_re_dispatches():
    job = drive(urgent_job(), Offer("e1", t(1), t(5)), Decline("e1", t(2)),
                Offer("e2", t(3), t(5)), OfferExpired(t(5)),
                Offer("e3", t(6), t(9)), Accept("e3", t(7)), NoShow(t(31)))
    assert job.excluded == {"e1", "e2", "e3"} and job.status is S.AWAITING_DISPATCH


@pytest.mark.parametrize("status", [s for s in S if s not in TERMINAL_STATUSES])
def test_any_open_job_may_be_cancelled_and_then_stays_cancelled(status):
    job = apply(at_status(status), Cancel("staff-1", t(20), "duplicate request"))
    assert job.status is S.CANCELLED and job.cancelled_by == "staff-1"
    assert job.closed_at == t(20) and job.last_reason == "duplicate request"
    assert job.excluded == at_status(status).excluded  # cancelling excludes nobody
    refused(job, Offer("e2", t(21), t(30)), JOB_CLOSED)


@pytest.mark.parametrize("status", [S.ON_SITE, S.IN_PROGRESS])
def test_cannot_complete_returns_the_job_with_the_electrician_excluded(status):
    job = apply(at_status(status), CannotComplete("e1", t(10), "needs a spare part"))
    assert job.status is S.AWAITING_DISPATCH and job.excluded == {"e1"}
    assert job.last_reason == "needs a spare part" and job.checked_in_at is None
    assert job.clock_stopped_at == t(4)  # the on-site promise was kept by the first arrival


def test_cannot_complete_may_escalate():
    job = apply(at_status(S.IN_PROGRESS), CannotComplete("e1", t(10), "transformer fault",
                                                         escalate=True))
    assert job.status is S.ESCALATED and job.excluded == {"e1"} and not needs_dispatch(job)


def test_escalated_job_can_be_offered_by_staff_and_then_runs_normally():
    job = at_status(S.ESCALATED)
    assert job.last_reason == "nobody within 30 minutes" and not needs_dispatch(job)
    job = drive(job, Offer("e7", t(2), t(5)), Accept("e7", t(3)), CheckIn("e7", t(40)))
    assert job.status is S.ON_SITE and sla_met(job) is False


@pytest.mark.parametrize("status", [S.NEW, S.AWAITING_DISPATCH])
def test_escalation_from_a_job_nobody_holds(status):
    assert apply(at_status(status), Escalate(t(10), "no electrician free")).status is S.ESCALATED


# ------------------------------------------------------------------------------ refusals

def test_only_the_offeree_may_accept_or_decline():
    job = at_status(S.OFFERED)
    refused(job, Accept("e2", t(2)), NOT_OFFERED_TO_YOU)
    refused(job, Decline("e2", t(2)), NOT_OFFERED_TO_YOU)


def test_accept_after_the_offer_expiry_is_refused_and_at_expiry_is_not():
    job = at_status(S.OFFERED)
    refused(job, Accept("e1", t(15) + timedelta(seconds=1)), OFFER_EXPIRED)
    assert apply(job, Accept("e1", t(15))).status is S.ACCEPTED


@pytest.mark.parametrize("status, event", [
    (S.ACCEPTED, StartTravel("e2", t(5))),
    (S.EN_ROUTE, CheckIn("e2", t(5))),
    (S.ACCEPTED, CheckIn("e2", t(5))),
    (S.ON_SITE, StartWork("e2", t(5))),
    (S.IN_PROGRESS, RequestSignOff("e2", t(6))),
    (S.ON_SITE, CannotComplete("e2", t(6), "not mine")),
])
def test_events_from_another_electrician_than_the_assigned_one_are_refused(status, event):
    refused(at_status(status), event, NOT_ASSIGNED_TO_YOU)


@pytest.mark.parametrize("status, event", [
    (S.NEW, Accept("e1", t(2))),
    (S.OFFERED, Offer("e2", t(2), t(5))),
    (S.ACCEPTED, StartWork("e1", t(5))),
    (S.NEW, AttachPhoto(t(5))),
    (S.EN_ROUTE, AttachPhoto(t(5))),
    (S.IN_PROGRESS, SignOff("customer-7", t(8), True)),
    (S.ON_SITE, RequestSignOff("e1", t(6))),
    (S.OFFERED, NoShow(t(31))),
    (S.NEW, OfferExpired(t(20))),
    (S.OFFERED, Escalate(t(5), "late")),
    (S.ESCALATED, Escalate(t(5), "again")),
    (S.EN_ROUTE, CannotComplete("e1", t(6), "not there yet")),
    (S.AWAITING_SIGN_OFF, StartTravel("e1", t(8))),
])
def test_events_out_of_their_status_are_refused(status, event):
    refused(at_status(status), event, WRONG_STATUS)


def test_closing_without_a_signature_is_refused():
    job = at_status(S.AWAITING_SIGN_OFF)
    assert job.photos == 1
    refused(job, SignOff("customer-7", t(8), signature=False), NO_SIGNATURE)


def test_closing_without_a_photo_is_refused_until_one_is_attached():
    job = drive(urgent_job(), *HAPPY[:5], RequestSignOff("e1", t(6)))
    assert job.photos == 0
    refused(job, SignOff("customer-7", t(8), signature=True), NO_PHOTO)
    assert drive(job, AttachPhoto(t(9)), SignOff("customer-7", t(10), True)).status is S.CLOSED


ALL_KINDS_OF_LATE_EVENTS = [
    Offer("e2", t(60), t(70)), Accept("e1", t(60)), Decline("e1", t(60)), OfferExpired(t(60)),
    StartTravel("e1", t(60)), CheckIn("e1", t(60)), NoShow(t(60)), StartWork("e1", t(60)),
    AttachPhoto(t(60)), RequestSignOff("e1", t(60)), SignOff("customer-7", t(60), True),
    Cancel("staff-1", t(60), "late"), CannotComplete("e1", t(60), "late"),
    Escalate(t(60), "late"),
]


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
@pytest.mark.parametrize("event", ALL_KINDS_OF_LATE_EVENTS, ids=lambda e: type(e).__name__)
def test_late_events_never_reopen_a_closed_or_cancelled_job(status, event):
    job = at_status(status)
    snapshot = JobState(**{f: getattr(job, f) for f in job.__dataclass_fields__})
    refused(job, event, JOB_CLOSED)
    assert job == snapshot and job.status is status


def test_an_event_older_than_the_last_one_is_refused():
    job = at_status(S.EN_ROUTE)  # last event at t(3)
    refused(job, CheckIn("e1", t(3) - timedelta(seconds=1)), OUT_OF_ORDER)
    assert apply(job, CheckIn("e1", t(3))).status is S.ON_SITE


def test_transition_refused_is_an_alliance_error_with_code_and_message():
    err = refused(at_status(S.OFFERED), Accept("e2", t(2)), NOT_OFFERED_TO_YOU)
    assert isinstance(err, AllianceError) and "e2" in err.message and err.code in str(err)


# ------------------------------------------------------------------------------ the clock

def test_check_in_at_the_deadline_meets_the_30_minutes():
    job = drive(at_status(S.EN_ROUTE), CheckIn("e1", t(30)))
    assert sla_met(job) is True and time_left(job, t(90)) == timedelta(0)


def test_check_in_one_second_late_misses_the_30_minutes():
    job = drive(at_status(S.EN_ROUTE), CheckIn("e1", t(30) + timedelta(seconds=1)))
    assert sla_met(job) is False and time_left(job, t(90)) == timedelta(seconds=-1)


def test_the_clock_counts_down_until_check_in_then_stops():
    job = at_status(S.EN_ROUTE)
    assert sla_met(job) is None
    assert time_left(job, t(10)) == timedelta(minutes=20)
    assert time_left(job, t(31)) == timedelta(minutes=-1)
    arrived = apply(job, CheckIn("e1", t(12)))
    assert time_left(arrived, t(10)) == time_left(arrived, t(500)) == timedelta(minutes=18)


def test_the_first_check_in_stops_the_clock_for_good():
    job = drive(at_status(S.ON_SITE), CannotComplete("e1", t(10), "wrong tools"),
                Offer("e2", t(11), t(15)), Accept("e2", t(12)), CheckIn("e2", t(45)))
    assert job.checked_in_at == t(45) and job.clock_stopped_at == t(4) and sla_met(job)


def test_non_urgent_jobs_have_no_clock():
    job = new_job("P1", "patrol", urgent=False, created_at=T0)
    assert job.kind is JobKind.PATROL and job.on_site_deadline is None
    job = drive(job, *HAPPY[:4])
    assert time_left(job, t(100)) is None and sla_met(job) is None


def test_a_job_cancelled_before_anyone_arrived_has_no_clock():
    assert time_left(at_status(S.CANCELLED), t(100)) is None


def test_the_on_site_window_is_a_parameter():
    job = new_job("A1", JobKind.ALARM, urgent=True, created_at=T0,
                  on_site_within=timedelta(minutes=45))
    assert ON_SITE_WITHIN == timedelta(minutes=30) and job.on_site_deadline == t(45)


# ------------------------------------------------------------------------------ helpers

def test_active_statuses_commit_the_electrician():
    assert ACTIVE_STATUSES == {S.OFFERED, S.ACCEPTED, S.EN_ROUTE, S.ON_SITE, S.IN_PROGRESS}
    assert commits_electrician("en_route") and commits_electrician(S.OFFERED)
    assert not any(commits_electrician(s) for s in S if s not in ACTIVE_STATUSES)


def test_needs_dispatch_only_before_any_offer_or_after_a_return():
    assert {s for s in S if s in _HAPPY_PREFIX or s in (S.AWAITING_DISPATCH, S.ESCALATED,
                                                        S.CANCELLED)
            if needs_dispatch(at_status(s))} == {S.NEW, S.AWAITING_DISPATCH}


def _candidate_events(state: JobState):
    """Every kind of event, by the job's electrician and by a stranger, in and after the
    offer window."""
    me = state.electrician_id or "e1"
    for who in (me, "e9"):
        for at in (t(12), t(20)):
            yield from (Offer(who, at, at + timedelta(minutes=5)), Accept(who, at),
                        Decline(who, at), OfferExpired(at), StartTravel(who, at),
                        CheckIn(who, at), NoShow(at), StartWork(who, at), AttachPhoto(at),
                        RequestSignOff(who, at), SignOff("customer-7", at, True),
                        Cancel("staff-1", at, "x"), CannotComplete(who, at, "x"),
                        CannotComplete(who, at, "x", escalate=True), Escalate(at, "x"))


def test_transitions_table_is_exactly_what_apply_does():
    observed: dict[JobStatus, set[JobStatus]] = {s: set() for s in S}
    for status in S:
        state = at_status(status)
        for event in _candidate_events(state):
            try:
                observed[status].add(apply(state, event).status)
            except TransitionRefused:
                pass
        observed[status].discard(status)  # an attached photo keeps the status
    assert observed == {s: set(TRANSITIONS[s]) for s in S}


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("build, message", [
    (lambda: new_job("J", JobKind.REPAIR, urgent=True, created_at=datetime(2025, 6, 10, 9)),
     "timezone-aware"),
    (lambda: new_job("J", "plumbing", urgent=False, created_at=T0), "plumbing"),
    (lambda: new_job("", JobKind.REPAIR, urgent=False, created_at=T0), "job id"),
    (lambda: new_job("J", JobKind.REPAIR, urgent=True, created_at=T0,
                     on_site_within=timedelta(0)), "positive"),
    (lambda: Offer("e1", datetime(2025, 6, 10, 9), t(5)), "timezone-aware"),
    (lambda: Offer("e1", t(5), t(5)), "must be after"),
    (lambda: Offer("", t(1), t(5)), "electrician_id"),
    (lambda: Accept("e1", "2025-06-10T09:00+08:00"), "must be a datetime"),
    (lambda: SignOff("customer-7", t(1), "yes"), "signature"),
    (lambda: Cancel("staff-1", t(1), " "), "needs a reason"),
    (lambda: CannotComplete("e1", t(1), ""), "needs a reason"),
    (lambda: Escalate(t(1), ""), "needs a reason"),
])
def test_malformed_input_is_refused_with_a_clear_message(build, message):
    with pytest.raises(InvalidJobInputError, match=message):
        build()


def test_time_left_refuses_a_naive_now():
    with pytest.raises(InvalidJobInputError, match="timezone-aware"):
        time_left(urgent_job(), datetime(2025, 6, 10, 9, 10))


def test_apply_refuses_something_that_is_not_an_event():
    with pytest.raises(InvalidJobInputError, match="not a job event"):
        apply(urgent_job(), "accept")


# ------------------------------------------------------------------------------ properties

ELECTRICIANS = ("e1", "e2", "e3")


def _happy_next(state: JobState, at: datetime, who: str):
    """The event that moves `state` one step along the happy path (with a fresh electrician
    when one must be chosen)."""
    me = state.electrician_id
    return {
        S.NEW: Offer(who, at, at + timedelta(minutes=5)),
        S.AWAITING_DISPATCH: Offer(who, at, at + timedelta(minutes=5)),
        S.ESCALATED: Offer(who, at, at + timedelta(minutes=5)),
        S.OFFERED: Accept(me, at) if me else None,
        S.ACCEPTED: StartTravel(me, at) if me else None,
        S.EN_ROUTE: CheckIn(me, at) if me else None,
        S.ON_SITE: StartWork(me, at) if me else None,
        S.IN_PROGRESS: AttachPhoto(at) if state.photos == 0 else RequestSignOff(me, at),
        S.AWAITING_SIGN_OFF: SignOff("customer-7", at, True),
    }.get(state.status)


@st.composite
def _any_event(draw, state: JobState, at: datetime):
    who = draw(st.sampled_from(ELECTRICIANS + ((state.electrician_id,)
                                               if state.electrician_id else ())))
    make = draw(st.sampled_from([
        lambda: Offer(who, at, at + timedelta(minutes=draw(st.integers(1, 10)))),
        lambda: Accept(who, at), lambda: Decline(who, at), lambda: OfferExpired(at),
        lambda: StartTravel(who, at), lambda: CheckIn(who, at), lambda: NoShow(at),
        lambda: StartWork(who, at), lambda: AttachPhoto(at), lambda: RequestSignOff(who, at),
        lambda: SignOff("customer-7", at, draw(st.booleans())),
        lambda: Cancel("staff-1", at, "x"),
        lambda: CannotComplete(who, at, "x", escalate=draw(st.booleans())),
        lambda: Escalate(at, "x"),
    ]))
    return make()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), urgent=st.booleans())
def test_random_event_sequences_only_walk_the_transition_table(data, urgent):
    state = new_job("J", JobKind.ALARM, urgent=urgent, created_at=T0)
    at, applied = T0, 0
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        at = at + timedelta(seconds=data.draw(st.integers(-30, 600), label="dt"))
        event = None
        if data.draw(st.booleans(), label="happy"):
            event = _happy_next(state, at, data.draw(st.sampled_from(ELECTRICIANS)))
        if event is None:
            event = data.draw(_any_event(state, at))
        try:
            after = apply(state, event)
        except TransitionRefused as refusal:
            if state.status in TERMINAL_STATUSES:
                assert refusal.code == JOB_CLOSED
            continue
        applied += 1
        assert state.status not in TERMINAL_STATUSES  # nothing leaves closed or cancelled
        assert (after.status in TRANSITIONS[state.status]
                or (after.status == state.status and isinstance(event, AttachPhoto)))
        assert after.excluded >= state.excluded and after.photos >= state.photos
        assert after.electrician_id not in after.excluded
        if commits_electrician(after.status):
            assert after.electrician_id is not None
        if after.status in (S.NEW, S.AWAITING_DISPATCH, S.ESCALATED):
            assert after.electrician_id is None and after.offer_expires_at is None
        if after.status is S.CLOSED:
            assert after.photos >= 1 and after.signed_off_by and after.clock_stopped_at
        if state.clock_stopped_at is not None:
            assert after.clock_stopped_at == state.clock_stopped_at
        assert after.events_applied == applied and after.updated_at == event.at
        state = after
    event_stat(f"ended {state.status.value}")


@settings(max_examples=60, deadline=None)
@given(data=st.data(), status=st.sampled_from(sorted(TERMINAL_STATUSES)))
def test_any_event_on_a_closed_or_cancelled_job_is_refused(data, status):
    job = at_status(status)
    at = t(data.draw(st.integers(-60, 600)))
    event = data.draw(_any_event(job, at))
    with pytest.raises(TransitionRefused) as info:
        apply(job, event)
    assert info.value.code == JOB_CLOSED and job.status is status
