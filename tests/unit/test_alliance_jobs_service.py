"""Jobs through the service layer on SQLite: a repair request taken from the offer to the
customer's signed sign-off, each refusal of the core becoming a 409 that changes nothing,
exclusions after decline/expiry/no-show, and no double booking (service and database)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alliance import lifecycle as core
from parkgrid.models import (
    Attachment,
    Electrician,
    Enterprise,
    Job,
    JobEvent,
    JobExclusion,
    Provider,
)
from parkgrid.services import alliance as membership
from parkgrid.services import jobs as service
from parkgrid.services.errors import Conflict, Forbidden, ValidationFailed

from .alliance_world import NOW, SITE, add_provider, build_world, jpeg, make_platform, png

MIN = timedelta(minutes=1)


@pytest.fixture
def world(tmp_path):
    platform = make_platform(tmp_path)
    world = build_world(platform)
    world.ids.update({f"e{n}": i for n, i in enumerate(add_provider(world, "SP").values())})
    add_provider(world, "RIVAL")
    yield world
    platform.engine.dispose()


def repair(world, *, urgent=True, photos=(), user="ent1", at=NOW) -> str:
    request = service.RepairRequest(lat=SITE[0], lon=SITE[1], title="低压柜跳闸",
                                    description="车间停电", urgent=urgent)
    return service.request_repair(world.platform, request, actor_id=world.uid(user),
                                  photos=photos, at=at)


def job(world, code) -> Job:
    with world.platform.unit_of_work() as session:
        found = session.scalar(select(Job).where(Job.code == code))
        found.exclusions, found.events, found.attachments  # noqa: B018  (load them)
        return found


def events(world, code) -> list[str]:
    return [e.kind for e in job(world, code).events]


def files(world) -> int:
    return len(world.platform.storage.files())


def take_to_work(world, code, electrician, start=NOW):
    """Offer, accept, travel, check in and start work, a minute apart; returns the time."""
    desk, provider = world.uid("desk"), world.uid("SP-user")
    service.offer(world.platform, code, electrician, actor_id=desk, at=start + MIN)
    service.accept(world.platform, code, actor_id=provider, at=start + 2 * MIN)
    service.start_travel(world.platform, code, actor_id=provider, at=start + 3 * MIN)
    service.check_in(world.platform, code, actor_id=provider, at=start + 20 * MIN,
                     lat="31.3001", lon="120.7001")
    service.start_work(world.platform, code, actor_id=provider, at=start + 21 * MIN)
    return start + 21 * MIN


# --------------------------------------------------------------------------- happy path


def test_a_repair_request_goes_from_offer_to_a_signed_off_close(world):
    code = repair(world, photos=[jpeg()])
    created = job(world, code)
    assert (created.status, created.urgent, created.alliance, created.provider_id) == (
        "new", True, "shared_electricians", None)
    assert created.on_site_deadline == NOW + timedelta(minutes=30)
    assert created.skill_list == ["low_voltage"] and created.photos == 0  # not a work photo

    electrician = world.uid("e0")
    at = take_to_work(world, code, electrician)
    provider = world.uid("SP-user")
    service.attach_photo(world.platform, code, png(), actor_id=provider, at=at + MIN)
    service.request_sign_off(world.platform, code, actor_id=provider, at=at + 40 * MIN)
    service.sign_off(world.platform, code, png((120, 40), (0, 0, 0)), signer_name="王经理",
                     actor_id=world.uid("ent1"), at=at + 45 * MIN)

    closed = job(world, code)
    assert (closed.status, closed.photos, closed.electrician_id) == ("closed", 1, electrician)
    assert closed.closed_at == at + 45 * MIN and closed.signer_name == "王经理"
    assert closed.signed_off_by_id == world.uid("ent1")
    assert closed.clock_stopped_at == NOW + 20 * MIN
    assert [e.kind for e in closed.events] == [
        "created", "offer", "accept", "start_travel", "check_in", "start_work",
        "attach_photo", "request_sign_off", "sign_off"]
    assert [e.seq for e in closed.events] == list(range(1, 10))
    assert [(a.kind, a.content_type) for a in closed.attachments] == [
        ("photo", "image/jpeg"), ("photo", "image/png"), ("signature", "image/png")]
    assert files(world) == 3
    for attachment in closed.attachments:
        assert world.platform.storage.read(attachment.storage_key)[:4] in (b"\xff\xd8\xff\xe0",
                                                                         b"\x89PNG")
    with world.platform.unit_of_work() as session:
        stored = session.scalar(select(Job).where(Job.code == code))
        assert service.clock(session, stored, NOW + timedelta(hours=5)) == service.Clock(
            10 * 60, True)
        # The check-in's position became the electrician's last known one.
        assert session.get(Electrician, electrician).last_seen_at == NOW + 20 * MIN
        assert service.state_of(session, stored).events_applied == 8


def test_the_stored_state_is_what_replaying_the_events_through_the_core_gives(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e1"))
    service.cannot_complete(world.platform, code, "缺少备件", actor_id=world.uid("SP-user"),
                            at=at + MIN)
    stored = job(world, code)
    with world.platform.unit_of_work() as session:
        stored_state = service.state_of(session, session.scalar(select(Job).where(
            Job.code == code)))
    replayed = core.new_job(code, "repair", urgent=True, created_at=NOW)
    by_kind = {"offer": lambda e, d: core.Offer(str(e.electrician_id), e.at,
                                                 _time(d["expires_at"])),
               "accept": lambda e, d: core.Accept(str(e.electrician_id), e.at),
               "start_travel": lambda e, d: core.StartTravel(str(e.electrician_id), e.at),
               "check_in": lambda e, d: core.CheckIn(str(e.electrician_id), e.at),
               "start_work": lambda e, d: core.StartWork(str(e.electrician_id), e.at),
               "cannot_complete": lambda e, d: core.CannotComplete(str(e.electrician_id),
                                                                   e.at, d["reason"])}
    for event in stored.events[1:]:
        replayed = core.apply(replayed, by_kind[event.kind](event, json.loads(event.data)))
    assert replayed == stored_state
    assert stored.status == "awaiting_dispatch" and stored.electrician_id is None


def _time(text):
    from datetime import datetime

    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- refusals


def test_closing_without_a_photo_is_refused_and_nothing_changes(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e0"))
    service.request_sign_off(world.platform, code, actor_id=world.uid("SP-user"), at=at + MIN)
    before = job(world, code)
    with pytest.raises(service.JobRefused) as caught:
        service.sign_off(world.platform, code, png(), actor_id=world.uid("ent1"),
                         at=at + 2 * MIN)
    assert caught.value.code == core.NO_PHOTO and caught.value.status == 409
    after = job(world, code)
    assert (after.status, after.version, len(after.events)) == (
        "awaiting_sign_off", before.version, len(before.events))
    assert after.signed_off_by_id is None and files(world) == 0


def test_a_sign_off_needs_the_signature_and_a_png_one(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e0"))
    provider = world.uid("SP-user")
    service.attach_photo(world.platform, code, jpeg(), actor_id=provider, at=at + MIN)
    service.request_sign_off(world.platform, code, actor_id=provider, at=at + 2 * MIN)
    with pytest.raises(service.JobRefused) as caught:
        service.sign_off(world.platform, code, None, actor_id=world.uid("ent1"),
                         at=at + 3 * MIN)
    assert caught.value.code == core.NO_SIGNATURE
    with pytest.raises(ValidationFailed) as refused:
        service.sign_off(world.platform, code, jpeg(), actor_id=world.uid("ent1"),
                         at=at + 3 * MIN)
    assert refused.value.problems[0].field == "signature"
    with pytest.raises(Forbidden):  # not the customer's job
        service.sign_off(world.platform, code, png(), actor_id=world.uid("ent2"),
                         at=at + 3 * MIN)
    assert job(world, code).status == "awaiting_sign_off" and files(world) == 1


def test_a_late_accept_after_the_close_changes_nothing(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e0"))
    provider = world.uid("SP-user")
    service.attach_photo(world.platform, code, png(), actor_id=provider, at=at + MIN)
    service.request_sign_off(world.platform, code, actor_id=provider, at=at + 2 * MIN)
    signature = png((120, 40), (0, 0, 0))
    service.sign_off(world.platform, code, signature, actor_id=world.uid("ent1"),
                     at=at + 3 * MIN)
    closed = job(world, code)
    for late in (lambda: service.accept(world.platform, code, actor_id=provider,
                                        at=at + 4 * MIN),
                 lambda: service.cancel(world.platform, code, "太晚了",
                                        actor_id=world.uid("ent1"), at=at + 4 * MIN),
                 lambda: service.attach_photo(world.platform, code, png(), actor_id=provider,
                                              at=at + 4 * MIN)):
        with pytest.raises(service.JobRefused) as caught:
            late()
        assert caught.value.code == core.JOB_CLOSED
    after = job(world, code)
    assert (after.status, after.version, len(after.events), after.photos) == (
        "closed", closed.version, len(closed.events), 1)
    assert files(world) == 2 and after.cancelled_by_id is None


def test_a_backdated_check_in_is_refused(world):
    code = repair(world)
    provider = world.uid("SP-user")
    service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("desk"),
                  at=NOW + MIN)
    service.accept(world.platform, code, actor_id=provider, at=NOW + 4 * MIN)
    with pytest.raises(service.JobRefused) as caught:
        service.check_in(world.platform, code, actor_id=provider, at=NOW + 3 * MIN)
    assert caught.value.code == core.OUT_OF_ORDER
    assert job(world, code).status == "accepted"


def test_a_text_file_is_not_a_photo_and_leaves_no_trace(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e0"))
    with pytest.raises(ValidationFailed) as caught:
        service.attach_photo(world.platform, code, b"this is not a jpeg at all",
                             actor_id=world.uid("SP-user"), at=at + MIN)
    assert caught.value.problems[0].field == "photo"
    assert job(world, code).photos == 0 and "attach_photo" not in events(world, code)
    assert files(world) == 0
    with pytest.raises(ValidationFailed):
        repair(world, photos=[b"GIF89a nope"])
    assert files(world) == 0


# --------------------------------------------------------------------------- exclusions


def exclusions(world, code) -> list[tuple[int, str]]:
    return [(x.electrician_id, x.reason) for x in job(world, code).exclusions]


def test_a_decline_sends_the_job_back_and_excludes_the_electrician(world):
    code = repair(world)
    first, second = world.uid("e0"), world.uid("e1")
    desk, provider = world.uid("desk"), world.uid("SP-user")
    service.offer(world.platform, code, first, actor_id=desk, at=NOW + MIN)
    service.decline(world.platform, code, actor_id=provider, reason="在另一现场",
                    at=NOW + 2 * MIN)
    declined = job(world, code)
    assert (declined.status, declined.electrician_id, declined.last_reason) == (
        "awaiting_dispatch", None, "在另一现场")
    assert exclusions(world, code) == [(first, "decline")]
    with pytest.raises(service.NotOfferable) as caught:
        service.offer(world.platform, code, first, actor_id=desk, at=NOW + 3 * MIN)
    assert [p.message for p in caught.value.problems] == [
        membership.INELIGIBLE_MESSAGES[membership.EXCLUDED]]
    with world.platform.unit_of_work() as session:
        stored = session.scalar(select(Job).where(Job.code == code))
        assert first not in {c.electrician_id for c in
                             membership.offerable_electricians(session, stored, NOW)}
    service.offer(world.platform, code, second, actor_id=desk, at=NOW + 3 * MIN)
    assert job(world, code).electrician_id == second


def test_expired_offers_are_swept_back_and_a_late_accept_is_refused(world):
    code = repair(world)
    electrician = world.uid("e0")
    service.offer(world.platform, code, electrician, actor_id=world.uid("desk"),
                  at=NOW + MIN, expires_at=NOW + 6 * MIN)
    assert service.expire_offers(world.platform, NOW + 5 * MIN) == []
    with pytest.raises(service.JobRefused) as caught:
        service.accept(world.platform, code, actor_id=world.uid("SP-user"), at=NOW + 7 * MIN)
    assert caught.value.code == core.OFFER_EXPIRED
    assert service.expire_offers(world.platform, NOW + 7 * MIN) == [code]
    assert job(world, code).status == "awaiting_dispatch"
    assert exclusions(world, code) == [(electrician, "offer_expired")]
    assert service.expire_offers(world.platform, NOW + 8 * MIN) == []


def test_a_no_show_excludes_the_electrician_and_only_the_desk_calls_it(world):
    code = repair(world)
    electrician = world.uid("e0")
    service.offer(world.platform, code, electrician, actor_id=world.uid("desk"), at=NOW + MIN)
    service.accept(world.platform, code, actor_id=world.uid("SP-user"), at=NOW + 2 * MIN)
    with pytest.raises(Forbidden):
        service.no_show(world.platform, code, actor_id=world.uid("ent1"), at=NOW + 31 * MIN)
    service.no_show(world.platform, code, actor_id=world.uid("desk"), at=NOW + 31 * MIN)
    assert job(world, code).status == "awaiting_dispatch"
    assert exclusions(world, code) == [(electrician, "no_show")]


def test_cannot_complete_can_escalate_and_escalated_jobs_are_the_desks(world):
    code = repair(world)
    at = take_to_work(world, code, world.uid("e0"))
    service.cannot_complete(world.platform, code, "需停电作业", escalate=True,
                            actor_id=world.uid("SP-user"), at=at + MIN)
    assert job(world, code).status == "escalated"
    assert exclusions(world, code) == [(world.uid("e0"), "cannot_complete")]
    other = repair(world)
    with pytest.raises(Forbidden):
        service.escalate(world.platform, other, "无人可及时到场", actor_id=world.uid("ent1"))
    service.escalate(world.platform, other, "无人可及时到场", actor_id=world.uid("desk"),
                     at=NOW + MIN)
    assert job(world, other).status == "escalated"


def test_cancelling_is_the_customers_and_releases_the_electrician(world):
    code = repair(world)
    service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("desk"),
                  at=NOW + MIN)
    with pytest.raises(Forbidden):
        service.cancel(world.platform, code, "不需要了", actor_id=world.uid("ent2"))
    with pytest.raises(ValidationFailed):
        service.cancel(world.platform, code, " ", actor_id=world.uid("ent1"))
    service.cancel(world.platform, code, "已自行修复", actor_id=world.uid("ent1"),
                   at=NOW + 2 * MIN)
    cancelled = job(world, code)
    assert (cancelled.status, cancelled.cancelled_by_id, cancelled.last_reason) == (
        "cancelled", world.uid("ent1"), "已自行修复")
    assert exclusions(world, code) == []
    # The electrician is free for another urgent job at once.
    service.offer(world.platform, repair(world), world.uid("e0"), actor_id=world.uid("desk"),
                  at=NOW + 3 * MIN)


# --------------------------------------------------------------------------- who may act


def test_actors_act_only_on_their_own_jobs(world):
    code = repair(world)
    rival = world.uid("RIVAL-user")
    with pytest.raises(Forbidden):
        service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("ent1"),
                      at=NOW + MIN)
    with pytest.raises(Forbidden):  # a shared-pool job is the desk's to offer
        service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("SP-user"),
                      at=NOW + MIN)
    service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("desk"),
                  at=NOW + MIN)
    with pytest.raises(Forbidden):
        service.accept(world.platform, code, actor_id=rival, at=NOW + 2 * MIN)
    with pytest.raises(Forbidden):
        service.accept(world.platform, code, actor_id=world.uid("ent1"), at=NOW + 2 * MIN)
    with pytest.raises(Forbidden):
        service.accept(world.platform, code, actor_id=world.uid("auditor"), at=NOW + 2 * MIN)
    with pytest.raises(service.JobRefused) as caught:  # their own, but not the offeree
        service.accept(world.platform, code, actor_id=world.uid("SP-user"),
                       electrician_id=world.uid("e1"), at=NOW + 2 * MIN)
    assert caught.value.code == core.NOT_OFFERED_TO_YOU
    with world.platform.unit_of_work() as session:
        users = {name: session.get(service.User, world.uid(name))
                 for name in ("ent1", "ent2", "SP-user", "RIVAL-user", "auditor")}
        assert [j.code for j in service.visible_jobs(session, users["ent1"])] == [code]
        assert service.visible_jobs(session, users["ent2"]) == []
        assert [j.code for j in service.visible_jobs(session, users["SP-user"])] == [code]
        assert service.visible_jobs(session, users["RIVAL-user"]) == []
        assert len(service.visible_jobs(session, users["auditor"])) == 1


def test_only_enterprises_raise_repair_requests_and_input_is_checked(world):
    with pytest.raises(Forbidden):
        repair(world, user="desk")
    with pytest.raises(ValidationFailed) as caught:
        service.request_repair(world.platform, service.RepairRequest(
            lat="91", lon=SITE[1], title="", skills=["high voltage"]),
            actor_id=world.uid("ent1"), at=NOW)
    assert {p.field for p in caught.value.problems} == {"lat", "title", "skills"}
    with pytest.raises(ValidationFailed) as caught:  # not a butler member
        service.request_repair(world.platform, service.RepairRequest(
            lat=SITE[0], lon=SITE[1], title="巡检", provider_code="SP"),
            actor_id=world.uid("ent1"), at=NOW)
    assert caught.value.problems[0].field == "provider"
    with world.platform.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_butler_provider_dispatches_its_own_jobs(world):
    add_provider(world, "BUT", alliance="energy_cloud_butler")
    code = service.request_repair(world.platform, service.RepairRequest(
        lat=SITE[0], lon=SITE[1], title="补偿柜告警", urgent=False, provider_code="BUT"),
        actor_id=world.uid("ent1"), at=NOW)
    with world.platform.unit_of_work() as session:
        butler = session.scalar(select(Provider).where(Provider.code == "BUT"))
        mine = [e.id for e in butler.electricians]
    assert job(world, code).alliance == "energy_cloud_butler"
    with pytest.raises(service.NotOfferable):  # the shared pool's people are not its own
        service.offer(world.platform, code, world.uid("e0"), actor_id=world.uid("desk"),
                      at=NOW + MIN)
    service.offer(world.platform, code, mine[0], actor_id=world.uid("BUT-user"), at=NOW + MIN)
    assert job(world, code).electrician_id == mine[0]


# --------------------------------------------------------------------------- double booking


def test_a_second_urgent_offer_to_a_busy_electrician_is_refused(world):
    first, second = repair(world), repair(world)
    electrician = world.uid("e0")
    desk = world.uid("desk")
    service.offer(world.platform, first, electrician, actor_id=desk, at=NOW + MIN)
    with pytest.raises(service.NotOfferable) as caught:
        service.offer(world.platform, second, electrician, actor_id=desk, at=NOW + 2 * MIN)
    assert caught.value.status == 409
    assert [p.message for p in caught.value.problems] == [
        membership.INELIGIBLE_MESSAGES[membership.BUSY]]
    assert job(world, second).status == "new"


def test_the_database_index_refuses_a_double_booking_that_races_past_the_check(world,
                                                                                 monkeypatch):
    first, second = repair(world), repair(world)
    electrician = world.uid("e0")
    service.offer(world.platform, first, electrician, actor_id=world.uid("desk"), at=NOW + MIN)
    # As if the other transaction had not committed when this one checked eligibility.
    monkeypatch.setattr(membership, "eligibility", lambda *args: [])
    with pytest.raises(service.DoubleBooked):
        service.offer(world.platform, second, electrician, actor_id=world.uid("desk"),
                      at=NOW + 2 * MIN)
    assert job(world, second).status == "new" and events(world, second) == ["created"]


def _raw_job(session: Session, code: str, electrician_id: int, *, urgent: bool = True,
             status: str = "offered") -> Job:
    enterprise = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
    row = Job(code=code, park_id=enterprise.park_id, enterprise=enterprise, kind="repair",
              alliance="shared_electricians", urgent=urgent, title="t", description="",
              lat=SITE[0], lon=SITE[1], required_skills="low_voltage", service_minutes=60,
              status=status, electrician_id=electrician_id, photos=0,
              on_site_deadline=NOW + timedelta(minutes=30) if urgent else None,
              offer_expires_at=NOW + MIN, created_at=NOW, last_event_at=NOW)
    session.add(row)
    session.flush()
    return row


def test_the_partial_unique_index_holds_one_active_urgent_job_per_electrician(world):
    electrician = world.uid("e0")
    with Session(world.platform.engine) as session:
        _raw_job(session, "J1", electrician, status="in_progress")
        _raw_job(session, "J2", electrician, urgent=False, status="accepted")  # planned work
        _raw_job(session, "J3", electrician, status="closed")
        _raw_job(session, "J4", electrician, status="awaiting_sign_off")
        with pytest.raises(IntegrityError, match="electrician_id"):
            _raw_job(session, "J5", electrician, status="offered")
        session.rollback()
        _raw_job(session, "J1", electrician, status="closed")
        _raw_job(session, "J5", electrician, status="offered")  # the first one is over
        session.rollback()


def test_concurrent_changes_to_one_job_are_caught_by_its_version(world):
    code = repair(world)
    with Session(world.platform.engine, expire_on_commit=False) as one, \
            Session(world.platform.engine, expire_on_commit=False) as two:
        a = one.scalar(select(Job).where(Job.code == code))
        b = two.scalar(select(Job).where(Job.code == code))
        service.apply_event(one, None, a, core.Escalate(NOW + MIN, "无人"))
        one.commit()
        with pytest.raises(Conflict):
            service.apply_event(two, None, b, core.Cancel("system", NOW + MIN, "取消"))
        two.rollback()
    assert job(world, code).status == "escalated"


def test_job_events_are_append_only(world):
    code = repair(world)
    with Session(world.platform.engine) as session:
        event = session.scalar(select(JobEvent).join(Job).where(Job.code == code))
        event.data = json.dumps({"forged": True})
        with pytest.raises(ValueError, match="append-only"):
            session.flush()
        session.rollback()
        with pytest.raises(ValueError, match="append-only"):
            session.delete(session.scalar(select(JobEvent)))
            session.flush()
    with world.platform.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(JobExclusion)) == 0
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0
