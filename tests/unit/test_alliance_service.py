"""Alliance membership through the service layer: applications, the operator's decision at
the admission edges, standing after expiries, roster edits, positions, and who may be
offered a job (on SQLite; the rules themselves are the core's)."""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from parkgrid.models import Certificate, Electrician, Enterprise, Job, Provider, User
from parkgrid.services import alliance as service
from parkgrid.services import jobs as job_service
from parkgrid.services.errors import Forbidden, ValidationFailed

from .alliance_world import (
    NOW,
    SITE,
    TODAY,
    add_provider,
    build_world,
    electrician_ids,
    make_platform,
)


@pytest.fixture
def world(tmp_path):
    platform = make_platform(tmp_path)
    yield build_world(platform)
    platform.engine.dispose()


def roster(valid: int, lapsed: int = 0, *, certificate: str = "low_voltage") -> list[dict]:
    people = []
    for n in range(valid + lapsed):
        expires = TODAY + timedelta(days=300) if n < valid else TODAY - timedelta(days=1)
        people.append({
            "code": f"A{n:02d}", "name": f"申请电工{n}", "home_lat": "31.31", "home_lon": "120.71",
            "skills": ["low_voltage"], "shift_start": "08:00", "shift_end": "20:00",
            "weekdays": [1, 2, 3, 4, 5],
            "certificates": [{"type": certificate, "number": f"T{n:05d}",
                              "expires": expires.isoformat()}]})
    return people


def application(code="NEW", *, valid=10, lapsed=0, expires=date(2029, 1, 1), level=4,
                **changes) -> service.ApplicationInput:
    document = {"code": code, "name": "新申请电力公司", "alliance": "shared_electricians",
                "licence": {"number": "4-2-00042-2023", "level": level, "issued": "2023-01-01",
                            "expires": expires.isoformat()},
                "electricians": roster(valid, lapsed),
                "login": {"username": f"{code.lower()}-login", "password": "long-password-1"}}
    document.update(changes)
    return service.application_from_document(document)


def count(world, model) -> int:
    with world.platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


def provider(world, code) -> Provider:
    with world.platform.unit_of_work() as session:
        found = session.scalar(select(Provider).where(Provider.code == code))
        found.electricians  # noqa: B018  (load before the session closes)
        return found


def new_job(world, *, urgent=True, skills=("low_voltage",), at=NOW, provider_code=None) -> str:
    with world.platform.unit_of_work() as session:
        enterprise = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        owner = None
        if provider_code:
            owner = session.scalar(select(Provider).where(Provider.code == provider_code))
        job, _ = job_service.create_job(session, enterprise=enterprise, kind="repair",
                                        title="跳闸", lat=SITE[0], lon=SITE[1], urgent=urgent,
                                        at=at, skills=skills, provider=owner)
        return job.code


def offerable(world, code, at=NOW) -> list[service.Candidate]:
    with world.platform.unit_of_work() as session:
        job = session.scalar(select(Job).where(Job.code == code))
        return service.offerable_electricians(session, job, at)


def reasons_for(world, code, electrician_id, at=NOW) -> list[str]:
    with world.platform.unit_of_work() as session:
        job = session.scalar(select(Job).where(Job.code == code))
        return service.eligibility(session, job, session.get(Electrician, electrician_id), at)


# --------------------------------------------------------------------------- applications


def test_an_application_stores_licence_roster_certificates_and_login(world):
    code = service.apply(world.platform, application(), now=NOW)
    found = provider(world, code)
    assert (found.status, found.licence_number, found.licence_level) == ("applied",
                                                                        "4-2-00042-2023", 4)
    assert found.licence_expiry == date(2029, 1, 1) and found.applied_at == NOW
    assert found.receives_offers is False
    assert len(found.electricians) == 10 and count(world, Certificate) == 10
    first = found.electricians[0]
    assert (first.shift_start, first.shift_end, first.weekday_list) == (
        time(8), time(20), [1, 2, 3, 4, 5])
    with world.platform.unit_of_work() as session:
        login = session.scalar(select(User).where(User.username == "new-login"))
        assert login.role == "provider" and login.provider_id == found.id
        assert login.check_password("long-password-1")


@pytest.mark.parametrize(("changes", "field"), [
    ({"licence": {"number": "X", "level": 6, "expires": "2029-01-01"}}, "licence"),
    ({"licence": {"number": "X", "level": 4, "expires": "next year"}}, "licence_expires"),
    ({"alliance": "electricians_club"}, "alliance"),
    ({"electricians": roster(10, certificate="welding")}, "electricians[0].certificates[0]"),
    ({"electricians": [{**e, "code": "SAME"} for e in roster(10)]}, "electricians"),
    ({"electricians": [{**roster(1)[0], "home_lat": "95"}]}, "electricians[0].home_lat"),
    ({"electricians": [{**roster(1)[0], "skills": ["Low Voltage!"]}]},
     "electricians[0].skills"),
    ({"electricians": [{**roster(1)[0], "shift_end": None}]}, "electricians[0].shift_end"),
    ({"login": {"username": "x-login", "password": "short"}}, "password"),
    ({"login": {"username": "x-login", "password": "only-letters-here"}}, "password"),
    ({"login": {"username": "x-login", "password": "1234567890123"}}, "password"),
])
def test_a_bad_application_is_refused_by_field_and_nothing_is_stored(world, changes, field):
    with pytest.raises(ValidationFailed) as caught:
        service.apply(world.platform, application(**changes), now=NOW)
    assert field in {p.field for p in caught.value.problems}
    assert count(world, Provider) == 0 and count(world, Electrician) == 0


def test_a_taken_code_or_username_is_refused(world):
    service.apply(world.platform, application("ONE"), now=NOW)
    with pytest.raises(ValidationFailed) as caught:
        service.apply(world.platform, application("ONE"), now=NOW)
    assert {p.field for p in caught.value.problems} == {"code", "username"}
    assert count(world, Provider) == 1


# --------------------------------------------------------------------------- decisions


def test_nine_valid_electricians_are_refused_ten_are_admitted(world):
    service.apply(world.platform, application("NINE", valid=9, lapsed=1), now=NOW)
    service.apply(world.platform, application("TEN", valid=10, lapsed=1), now=NOW)
    with pytest.raises(service.NotAdmissible) as caught:
        service.decide(world.platform, "NINE", actor_id=world.uid("admin"), approve=True,
                       day=TODAY, now=NOW)
    assert caught.value.status == 409
    (problem,) = caught.value.problems
    assert problem.field == "electricians"
    assert problem.params == {"valid": 9, "required": 10}
    assert provider(world, "NINE").status == "applied"

    result = service.decide(world.platform, "TEN", actor_id=world.uid("admin"), approve=True,
                            day=TODAY, now=NOW)
    admitted = provider(world, "TEN")
    assert result.receives_offers and admitted.status == "approved"
    assert admitted.decided_by_id == world.uid("admin") and admitted.decided_at == NOW
    assert admitted.receives_offers and admitted.standing_checked_on == TODAY


def test_a_licence_expiring_today_is_approvable_one_expired_yesterday_is_not(world):
    service.apply(world.platform, application("TODAY", expires=TODAY), now=NOW)
    service.apply(world.platform, application("YDAY", expires=TODAY - timedelta(days=1)),
                  now=NOW)
    service.decide(world.platform, "TODAY", actor_id=world.uid("admin"), approve=True,
                   day=TODAY, now=NOW)
    assert provider(world, "TODAY").status == "approved"
    with pytest.raises(service.NotAdmissible) as caught:
        service.decide(world.platform, "YDAY", actor_id=world.uid("admin"), approve=True,
                       day=TODAY, now=NOW)
    assert [(p.field, p.params["expires"]) for p in caught.value.problems] == [
        ("licence", (TODAY - timedelta(days=1)).isoformat())]


def test_only_the_park_operator_decides_and_only_once(world):
    service.apply(world.platform, application("X"), now=NOW)
    for username in ("desk", "ent1"):
        with pytest.raises(Forbidden):
            service.decide(world.platform, "X", actor_id=world.uid(username), approve=True,
                           day=TODAY)
    with pytest.raises(ValidationFailed):  # a rejection says why
        service.decide(world.platform, "X", actor_id=world.uid("admin"), approve=False)
    service.decide(world.platform, "X", actor_id=world.uid("admin"), approve=False,
                   note="资料不全")
    assert (provider(world, "X").status, provider(world, "X").decision_note) == (
        "rejected", "资料不全")
    with pytest.raises(service.Conflict):
        service.decide(world.platform, "X", actor_id=world.uid("admin"), approve=True,
                       day=TODAY)


# --------------------------------------------------------------------------- standing


def test_standing_flips_the_day_after_the_licence_expires_and_says_why(world):
    add_provider(world, "EXP", licence_expires=TODAY)
    job = new_job(world)
    service.refresh_standing(world.platform, TODAY)
    assert provider(world, "EXP").receives_offers
    assert len(offerable(world, job)) == 10

    tomorrow = TODAY + timedelta(days=1)
    results = service.refresh_standing(world.platform, tomorrow)
    assert results["EXP"].receives_offers is False
    stored = provider(world, "EXP")
    assert not stored.receives_offers and stored.standing_checked_on == tomorrow
    assert json.loads(stored.standing_reasons) == [
        {"code": "licence_expired", "figures": {"expires": TODAY.isoformat(),
                                                "number": "L-EXP"}}]
    # Dispatch checks standing afresh: no offers from the first minute of the next day.
    assert offerable(world, job, NOW + timedelta(days=1)) == []
    (first, *_) = electrician_ids(world, "EXP")
    assert service.NO_OFFERS in reasons_for(world, job, first, NOW + timedelta(days=1))


def test_fewer_than_ten_valid_electricians_stop_offers(world):
    ids = add_provider(world, "THIN", valid=10)
    with world.platform.unit_of_work() as session:  # one certificate runs out today
        certificate = session.scalar(select(Certificate).join(Electrician)
                                     .where(Electrician.id == ids["THIN-00"]))
        certificate.expires = TODAY
    service.refresh_standing(world.platform, TODAY)
    assert provider(world, "THIN").receives_offers
    results = service.refresh_standing(world.platform, TODAY + timedelta(days=1))
    assert results["THIN"].reasons == [{"code": "too_few_valid_electricians",
                                        "figures": {"required": 10, "valid": 9}}]
    problems = service.reason_problems(results["THIN"].reasons)
    assert problems[0].text() == "9 electricians hold a valid certificate; at least 10 are " \
                                 "required"


def test_an_electrician_with_an_expired_certificate_is_never_offerable(world):
    ids = add_provider(world, "MIX", valid=10, lapsed=1)
    job = new_job(world)
    lapsed = ids["MIX-10"]
    offered = {c.electrician_id for c in offerable(world, job)}
    assert len(offered) == 10 and lapsed not in offered
    assert reasons_for(world, job, lapsed) == [service.NOT_QUALIFIED]
    with pytest.raises(job_service.NotOfferable) as caught:
        job_service.offer(world.platform, job, lapsed, actor_id=world.uid("desk"), at=NOW)
    assert caught.value.status == 409
    assert [p.message for p in caught.value.problems] == [
        service.INELIGIBLE_MESSAGES[service.NOT_QUALIFIED]]


def test_a_high_voltage_certificate_does_not_cover_low_voltage_work(world):
    add_provider(world, "HV", certificate="high_voltage", skills="high_voltage,low_voltage")
    assert offerable(world, new_job(world, skills=("low_voltage",))) == []
    assert len(offerable(world, new_job(world, skills=("high_voltage",)))) == 10


def test_shifts_weekdays_and_overnight_shifts_decide_who_is_on(world):
    # Day shift 08:00-20:00 on weekdays; NOW is Tuesday 10:00 in Shanghai.
    add_provider(world, "DAY", shift=(time(8), time(20)), weekdays=0b0011111)
    add_provider(world, "NIGHT", shift=(time(22), time(6)), weekdays=0b0000010)
    job = new_job(world, urgent=False)
    assert {c.provider_code for c in offerable(world, job)} == {"DAY"}
    # Wednesday 03:00 local: the Tuesday night shift is still on, the day shift is not.
    wednesday_3am = NOW + timedelta(hours=17)
    assert {c.provider_code for c in offerable(world, job, wednesday_3am)} == {"NIGHT"}
    # Saturday 10:00: not a working day for either.
    assert offerable(world, job, NOW + timedelta(days=4)) == []


def test_offers_go_to_members_of_the_jobs_alliance_and_nearest_first(world):
    add_provider(world, "SH", home_offset=Decimal("0.02"))  # 2.2 km apart, up to 22 km out
    add_provider(world, "BUT", alliance="energy_cloud_butler")
    add_provider(world, "OTH", alliance="energy_cloud_butler")
    add_provider(world, "PEND", status="applied")
    pool = offerable(world, new_job(world))
    assert {c.provider_code for c in pool} == {"SH"}
    assert [c.minutes for c in pool] == sorted(c.minutes for c in pool)
    assert pool[0].in_time is True and pool[-1].in_time is False  # 22 km: too far
    butler = offerable(world, new_job(world, provider_code="BUT"))
    assert {c.provider_code for c in butler} == {"BUT"}


# --------------------------------------------------------------------------- roster


def test_roster_edits_are_checked_and_limited_to_the_company(world):
    add_provider(world, "OWN")
    add_provider(world, "RIVAL")
    me = world.uid("OWN-user")
    new_id = service.add_electrician(world.platform, "OWN", service.ElectricianInput(
        code="OWN-NEW", name="新电工", home_lat="31.32", home_lon="120.72",
        skills=["low_voltage"], certificates=[service.CertificateInput(
            "low_voltage", "N-1", TODAY + timedelta(days=30))],
        shift_start="07:00", shift_end="19:00"), actor_id=me)
    service.update_electrician(world.platform, new_id, service.ElectricianChanges(
        skills=["low_voltage", "switchgear"], weekdays=[6, 7]), actor_id=me)
    renewed = service.put_certificate(world.platform, new_id, service.CertificateInput(
        "low_voltage", "N-1", "2030-01-01"), actor_id=me)
    with world.platform.unit_of_work() as session:
        row = session.get(Electrician, new_id)
        assert row.skill_list == ["low_voltage", "switchgear"] and row.weekday_list == [6, 7]
        assert [(c.id, c.expires) for c in row.certificates] == [(renewed, date(2030, 1, 1))]

    rival = world.uid("RIVAL-user")
    with pytest.raises(Forbidden):
        service.update_electrician(world.platform, new_id,
                                   service.ElectricianChanges(active=False), actor_id=rival)
    with pytest.raises(Forbidden):
        service.remove_certificate(world.platform, renewed, actor_id=rival)
    with pytest.raises(ValidationFailed) as caught:
        service.put_certificate(world.platform, new_id, service.CertificateInput(
            "welding", "W-1", "2030-01-01"), actor_id=me)
    assert caught.value.problems[0].field == "certificate"
    with pytest.raises(ValidationFailed):  # the code is taken within the company
        service.add_electrician(world.platform, "OWN", service.ElectricianInput(
            code="OWN-NEW", name="重名", home_lat="31.3", home_lon="120.7"), actor_id=me)
    service.remove_certificate(world.platform, renewed, actor_id=world.uid("admin"))
    assert count(world, Certificate) == 20


def test_positions_are_recorded_late_reports_ignored_future_ones_refused(world):
    ids = add_provider(world, "POS")
    (first, *_) = ids.values()
    me = world.uid("POS-user")
    seen = service.utcnow().replace(microsecond=0) - timedelta(minutes=10)
    service.update_position(world.platform, first, "31.305", "120.705", actor_id=me, at=seen)
    service.update_position(world.platform, first, "31.9", "121.9", actor_id=me,
                            at=seen - timedelta(minutes=5))
    with world.platform.unit_of_work() as session:
        row = session.get(Electrician, first)
        assert (row.last_lat, row.last_lon, row.last_seen_at) == (
            Decimal("31.305000"), Decimal("120.705000"), seen)
    with pytest.raises(ValidationFailed):
        service.update_position(world.platform, first, "31.3", "120.7", actor_id=me,
                                at=service.utcnow() + timedelta(hours=1))
    with pytest.raises(ValidationFailed) as caught:
        service.update_position(world.platform, first, "91", "120.7", actor_id=me, at=seen)
    assert caught.value.problems[0].field == "lat"
    with pytest.raises(Forbidden):
        service.update_position(world.platform, first, "31.3", "120.7",
                                actor_id=world.uid("ent1"), at=seen)


def test_the_roster_view_flags_invalid_and_soon_expiring_certificates(world):
    ids = add_provider(world, "VIEW", valid=10, lapsed=1)
    with world.platform.unit_of_work() as session:
        certificate = session.scalar(select(Certificate).where(
            Certificate.electrician_id == ids["VIEW-00"]))
        certificate.expires = TODAY + timedelta(days=5)
    with world.platform.unit_of_work() as session:
        found, standing, rows = service.roster(session, None, "VIEW", TODAY)
        by_code = {r.electrician.code: r for r in rows}
        assert standing.receives_offers and standing.valid_electricians == 10
        assert not by_code["VIEW-10"].valid and by_code["VIEW-10"].offerable_skills == []
        assert by_code["VIEW-00"].expiring == [{"type": "low_voltage", "number": "C-VIEW-0",
                                               "expires": (TODAY + timedelta(days=5)).isoformat(),
                                               "days_left": 5}]
        assert by_code["VIEW-01"].offerable_skills == ["cable", "low_voltage"]


# --------------------------------------------------------------------------- migration


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request):
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.mark.integration
def test_migration_0004_moves_certificates_and_the_index_refuses_double_booking(migrated_url):
    from sqlalchemy import text

    from parkgrid import migrate
    from parkgrid.db import make_engine

    engine = make_engine(migrated_url)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO providers (id, code, name, alliance, licence_level, licence_expiry,"
                " status, created_at) VALUES (1, 'OLD', '老公司', 'shared_electricians', 4,"
                " '2030-01-01', 'approved', '2026-01-01 00:00:00')"))
            conn.execute(text(
                "INSERT INTO electricians (id, provider_id, name, certificate_type,"
                " certificate_expiry, skills, home_lat, home_lon) VALUES (7, 1, '老电工',"
                " 'low_voltage', '2027-05-01', 'low_voltage', 31.3, 120.7)"))
        migrate.upgrade(engine)
        with engine.begin() as conn:
            # Raw SQL: SQLite gives dates back as text, PostgreSQL as dates.
            assert tuple(map(str, conn.execute(text(
                "SELECT electrician_id, type, number, expires FROM certificates")).one())) == (
                "7", "low_voltage", "UNRECORDED-7", "2027-05-01")
            row = conn.execute(text("SELECT code, active, weekdays FROM electricians")).one()
            assert (row.code, bool(row.active), row.weekdays) == ("EL7", True, 127)
            assert conn.execute(text("SELECT receives_offers FROM providers")).scalar() in (
                False, 0)
            conn.execute(text(
                "INSERT INTO parks (id, code, name, timezone, gate_closure_time, period_minutes,"
                " trade_scope, price_min, price_max, pricing_rule, tie_rule, created_at) VALUES"
                " (1, 'P', 'p', 'Asia/Shanghai', '12:00:00', 60, 'park', 0.0001, 10, 'zonal',"
                " 'pro_rata', '2026-01-01 00:00:00')"))
            conn.execute(text(
                "INSERT INTO substations VALUES (1, 1, 'S', 's', 110)"))
            conn.execute(text("INSERT INTO transformers VALUES (1, 1, 'T', 't', 1000, 0.8)"))
            conn.execute(text("INSERT INTO feeders VALUES (1, 1, 'F', 'f', 900)"))
            conn.execute(text(
                "INSERT INTO enterprises (id, park_id, feeder_id, code, name, contracted_kva,"
                " created_at) VALUES (1, 1, 1, 'E', 'e', 100, '2026-01-01 00:00:00')"))

        def job(conn, number, status):
            conn.execute(text(
                "INSERT INTO jobs (code, park_id, enterprise_id, kind, alliance, urgent, title,"
                " description, lat, lon, required_skills, service_minutes, status,"
                " electrician_id, offer_expires_at, on_site_deadline, photos, created_at,"
                " last_event_at, version) VALUES (:code, 1, 1, 'repair', 'shared_electricians',"
                " :urgent, 't', '', 31.3, 120.7, 'low_voltage', 60, :status, 7,"
                " '2026-01-01 00:05:00', '2026-01-01 00:30:00', 0, '2026-01-01 00:00:00',"
                " '2026-01-01 00:00:00', 1)"), {"code": f"J{number}", "status": status,
                                                 "urgent": True})

        with engine.begin() as conn:
            job(conn, 1, "en_route")
            job(conn, 2, "closed")
        with pytest.raises(IntegrityError, match="uq_jobs_active_urgent|jobs.electrician_id"), \
                engine.begin() as conn:
            job(conn, 3, "offered")

        migrate.downgrade(engine, "0003")
        with engine.begin() as conn:
            assert tuple(map(str, conn.execute(text(
                "SELECT certificate_type, certificate_expiry FROM electricians")).one())) == (
                "low_voltage", "2027-05-01")
    finally:
        migrate.downgrade(engine, "base")
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()


# --------------------------------------------------------------------------- command line


def test_staff_run_membership_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from parkgrid.cli import main

    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester"}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0

    def document(code, valid, lapsed=0):
        path = tmp_path / f"{code}.json"
        body = {"code": code, "name": f"{code}公司", "alliance": "shared_electricians",
                "licence": {"number": f"L-{code}", "level": 5, "expires": "2027-06-30"},
                "electricians": roster(valid, lapsed)}
        path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        return str(path)

    result = runner.invoke(main, ["alliance", "apply", document("NINE", 9, 1)], env=env)
    assert result.exit_code == 0 and "provider NINE applied" in result.output, result.output
    result = runner.invoke(main, ["alliance", "approve", "NINE", "--day", TODAY.isoformat()],
                           env=env)
    assert result.exit_code != 0
    assert "electricians: 9 electricians hold a valid certificate; at least 10 are required" \
        in result.output
    result = runner.invoke(main, ["alliance", "reject", "NINE"], env=env)
    assert result.exit_code != 0 and "--note" in result.output
    result = runner.invoke(main, ["alliance", "reject", "NINE", "--note", "人数不足"], env=env)
    assert result.exit_code == 0 and "NINE rejected" in result.output

    runner.invoke(main, ["alliance", "apply", document("TEN", 10, 1)], env=env)
    result = runner.invoke(main, ["alliance", "approve", "TEN", "--day", TODAY.isoformat()],
                           env=env)
    assert "TEN approved; receives offers: yes" in result.output, result.output
    result = runner.invoke(main, ["alliance", "standing", "--day", "2027-07-01"], env=env)
    assert result.exit_code == 0
    assert "TEN      no offers" in result.output
    assert "licence L-TEN expired on 2027-06-30" in result.output
    assert "NINE     no offers" in result.output
    assert "not an admitted member (rejected)" in result.output
    result = runner.invoke(main, ["alliance", "roster", "TEN", "--day", TODAY.isoformat()],
                           env=env)
    assert result.exit_code == 0 and "10 valid electricians" in result.output
    assert result.output.count("[NOT VALID]") == 1 and "08:00-20:00 12345" in result.output
    result = runner.invoke(main, ["alliance", "expire-offers"], env=env)
    assert result.exit_code == 0 and "0 offer(s) expired" in result.output
