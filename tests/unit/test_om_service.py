"""Custody O&M contracts through the service layer on SQLite (who may enter, end and see them,
every refused input reported by field with nothing stored, patrol generation and its
idempotence, month ends, ending a contract early) and through the HTTP API on the demo park."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from parkgrid.models import (
    Enterprise,
    Job,
    JobEvent,
    OmContract,
    OmContractItem,
    Park,
    Provider,
    User,
)
from parkgrid.services import om as service
from parkgrid.services.errors import Conflict, Forbidden, NotFound, ValidationFailed

from .alliance_world import NOW, TODAY, World, add_provider, build_world, make_platform
from .test_web import token

BUTLER = "energy_cloud_butler"
ITEMS = (service.ItemInput("1号主变", "transformer", "31.301000", "120.701000"),
         service.ItemInput("10kV开关柜", "switchgear", Decimal("31.302"), Decimal("120.702")))


@pytest.fixture(scope="module")
def world_template(tmp_path_factory):
    """Built once: two admitted butler providers, a butler applicant, a shared-electricians
    member, and E1's site recorded (E2 has none)."""
    folder = tmp_path_factory.mktemp("om-world")
    platform = make_platform(folder)
    world = build_world(platform)
    add_provider(world, "BUT", alliance=BUTLER)
    add_provider(world, "BUT2", alliance=BUTLER)
    add_provider(world, "APPL", alliance=BUTLER, status="applied")
    add_provider(world, "SHARE")  # shared electricians
    with platform.unit_of_work() as session:
        e1 = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        e1.site_lat, e1.site_lon = Decimal("31.305000"), Decimal("120.705000")
    platform.engine.dispose()
    return folder / "a.sqlite3", dict(world.ids)


@pytest.fixture
def world(world_template, tmp_path):
    database, ids = world_template
    shutil.copy(database, tmp_path / "a.sqlite3")
    platform = make_platform(tmp_path)
    yield World(platform, dict(ids))
    platform.engine.dispose()


def contract_input(**changes) -> service.ContractInput:
    values = {"provider_code": "BUT", "enterprise_code": "E1", "frequency": "daily",
              "window_start": "09:00", "window_end": "11:30", "starts_on": TODAY,
              "items": ITEMS, "service_minutes": 40, "skills": ["low_voltage", "patrol"]}
    values.update(changes)
    return service.ContractInput(**values)


def create(world, user="desk", **changes) -> str:
    return service.create_contract(world.platform, contract_input(**changes), world.uid(user),
                                   at=NOW)


def stored(world, model) -> int:
    with world.platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


def jobs_of(world) -> list[Job]:
    with world.platform.unit_of_work() as session:
        found = list(session.scalars(select(Job).order_by(Job.due_on, Job.title)))
        for job in found:
            job.events, job.provider, job.contract_item.contract  # noqa: B018  (load them)
        return found


def d(text: str) -> date:
    return date.fromisoformat(text)


# --------------------------------------------------------------------------- entering


def test_staff_enter_a_contract_with_its_items(world):
    code = create(world, code="OM-E1-2026", ends_on="2027-11-16")
    assert code == "OM-E1-2026"
    with world.platform.unit_of_work() as session:
        row = service.get_contract(session, None, code)
        assert (row.provider.code, row.enterprise.code, row.frequency, row.job_kind) == (
            "BUT", "E1", "daily", "patrol")
        assert (row.window_start, row.window_end, row.service_minutes) == (
            time(9), time(11, 30), 40)
        assert row.skill_list == ["low_voltage", "patrol"]
        assert (row.starts_on, row.ends_on, row.active) == (TODAY, d("2027-11-16"), True)
        assert row.created_by_id == world.uid("desk") and row.created_at == NOW
        assert [(i.name, i.equipment_kind, i.lat, i.lon) for i in row.items] == [
            ("1号主变", "transformer", Decimal("31.301000"), Decimal("120.701000")),
            ("10kV开关柜", "switchgear", Decimal("31.302000"), Decimal("120.702000"))]


def test_a_generated_code_and_items_at_the_enterprise_site(world):
    code = create(world, user="admin", items=[service.ItemInput("低压配电室")])
    assert code.startswith("OM261117-")
    with world.platform.unit_of_work() as session:
        (item,) = service.get_contract(session, None, code).items
        assert (item.lat, item.lon) == (Decimal("31.305000"), Decimal("120.705000"))


def test_a_provider_enters_contracts_for_its_own_company_only(world):
    code = create(world, user="BUT-user", provider_code=None)
    with world.platform.unit_of_work() as session:
        assert service.get_contract(session, None, code).provider.code == "BUT"
    with pytest.raises(Forbidden):
        create(world, user="BUT-user", provider_code="BUT2")
    for user in ("ent1", "auditor"):
        with pytest.raises(Forbidden):
            create(world, user=user)
    assert stored(world, OmContract) == 1


@pytest.mark.parametrize(("changes", "fields"), [
    ({"window_start": "11:30", "window_end": "09:00"}, {"window_end"}),
    ({"window_end": "09:00"}, {"window_end"}),
    ({"window_start": "9 o'clock"}, {"window_start"}),
    ({"window_end": None}, {"window_end"}),
    ({"starts_on": "2026-11-17", "ends_on": "2026-11-16"}, {"ends_on"}),
    ({"starts_on": "17/11/2026"}, {"starts_on"}),
    ({"starts_on": None}, {"starts_on"}),
    ({"frequency": "fortnightly"}, {"frequency"}),
    ({"frequency": None}, {"frequency"}),
    ({"job_kind": "repair"}, {"job_kind"}),
    ({"service_minutes": 0}, {"service_minutes"}),
    ({"service_minutes": "1441"}, {"service_minutes"}),
    ({"skills": ["High Voltage!"]}, {"skills"}),
    ({"items": []}, {"items"}),
    ({"items": [service.ItemInput("1号主变", lat="91", lon="120.7")]}, {"items[0].lat"}),
    ({"items": [service.ItemInput("1号主变", lat="31.3", lon="east")]}, {"items[0].lon"}),
    ({"items": [service.ItemInput("1号主变", lat="NaN", lon="120.7")]}, {"items[0].lat"}),
    ({"items": [service.ItemInput("1号主变", lat="31.3")]}, {"items[0].lat"}),
    ({"items": [service.ItemInput("")]}, {"items[0].name"}),
    ({"items": [service.ItemInput("柜", "k" * 33)]}, {"items[0].equipment_kind"}),
    ({"items": [service.ItemInput("柜"), service.ItemInput("柜")]}, {"items"}),
    ({"provider_code": "NOBODY"}, {"provider"}),
    ({"provider_code": "APPL"}, {"provider"}),
    ({"provider_code": "SHARE"}, {"provider"}),
    ({"provider_code": None}, {"provider"}),
    ({"enterprise_code": "E9"}, {"enterprise"}),
    ({"enterprise_code": "E2", "items": [service.ItemInput("柜")]}, {"items[0].lat"}),
    ({"code": "has space"}, {"code"}),
])
def test_bad_input_is_refused_by_field_and_nothing_is_stored(world, changes, fields):
    with pytest.raises(ValidationFailed) as refused:
        create(world, **changes)
    assert {p.field for p in refused.value.problems} == fields
    assert refused.value.status == 422
    assert stored(world, OmContract) == stored(world, OmContractItem) == 0


def test_every_bad_field_is_reported_at_once(world):
    with pytest.raises(ValidationFailed) as refused:
        create(world, window_end="08:00", ends_on="2026-01-01", frequency="hourly",
               provider_code="APPL", enterprise_code="E9",
               items=[service.ItemInput("柜", lat="100", lon="200")])
    assert {p.field for p in refused.value.problems} == {
        "window_end", "ends_on", "frequency", "provider", "enterprise", "items[0].lat",
        "items[0].lon"}
    messages = {p.field: p.text() for p in refused.value.problems}
    assert messages["provider"] == ("APPL is not an admitted O&M provider of the "
                                    "energy-cloud butler alliance.")
    assert messages["ends_on"] == "The contract cannot end before it starts."


def test_a_taken_code_is_refused(world):
    create(world, code="OM1")
    with pytest.raises(ValidationFailed) as refused:
        create(world, code="OM1")
    assert [p.field for p in refused.value.problems] == ["code"]


def test_contract_documents_become_input(world):
    data = service.contract_from_document({
        "provider": "BUT", "enterprise": "E1", "frequency": "weekly", "job_kind": "inspection",
        "window_start": "14:00", "window_end": "16:00", "starts_on": "2026-11-17",
        "items": [{"name": "电容补偿柜", "lat": 31.3, "lon": 120.7}]})
    code = service.create_contract(world.platform, data, None, at=NOW)
    with world.platform.unit_of_work() as session:
        row = service.get_contract(session, None, code)
        assert (row.frequency, row.job_kind, row.service_minutes, row.skill_list) == (
            "weekly", "inspection", 30, ["low_voltage"])
    for bad in ([], {"items": "柜"}, {"items": [1]}, {"skills": 5}):
        with pytest.raises(ValidationFailed):
            service.contract_from_document(bad)


# --------------------------------------------------------------------------- seeing


def test_who_sees_which_contract(world):
    mine = create(world, provider_code="BUT")
    other = create(world, provider_code="BUT2", enterprise_code="E2",
                   items=[service.ItemInput("柜", lat="31.3", lon="120.7")])
    with world.platform.unit_of_work() as session:
        def seen(username):
            user = session.get(User, world.uid(username))
            return [c.code for c in service.visible_contracts(session, user)]

        assert seen("desk") == seen("auditor") == seen("admin") == sorted([mine, other])
        assert seen("BUT-user") == [mine] and seen("ent1") == [mine]
        assert seen("BUT2-user") == [other] and seen("ent2") == [other]
        assert seen("SHARE-user") == []
        with pytest.raises(NotFound):
            service.get_contract(session, session.get(User, world.uid("ent2")), mine)
        with pytest.raises(NotFound):
            service.get_contract(session, None, "OM-NOPE")


# --------------------------------------------------------------------------- generation


def test_generation_creates_one_job_per_item_and_due_day(world):
    code = create(world, frequency="daily", job_kind="inspection")
    at = NOW + timedelta(hours=1)
    created = service.generate_patrols(world.platform, d("2026-11-16"), d("2026-11-18"), at=at)
    assert len(created) == 4  # two items, from the first day (the 17th) to the 18th
    found = jobs_of(world)
    assert sorted(j.code for j in found) == sorted(created)
    assert [(j.due_on, j.title) for j in found] == [
        (d("2026-11-17"), "10kV开关柜检查"), (d("2026-11-17"), "1号主变检查"),
        (d("2026-11-18"), "10kV开关柜检查"), (d("2026-11-18"), "1号主变检查")]
    job = found[1]
    assert (job.kind, job.alliance, job.provider.code, job.urgent, job.status) == (
        "inspection", BUTLER, "BUT", False, "new")
    assert job.on_site_deadline is None
    # 09:00-11:30 in Shanghai is 01:00-03:30 UTC.
    assert (job.window_start, job.window_end) == (datetime(2026, 11, 17, 1, 0, tzinfo=UTC),
                                                  datetime(2026, 11, 17, 3, 30, tzinfo=UTC))
    assert (job.service_minutes, job.skill_list) == (40, ["low_voltage", "patrol"])
    assert (job.lat, job.lon) == (Decimal("31.301000"), Decimal("120.701000"))
    assert job.contract_item.name == "1号主变" and job.contract_item.contract.code == code
    assert job.description == f"{code} · transformer · 2026-11-17"
    assert job.created_at == at and job.enterprise_id == job.contract_item.contract.enterprise_id
    assert [e.kind for e in job.events] == ["created"]


def test_generating_twice_adds_nothing_and_overlaps_add_only_new_days(world):
    create(world, frequency="daily")
    first = service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=6), at=NOW)
    assert len(first) == 14
    assert service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=6),
                                    at=NOW) == []
    more = service.generate_patrols(world.platform, TODAY + timedelta(days=5),
                                    TODAY + timedelta(days=8), at=NOW)
    assert len(more) == 4
    assert stored(world, Job) == 18 and stored(world, JobEvent) == 18


def test_a_concurrent_duplicate_is_skipped_not_raised(world, monkeypatch):
    create(world, frequency="daily")
    assert len(service.generate_patrols(world.platform, TODAY, TODAY, at=NOW)) == 2
    calls = []
    real = service._existing

    def stale(session, item_ids, first, last):
        # The first look misses what a concurrent run has just stored.
        calls.append(1)
        return set() if len(calls) == 1 else real(session, item_ids, first, last)

    monkeypatch.setattr(service, "_existing", stale)
    created = service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=1),
                                       at=NOW)
    assert len(created) == 2 and len(calls) == 2  # the next day only, after one retry
    assert stored(world, Job) == 4


def test_weekly_and_month_end_contracts(world):
    create(world, frequency="weekly", starts_on="2026-11-17", code="WEEKLY",
           items=ITEMS[:1])
    create(world, frequency="monthly", starts_on="2027-01-31", code="MONTHLY",
           items=ITEMS[:1])
    service.generate_patrols(world.platform, d("2027-01-29"), d("2027-04-30"), at=NOW)
    due = {}
    for job in jobs_of(world):
        due.setdefault(job.contract_item.contract.code, []).append(job.due_on)
    assert due["MONTHLY"] == [d("2027-01-31"), d("2027-02-28"), d("2027-03-31"),
                              d("2027-04-30")]
    assert all(day.isoweekday() == 2 for day in due["WEEKLY"]) and len(due["WEEKLY"]) == 13


def test_the_window_follows_the_park_clock_across_daylight_saving(world):
    with world.platform.unit_of_work() as session:
        session.scalar(select(Park)).timezone = "Europe/Berlin"
    create(world, frequency="daily", starts_on="2027-03-27", items=ITEMS[:1])
    service.generate_patrols(world.platform, d("2027-03-27"), d("2027-03-29"), at=NOW)
    assert [j.window_start.hour for j in jobs_of(world)] == [8, 7, 7]  # 09:00 CET, CEST


def test_only_active_contracts_of_admitted_providers_and_the_chosen_park(world):
    create(world, frequency="daily", starts_on="2026-12-01")
    withdrawn = create(world, frequency="daily", code="GONE")
    service.end_contract(world.platform, withdrawn, "客户取消", actor_id=world.uid("desk"),
                         last_day=TODAY - timedelta(days=1), at=NOW)
    assert service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=13),
                                    at=NOW) == []
    with world.platform.unit_of_work() as session:
        park_id = session.scalar(select(Park.id))
        session.scalar(select(Provider).where(Provider.code == "BUT")).status = "suspended"
    assert service.generate_patrols(world.platform, d("2026-12-01"), d("2026-12-02"),
                                    at=NOW) == []
    with world.platform.unit_of_work() as session:
        session.scalar(select(Provider).where(Provider.code == "BUT")).status = "approved"
    assert service.generate_patrols(world.platform, d("2026-12-01"), d("2026-12-02"),
                                    park_id=park_id + 1, at=NOW) == []
    assert len(service.generate_patrols(world.platform, d("2026-12-01"), d("2026-12-02"),
                                        park_id=park_id, at=NOW)) == 4


def test_a_contract_row_the_core_refuses_is_skipped_not_fatal(world):
    broken = create(world, code="BROKEN")
    create(world, code="FINE")
    with world.platform.unit_of_work() as session:
        service.get_contract(session, None, broken).service_minutes = 2000  # edited by hand
    created = service.generate_patrols(world.platform, TODAY, TODAY, at=NOW)
    assert len(created) == 2
    assert {j.contract_item.contract.code for j in jobs_of(world)} == {"FINE"}


@pytest.mark.parametrize(("first", "last", "field"), [
    (d("2026-11-18"), d("2026-11-17"), "last"),
    (d("2026-11-17"), d("2027-03-01"), "last"),
    (datetime(2026, 11, 17), d("2026-11-18"), "first"),
    (d("2026-11-17"), "2026-11-18", "last"),
])
def test_bad_generation_ranges_are_refused(world, first, last, field):
    create(world)
    with pytest.raises(ValidationFailed) as refused:
        service.generate_patrols(world.platform, first, last, at=NOW)
    assert [p.field for p in refused.value.problems] == [field]
    assert stored(world, Job) == 0


# --------------------------------------------------------------------------- ending


def test_ending_a_contract_cancels_later_jobs_not_yet_under_way(world):
    code = create(world, frequency="daily", items=ITEMS[:1])
    created = service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=4),
                                       at=NOW)
    assert len(created) == 5
    later = NOW + timedelta(hours=2)
    with pytest.raises(Forbidden):
        service.end_contract(world.platform, code, "不再续约", actor_id=world.uid("ent1"))
    with pytest.raises(NotFound):
        service.end_contract(world.platform, code, "不再续约", actor_id=world.uid("BUT2-user"))
    with pytest.raises(ValidationFailed):
        service.end_contract(world.platform, code, " ", actor_id=world.uid("BUT-user"))
    cancelled = service.end_contract(world.platform, code, "不再续约",
                                     actor_id=world.uid("BUT-user"),
                                     last_day=TODAY + timedelta(days=2), at=later)
    assert len(cancelled) == 2
    by_day = {j.due_on: j for j in jobs_of(world)}
    assert [by_day[TODAY + timedelta(days=n)].status for n in range(5)] == [
        "new", "new", "new", "cancelled", "cancelled"]
    gone = by_day[TODAY + timedelta(days=4)]
    assert (gone.last_reason, gone.cancelled_by_id, gone.closed_at) == (
        "不再续约", world.uid("BUT-user"), later)
    with world.platform.unit_of_work() as session:
        row = service.get_contract(session, None, code)
        assert (row.ends_on, row.active) == (TODAY + timedelta(days=2), True)
    # Nothing more falls due after the last day; it only ever ends earlier.
    assert service.generate_patrols(world.platform, TODAY, TODAY + timedelta(days=9),
                                    at=later) == []
    with pytest.raises(ValidationFailed) as refused:
        service.end_contract(world.platform, code, "延期", actor_id=world.uid("desk"),
                             last_day=TODAY + timedelta(days=2), at=later)
    assert [p.field for p in refused.value.problems] == ["last_day"]


def test_ending_before_the_first_day_withdraws_the_contract(world):
    code = create(world, starts_on="2026-12-01")
    assert service.end_contract(world.platform, code, "签约有误", actor_id=world.uid("admin"),
                                at=NOW) == []
    with world.platform.unit_of_work() as session:
        row = service.get_contract(session, None, code)
        assert (row.active, row.ends_on) == (False, None)
    with pytest.raises(Conflict):
        service.end_contract(world.platform, code, "签约有误", actor_id=world.uid("admin"),
                             at=NOW)


# --------------------------------------------------------------------------- CLI


def test_the_cli_enters_contracts_and_creates_their_jobs(world, tmp_path):
    import json

    from click.testing import CliRunner

    from parkgrid.cli import main

    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester",
           "PARKGRID_DATABASE_URL": world.platform.settings.database_url}
    document = tmp_path / "contract.json"
    document.write_text(json.dumps({
        "code": "OM-CLI", "provider": "BUT", "enterprise": "E1", "frequency": "monthly",
        "window_start": "13:00", "window_end": "15:00", "starts_on": "2026-11-30",
        "items": [{"name": "1号主变", "equipment_kind": "transformer"},
                  {"name": "直流屏", "lat": 31.3, "lon": 120.7}]}, ensure_ascii=False),
        encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["alliance", "contract-add", str(document), "--by", "desk"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert "contract OM-CLI entered" in result.output
    again = runner.invoke(main, ["alliance", "contract-add", str(document)], env=env)
    assert again.exit_code != 0 and "code: The code OM-CLI is taken." in again.output

    result = runner.invoke(main, ["alliance", "patrols", "--first", "2026-11-01",
                                  "--last", "2027-01-31"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("6 job(s) created: ")
    result = runner.invoke(main, ["alliance", "patrols", "--first", "2026-11-01",
                                  "--last", "2027-01-31", "--park", "P"], env=env)
    assert result.output.strip() == "0 job(s) created"
    result = runner.invoke(main, ["alliance", "patrols", "--first", "2026-11-02",
                                  "--last", "2026-11-01"], env=env)
    assert result.exit_code != 0 and "last: The last day must not be before the first." \
        in result.output
    with world.platform.unit_of_work() as session:
        assert sorted(session.scalars(select(Job.due_on))) == [
            d("2026-11-30"), d("2026-11-30"), d("2026-12-30"), d("2026-12-30"),
            d("2027-01-30"), d("2027-01-30")]
        contract = service.get_contract(session, None, "OM-CLI")
        assert contract.created_by_id == world.uid("desk")
        assert (contract.items[0].lat, contract.items[0].lon) == (
            Decimal("31.305000"), Decimal("120.705000"))


# --------------------------------------------------------------------------- HTTP API

LOGINS = {"admin": "admin-demo-1", "settlement": "settlement-demo-1",
          "auditor": "auditor-demo-1", "enterprise": "enterprise-demo-1",
          "enterprise2": "enterprise-demo-2", "provider": "provider-demo-1"}


@pytest.fixture
def headers(client):
    found = {}

    def get(username):
        if username not in found:
            found[username] = token(client, username, LOGINS[username])
        return found[username]

    return get


def butler_and_enterprise(demo_platform) -> tuple[str, str]:
    with demo_platform.unit_of_work() as session:
        butler = session.scalar(select(Provider.code).where(Provider.alliance == BUTLER)
                                .order_by(Provider.code))
        enterprise = session.scalar(select(User).where(
            User.username == "enterprise")).enterprise.code
        return butler, enterprise


def api_contract(butler, enterprise, **changes) -> dict:
    body = {"provider": butler, "enterprise": enterprise, "frequency": "weekly",
            "window_start": "08:30", "window_end": "10:00", "starts_on": "2026-11-17",
            "items": [{"name": "1号主变", "equipment_kind": "transformer",
                       "lat": "31.301", "lon": "120.701"},
                      {"name": "低压配电柜", "lat": "31.302", "lon": "120.702"}]}
    body.update(changes)
    return body


def test_openapi_documents_the_contract_endpoints(app, client):
    paths = set(client.get("/api/openapi.json").json["paths"])
    assert {"/api/v1/contracts", "/api/v1/contracts/{code}", "/api/v1/contracts/{code}/end",
            "/api/v1/patrols/generate"} <= paths
    ours = [rule for rule in app.url_map.iter_rules()
            if rule.rule.startswith(("/api/v1/contracts", "/api/v1/patrols"))]
    assert len(ours) == 5  # two on /api/v1/contracts (POST, GET)
    assert all(getattr(app.view_functions[rule.endpoint], "_roles", None) for rule in ours)


def test_contracts_over_http(client, headers, demo_platform):
    butler, enterprise = butler_and_enterprise(demo_platform)
    created = client.post("/api/v1/contracts", json=api_contract(butler, enterprise),
                          headers=headers("settlement"))
    assert created.status_code == 201, created.json
    code = created.json["code"]
    assert (created.json["provider"], created.json["frequency"], created.json["window_start"],
            created.json["skills"]) == (butler, "weekly", "08:30", ["low_voltage"])
    assert [i["name"] for i in created.json["items"]] == ["1号主变", "低压配电柜"]

    listed = client.get("/api/v1/contracts", headers=headers("enterprise")).json
    assert [c["code"] for c in listed] == [code]
    assert client.get("/api/v1/contracts", headers=headers("enterprise2")).json == []
    assert client.get("/api/v1/contracts", headers=headers("provider")).json == []
    assert client.get(f"/api/v1/contracts/{code}",
                      headers=headers("auditor")).json["code"] == code
    assert client.get(f"/api/v1/contracts/{code}",
                      headers=headers("enterprise2")).status_code == 404

    generated = client.post("/api/v1/patrols/generate",
                            json={"first": "2026-11-17", "last": "2026-11-30"},
                            headers=headers("admin"))
    assert generated.status_code == 200, generated.json
    assert generated.json["created"] == 4 and len(generated.json["jobs"]) == 4
    job = client.get(f"/api/v1/jobs/{generated.json['jobs'][0]}",
                     headers=headers("enterprise")).json
    assert (job["kind"], job["provider"], job["urgent"]) == ("patrol", butler, False)
    again = client.post("/api/v1/patrols/generate",
                        json={"first": "2026-11-17", "last": "2026-11-30"},
                        headers=headers("settlement"))
    assert again.json == {"created": 0, "jobs": []}

    ended = client.post(f"/api/v1/contracts/{code}/end",
                        json={"reason": "合同到期", "last_day": "2026-11-20"},
                        headers=headers("admin"))
    assert ended.status_code == 200, ended.json
    assert ended.json["contract"]["ends_on"] == "2026-11-20"
    assert len(ended.json["cancelled_jobs"]) == 2


def test_the_contract_api_refuses_roles_and_bad_input(client, headers, demo_platform):
    butler, enterprise = butler_and_enterprise(demo_platform)
    body = api_contract(butler, enterprise)
    for user in ("enterprise", "auditor"):
        assert client.post("/api/v1/contracts", json=body,
                           headers=headers(user)).status_code == 403
    assert client.post("/api/v1/patrols/generate", json={"first": "2026-11-17",
                                                         "last": "2026-11-18"},
                       headers=headers("provider")).status_code == 403
    assert client.get("/api/v1/contracts").status_code == 401

    # The demo's provider login belongs to a shared-electricians company.
    own = client.post("/api/v1/contracts", json={**body, "provider": None},
                      headers=headers("provider"))
    assert own.status_code == 422 and set(own.json["errors"]) == {"provider"}
    refused = client.post("/api/v1/contracts",
                          json={**body, "window_end": "08:00", "ends_on": "2026-11-01"},
                          headers=headers("admin"))
    assert refused.status_code == 422
    assert set(refused.json["errors"]) == {"window_end", "ends_on"}
    assert refused.json["errors"]["ends_on"] == ["合同的结束日期不能早于开始日期。"]
    schema = client.post("/api/v1/contracts", json={**body, "frequency": "hourly", "items": []},
                         headers=headers("admin"))
    assert schema.status_code == 422 and {"frequency", "items"} <= set(schema.json["errors"])
    too_long = client.post("/api/v1/patrols/generate",
                           json={"first": "2026-11-17", "last": "2027-11-17"},
                           headers=headers("admin"))
    assert too_long.status_code == 422 and set(too_long.json["errors"]) == {"last"}
    assert client.get("/api/v1/contracts", headers=headers("admin")).json == []


def test_the_hourly_task_creates_the_coming_weeks_visits_once(world, monkeypatch):
    from parkgrid import tasks
    from parkgrid.services import calendar

    create(world)  # daily, two items, from today
    monkeypatch.setattr(calendar, "utcnow", lambda: NOW)
    tasks.configure(world.platform.settings, world.platform)
    assert tasks.generate_patrols.delay().get() == 2 * 8  # today and the seven days after
    assert tasks.generate_patrols.delay().get() == 0
    assert {j.due_on for j in jobs_of(world)} == {TODAY + timedelta(days=k) for k in range(8)}
