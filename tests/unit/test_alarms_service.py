"""Power monitoring through the service layer, the API and the command line on SQLite: a day
of metering with an overload, a gap and a stuck meter raises its alarms and jobs once, the job
goes to the enterprise's O&M provider or the shared pool, an enterprise without a site gets
the alarm without a job, and who may see and run what."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from alliance import alarms as core
from parkgrid.cli import main
from parkgrid.config import Settings
from parkgrid.models import (
    Alarm,
    Alliance,
    Enterprise,
    Job,
    MeteringPoint,
    OmContract,
    Park,
    Provider,
    ProviderStatus,
    Transformer,
)
from parkgrid.services import alarms as service
from parkgrid.services import jobs as job_service
from parkgrid.services import metering
from parkgrid.services.errors import NotFound, ValidationFailed
from parkgrid.wiring import Platform

from .alliance_world import NOW, SITE, World, add_provider, build_world, make_platform

DAY = date(2026, 11, 16)  # the day before the world's today
MIDNIGHT = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)  # 00:00 of DAY in Shanghai
Q = timedelta(minutes=15)
OVERLOAD = range(56, 60)  # 14:00-15:00: E1 draws 1100 kW on a 1000 kVA contract
GAP = range(8, 16)  # 02:00-04:00: nothing from E1-M2
STUCK = range(40, 60)  # 10:00-15:00: E2-M1 shows 300.000 kW throughout
KEYS = {
    "overload": "load_rate:over_limit:enterprise:E1:2026-11-16T06:00Z",
    "gap": "metering_gap:gap:point:E1-M2:2026-11-15T18:00Z",
    "stuck": "abnormal_reading:stuck:point:E2-M1:2026-11-16T02:00Z",
    "transformer": "load_rate:over_limit:transformer:P/S1/T1:2026-11-16T06:00Z",
}


def kw(point: str, interval: int) -> str | None:
    moving = (interval % 5) / 10  # real load moves a little every interval
    if point == "E1-M1":
        return f"{1000 if interval in OVERLOAD else 500 + moving:.3f}"
    if point == "E1-M2":
        return None if interval in GAP else f"{100 + moving:.3f}"
    return f"{300 if interval in STUCK else 400 + moving:.3f}"


def readings(day_start: datetime = MIDNIGHT) -> bytes:
    lines = ["point,start,kw"]
    for point in ("E1-M1", "E1-M2", "E2-M1"):
        for interval in range(96):
            value = kw(point, interval)
            if value is not None:
                lines.append(f"{point},{(day_start + interval * Q).isoformat()},{value}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The world with its day of metering, built once (logins are slow to hash on purpose);
    each test gets a copy of the database file."""
    folder = tmp_path_factory.mktemp("alarms-world")
    platform = make_platform(folder)
    world = build_world(platform)
    add_provider(world, "SP")  # a shared-electricians member
    add_provider(world, "BUT", alliance=Alliance.ENERGY_CLOUD_BUTLER)
    with platform.unit_of_work() as session:
        e1 = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        e1.site_lat, e1.site_lon = SITE
        e2 = session.scalar(select(Enterprise).where(Enterprise.code == "E2"))
        session.add_all([MeteringPoint(enterprise=e1, code="E1-M1", name="1"),
                         MeteringPoint(enterprise=e1, code="E1-M2", name="2"),
                         MeteringPoint(enterprise=e2, code="E2-M1", name="1")])
        # 1500 kVA allowed: E1 and E2 together (1400 kW = 1555.6 kVA) pass it at 14:00.
        transformer = session.scalar(select(Transformer))
        transformer.rated_kva, transformer.max_load_rate = Decimal(2000), Decimal("0.75")
        provider = session.scalar(select(Provider).where(Provider.code == "BUT"))
        session.add(OmContract(code="OM-1", provider=provider, enterprise=e1,
                               frequency="monthly", window_start=time(8, 0),
                               window_end=time(17, 0), starts_on=date(2026, 1, 1)))
        park_id = session.scalar(select(Park.id))
    metering.import_readings(platform, park_id, [readings()], filename="day.csv")
    world.ids["park"] = park_id
    platform.engine.dispose()
    return folder / "a.sqlite3", world.ids


@pytest.fixture
def world(template, tmp_path):
    source, ids = template
    shutil.copy(source, tmp_path / source.name)
    platform = Platform(make_platform_settings(tmp_path))
    yield World(platform, dict(ids))
    platform.engine.dispose()


def make_platform_settings(folder) -> Settings:
    return Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'a.sqlite3'}",
                    secret_key="alarms-test-secret", storage_dir=folder / "files")


def scan(world, at=NOW, **kwargs) -> list[str]:
    return service.scan_day(world.platform, world.ids["park"], DAY, at=at, **kwargs)


def alarms(world) -> dict[str, Alarm]:
    with world.platform.unit_of_work() as session:
        rows = session.scalars(select(Alarm)).all()
        for row in rows:
            row.job, row.job and row.job.provider  # noqa: B018  (load them)
            row.enterprise, row.metering_point, row.transformer  # noqa: B018
        return {row.key: row for row in rows}


def count(world, model) -> int:
    with world.platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- checking


def test_a_day_raises_each_alarm_once_and_a_second_check_adds_nothing(world):
    assert sorted(scan(world)) == sorted(KEYS.values())
    assert count(world, Alarm) == 4 and count(world, Job) == 2
    assert scan(world) == []
    assert scan(world, at=NOW + timedelta(days=3)) == []
    assert count(world, Alarm) == 4 and count(world, Job) == 2


def test_each_alarm_keeps_what_it_found_and_opens_the_job_it_calls_for(world):
    scan(world)
    found = alarms(world)
    overload = found[KEYS["overload"]]
    assert overload.rule == "load_rate" and overload.metering_point_id is None
    assert (overload.starts_at, overload.ends_at) == (MIDNIGHT + 56 * Q, MIDNIGHT + 60 * Q)
    details = json.loads(overload.details)
    assert details["figures"]["peak_kva"] == "1222.7"  # 1000 + 100.4 kW at a power factor of 0.9
    assert details["figures"]["limit_kva"] == "1000.0"
    # Seen the next morning: the overload is over, the job is a visit, not an emergency.
    assert details["job"] == {"urgent": False, "reason": core.NOT_RECENT}
    job = overload.job
    assert (job.kind, job.urgent, job.status) == ("alarm", False, "new")
    assert (job.lat, job.lon) == SITE
    # Stored in the park's language, from the catalogue.
    assert job.title == "E1 负荷越限：峰值 1222.7 kVA，限值 1000.0 kVA"
    assert "2026-11-16" in job.description and "14:00" in job.description

    gap = found[KEYS["gap"]]
    assert gap.rule == "metering_gap" and gap.job.urgent is False
    assert json.loads(gap.details)["figures"] == {"estimated": 0, "intervals": 8, "missing": 8}
    assert gap.metering_point.code == "E1-M2" and gap.enterprise.code == "E1"

    stuck = found[KEYS["stuck"]]
    assert stuck.rule == "abnormal_reading" and stuck.job is None
    assert json.loads(stuck.details)["no_job"] == service.NO_SITE
    assert json.loads(stuck.details)["figures"]["value_kw"] == "300.000"

    transformer = found[KEYS["transformer"]]
    assert transformer.job is None and transformer.enterprise_id is None
    assert transformer.transformer.code == "T1"
    assert json.loads(transformer.details)["no_job"] == core.TRANSFORMER_STAFF_ONLY


def test_alarm_jobs_go_to_the_enterprises_o_and_m_provider(world):
    scan(world)
    found = alarms(world)
    for key in ("overload", "gap"):
        job = found[KEYS[key]].job
        assert job.alliance == Alliance.ENERGY_CLOUD_BUTLER and job.provider.code == "BUT"


@pytest.mark.parametrize("change", [
    lambda session: setattr(session.scalar(select(OmContract)), "active", False),
    lambda session: setattr(session.scalar(select(OmContract)), "ends_on", DAY - timedelta(1)),
    lambda session: setattr(session.scalar(select(OmContract)), "starts_on", DAY + timedelta(1)),
    lambda session: setattr(session.scalar(select(Provider).where(Provider.code == "BUT")),
                            "status", ProviderStatus.SUSPENDED),
    lambda session: session.delete(session.scalar(select(OmContract))),
])
def test_without_a_current_contract_with_an_admitted_provider_the_shared_pool_goes(world,
                                                                                     change):
    with world.platform.unit_of_work() as session:
        change(session)
    scan(world)
    for key in ("overload", "gap"):
        job = alarms(world)[KEYS[key]].job
        assert job.alliance == Alliance.SHARED_ELECTRICIANS and job.provider is None


def test_an_ongoing_overload_seen_in_time_is_urgent_and_the_rest_of_the_day_adds_nothing(world):
    # 15:10 in the park: the day so far is judged, the overload ended ten minutes ago.
    keys = scan(world, at=MIDNIGHT + 60 * Q + timedelta(minutes=10))
    assert sorted(keys) == sorted(KEYS.values())
    job = alarms(world)[KEYS["overload"]].job
    assert job.urgent and job.on_site_deadline == job.created_at + timedelta(minutes=30)
    assert scan(world) == []


def test_only_the_part_of_the_day_that_is_over_is_judged(world):
    # Until a value after it is due, the gap from 02:00 may be data still on their way.
    assert scan(world, at=MIDNIGHT + 12 * Q) == []
    assert scan(world, at=MIDNIGHT + 16 * Q + timedelta(minutes=1)) == []
    assert scan(world, at=MIDNIGHT + 17 * Q) == [KEYS["gap"]]


def test_a_concurrent_duplicate_is_skipped_not_raised(world):
    scan(world)
    with world.platform.unit_of_work() as session:
        park = session.get(Park, world.ids["park"])
        data, ids = service._monitoring_input(session, park, DAY, NOW)
    (finding,) = [f for f in core.scan(data) if f.key == KEYS["overload"]]
    assert service._store(world.platform, world.ids["park"], "Asia/Shanghai", DAY, finding,
                          ids, NOW, core.DEFAULT_THRESHOLDS) is False
    assert count(world, Alarm) == 4 and count(world, Job) == 2


def test_a_day_without_data_raises_nothing_and_a_day_not_begun_is_refused(world):
    assert service.scan_day(world.platform, world.ids["park"], DAY - timedelta(days=5),
                            at=NOW) == []
    with pytest.raises(ValidationFailed):
        service.scan_day(world.platform, world.ids["park"], date(2026, 11, 18), at=NOW)
    with pytest.raises(ValidationFailed):
        service.scan_day(world.platform, world.ids["park"], DAY, at=datetime(2026, 11, 17))
    with pytest.raises(NotFound):
        service.scan_day(world.platform, 999, DAY, at=NOW)
    assert count(world, Alarm) == 0


def test_thresholds_are_the_callers(world):
    lenient = core.AlarmThresholds(power_factor=Decimal(1), load_limit=Decimal("1.2"),
                                   min_gap_intervals=9, min_stuck_intervals=21)
    # 1100 kW under 1200; 1400 kW under 1500 kVA; the gap and the stuck run are too short.
    assert scan(world, thresholds=lenient) == []


def test_capacity_bought_in_the_published_clearing_raises_the_enterprise_limit(world):
    from parkgrid.models import ClearingAllocation, ClearingRun, Order

    with world.platform.unit_of_work() as session:
        park = session.get(Park, world.ids["park"])
        e1 = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        order = Order(enterprise=e1, side="buy", delivery_day=DAY, price=Decimal("0.05"),
                      created_by_id=world.uid("ent1"), content_hash="0x" + "0" * 64)
        session.add(order)
        run = ClearingRun(park=park, delivery_day=DAY, run_number=1, status="published",
                          pricing_rule="zonal", tie_rule="pro_rata", result_hash="0x",
                          result_root="0x", result_file=b"{}", summary="{}")
        session.add(run)
        session.flush()
        session.add(ClearingAllocation(run_id=run.id, order_id=order.id, period_index=14,
                                       quantity_kva=Decimal(300), price=Decimal("0.05")))
    assert KEYS["overload"] not in scan(world)  # 1222.7 kVA within 1000 + 300 bought


# --------------------------------------------------------------------------- reading


def visible(world, username, **kwargs) -> set[str]:
    with world.platform.unit_of_work() as session:
        from parkgrid.models import User

        user = session.scalar(select(User).where(User.username == username))
        return {a.key for a in service.visible_alarms(session, user, **kwargs)}


def test_who_sees_which_alarms(world):
    scan(world)
    everything = set(KEYS.values())
    assert visible(world, "admin") == visible(world, "desk") == visible(world, "auditor") \
        == everything
    assert visible(world, "ent1") == {KEYS["overload"], KEYS["gap"]}
    assert visible(world, "ent2") == {KEYS["stuck"]}
    assert visible(world, "BUT-user") == {KEYS["overload"], KEYS["gap"]}
    assert visible(world, "SP-user") == set()
    assert visible(world, "admin", rule="metering_gap") == {KEYS["gap"]}
    with pytest.raises(ValidationFailed):
        visible(world, "admin", rule="smoke")


def test_open_alarms_are_those_whose_job_is_still_open(world):
    scan(world)
    code = alarms(world)[KEYS["gap"]].job.code
    job_service.cancel(world.platform, code, "meter replaced", actor_id=world.uid("desk"),
                       at=NOW + timedelta(minutes=5))
    assert visible(world, "admin", open_only=True) == {KEYS["overload"]}


# --------------------------------------------------------------------------- API, CLI


@pytest.fixture
def client(world):
    from parkgrid.web import create_app

    app = create_app(world.platform.settings, world.platform)
    app.config.update(TESTING=True)
    return app.test_client()


def bearer(client, username):
    response = client.post("/api/v1/tokens", json={"username": username,
                                                   "password": "password-123"})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def test_the_api_lists_alarms_by_role_and_only_staff_may_check_a_day(client, world):
    body = {"park": "P", "day": DAY.isoformat()}
    assert client.post("/api/v1/alarms/scan", json=body).status_code == 401
    for username in ("ent1", "auditor", "BUT-user"):
        response = client.post("/api/v1/alarms/scan", json=body,
                               headers=bearer(client, username))
        assert response.status_code == 403, username
    assert count(world, Alarm) == 0

    desk = bearer(client, "desk")
    response = client.post("/api/v1/alarms/scan", json=body, headers=desk)
    assert response.status_code == 200, response.json
    assert {a["key"] for a in response.json["new"]} == set(KEYS.values())
    again = client.post("/api/v1/alarms/scan", json=body, headers=desk)
    assert again.status_code == 200 and again.json["new"] == []
    assert client.post("/api/v1/alarms/scan", json={**body, "park": "NOPE"},
                       headers=desk).status_code == 404
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()  # not begun yet
    assert client.post("/api/v1/alarms/scan", json={**body, "day": future},
                       headers=desk).status_code == 422

    listed = client.get("/api/v1/alarms", headers=bearer(client, "ent1")).json
    assert {a["key"] for a in listed} == {KEYS["overload"], KEYS["gap"]}
    overload = next(a for a in listed if a["key"] == KEYS["overload"])
    assert overload["job"]["provider"] == "BUT" and overload["job"]["urgent"] is False
    assert overload["found"]["figures"]["peak_kva"] == "1222.7"
    assert "1222.7" in overload["message"] and overload["no_job_reason"] is None
    staff = client.get("/api/v1/alarms?rule=abnormal_reading", headers=desk).json
    assert [a["key"] for a in staff] == [KEYS["stuck"]]
    assert staff[0]["job"] is None and staff[0]["no_job_reason"]
    assert staff[0]["metering_point"] == "E2-M1" and staff[0]["enterprise"] == "E2"
    assert client.get("/api/v1/alarms?rule=smoke", headers=desk).status_code == 422
    assert client.get("/api/v1/alarms?open=true",
                      headers=bearer(client, "SP-user")).json == []


def test_the_alarm_routes_declare_roles_and_are_documented(client):
    app = client.application
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/alarms"):
            assert getattr(app.view_functions[rule.endpoint], "_roles", None), rule.rule
    paths = client.get("/api/openapi.json").json["paths"]
    assert {"/api/v1/alarms", "/api/v1/alarms/scan"} <= set(paths)


def test_the_command_line_checks_a_day(world, tmp_path):
    settings = world.platform.settings
    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_DATABASE_URL": settings.database_url,
           "PARKGRID_SECRET_KEY": settings.secret_key}
    runner = CliRunner()
    result = runner.invoke(main, ["alarms", "scan", "--day", DAY.isoformat()], env=env)
    assert result.exit_code == 0, result.output
    assert "4 new alarm(s)" in result.output and KEYS["gap"] in result.output
    result = runner.invoke(main, ["alarms", "scan", "--day", DAY.isoformat(), "--park", "P"],
                           env=env)
    assert result.exit_code == 0 and "0 new alarm(s)" in result.output
    result = runner.invoke(main, ["alarms", "scan", "--day", "2099-01-01"], env=env)
    assert result.exit_code != 0 and "has not begun" in result.output


def test_the_import_task_checks_each_day_the_import_brought(world):
    from parkgrid import tasks
    from parkgrid.models import MeteringImport

    tasks.configure(world.platform.settings, world.platform)
    with world.platform.unit_of_work() as session:
        import_id = session.scalar(select(MeteringImport.id))
    assert tasks.scan_import.delay(import_id).get() == 1  # the import held one local day
    assert set(alarms(world)) == set(KEYS.values())
    assert tasks.scan_import.delay(import_id).get() == 1
    assert len(alarms(world)) == len(KEYS)  # checked again: nothing new
