"""The alliance staff view (members, expiries, SLA, escalations, map) and its escalate /
no-show / offer actions, and the energy-cloud butler's provider cockpit, through the web app
on a small alliance world: who may open what, both languages, and refused input that
changes nothing."""

from __future__ import annotations

import re
from datetime import time, timedelta

import pytest
from sqlalchemy import select

from parkgrid.models import Enterprise, Job, JobExclusion, OmContract, OmContractItem, Provider
from parkgrid.services import calendar, jobs
from parkgrid.web import create_app

from .alliance_world import NOW, SITE, TODAY, add_provider, build_world, make_platform

MIN = timedelta(minutes=1)
PAGE_NOW = NOW + 10 * MIN
BUTLER = "energy_cloud_butler"


@pytest.fixture
def world(tmp_path, monkeypatch):
    platform = make_platform(tmp_path)
    world = build_world(platform)
    world.ids.update({f"s{n}": i for n, i in enumerate(add_provider(world, "SE").values())})
    world.ids.update({f"b{n}": i for n, i in
                      enumerate(add_provider(world, "BT", alliance=BUTLER).values())})
    monkeypatch.setattr(calendar, "utcnow", lambda: PAGE_NOW)
    yield world
    platform.engine.dispose()


@pytest.fixture
def app(world):
    app = create_app(world.platform.settings, world.platform)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def login(client, username):
    response = client.post("/login", data={"username": username, "password": "password-123"})
    assert response.status_code == 302, response.get_data(as_text=True)


def repair(world, at=NOW, *, urgent=True, provider=None) -> str:
    request = jobs.RepairRequest(lat=SITE[0], lon=SITE[1], title="低压柜跳闸", urgent=urgent,
                                 provider_code=provider)
    return jobs.request_repair(world.platform, request, actor_id=world.uid("ent1"), at=at)


def status(world, code) -> str:
    with world.platform.unit_of_work() as session:
        return session.scalar(select(Job.status).where(Job.code == code))


def versions(world) -> dict[str, int]:
    with world.platform.unit_of_work() as session:
        return dict(session.execute(select(Job.code, Job.version)).all())


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash">(.*?)</p>', page)


def text(response) -> str:
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- who may see


@pytest.mark.parametrize("username", ["admin", "desk", "auditor"])
def test_staff_roles_see_the_staff_view(client, world, username):
    repair(world)
    login(client, username)
    page = text(client.get("/alliance/staff"))
    assert "联盟：员工视图" in page
    assert 'data-member="SE"' in page and 'data-member="BT"' in page
    assert 'class="alliance-map"' in page
    assert 'id="nav-alliance-staff"' in page
    acts = 'id="escalate-' in page
    assert acts is (username != "auditor")  # auditors only read


@pytest.mark.parametrize("username", ["ent1", "SE-user", "BT-user"])
def test_other_roles_are_refused_the_staff_view(client, username):
    login(client, username)
    assert client.get("/alliance/staff").status_code == 403
    assert client.post("/alliance/staff/jobs/X/escalate", data={"reason": "x"}).status_code == 403


def test_the_staff_view_in_english(client, world):
    repair(world)
    login(client, "admin")
    client.get("/lang/en")
    page = text(client.get("/alliance/staff"))
    assert "Alliances: staff view" in page and "Shared electricians" in page
    assert "Members: Energy-cloud butler" in page


def test_figures_on_the_page(client, world):
    on_time = repair(world, NOW - 60 * MIN)
    jobs.offer(world.platform, on_time, world.uid("s0"), actor_id=None, at=NOW - 59 * MIN)
    jobs.accept(world.platform, on_time, actor_id=None, at=NOW - 58 * MIN)
    jobs.check_in(world.platform, on_time, actor_id=None, at=NOW - 45 * MIN)
    late = repair(world, NOW - 50 * MIN)  # nobody came; its deadline has passed
    withdrawn = repair(world, NOW - 40 * MIN)
    jobs.cancel(world.platform, withdrawn, "误报", actor_id=None, at=NOW - 35 * MIN)
    with world.platform.unit_of_work() as session:
        few = session.scalar(select(Provider).where(Provider.code == "SE"))
        few.electricians[0].certificates[0].expires = TODAY + timedelta(days=3)
    login(client, "desk")
    page = text(client.get("/alliance/staff"))
    row = page.split('data-sla="shared_electricians-7"')[1].split("</tr>")[0]
    assert 'data-hit-rate="0.5000"' in row and "50.0%" in row
    assert 'data-on-time="1"' in row and 'data-late="1"' in row
    assert 'data-withdrawn="1"' in row and 'data-open="0"' in row
    expiries = page.split('id="expiries"')[1]
    assert 'data-expiry="certificate:C-SE-0"' in expiries and "SE-00" in expiries
    assert f'href="/alliance/jobs/{late}"' in page


def test_the_map_has_one_marker_per_open_job_and_per_placed_electrician(client, world):
    urgent, planned = repair(world), repair(world, NOW + MIN, urgent=False)
    closed = repair(world, NOW + 2 * MIN)
    jobs.cancel(world.platform, closed, "误报", actor_id=None, at=NOW + 3 * MIN)
    jobs.offer(world.platform, urgent, world.uid("s0"), actor_id=None, at=NOW + 4 * MIN)
    add_provider(world, "OFF", valid=2, shift=None)
    login(client, "admin")
    page = text(client.get("/alliance/staff"))
    svg = page.split('<svg viewBox="0 0 640 430" class="alliance-map"')[1].split("</svg>")[0]
    # Planned jobs first, so that an urgent job at the same place is drawn on top.
    assert re.findall(r'class="job-marker[^"]*" data-job="([^"]+)"', svg) == [planned, urgent]
    assert re.findall(r'class="job-marker urgent" data-job="([^"]+)"', svg) == [urgent]
    dots = re.findall(r'class="electrician-dot state-(\w+)" data-electrician="(\d+)"', svg)
    assert len(dots) == 22  # every active electrician of a member has a home base
    states = {int(ref): state for state, ref in dots}
    assert states[world.uid("s0")] == "on_job" and states[world.uid("s1")] == "free"
    assert list(states.values()).count("off_shift") == 2
    assert svg.count("<title>") == 24  # a tooltip on every mark
    assert "空闲" in svg and "紧急工单" in svg  # the legend, translated


# --------------------------------------------------------------------------- actions


def test_escalate_a_waiting_job(client, world):
    code = repair(world)
    login(client, "desk")
    response = client.post(f"/alliance/staff/jobs/{code}/escalate",
                           data={"reason": "附近无人可及时到场"})
    assert response.status_code == 302 and response.headers["Location"].endswith("#desk")
    page = text(client.get("/alliance/staff"))
    assert status(world, code) == "escalated"
    assert flashes(page) == [f"工单 {code} 已升级至调度台。"]
    escalated = page.split('id="escalations"')[1].split("</section>")[0]
    assert f'data-escalated="{code}"' in escalated and "附近无人可及时到场" in escalated
    assert f'href="/alliance/jobs/{code}"' in escalated


@pytest.mark.parametrize(("target", "form", "message"), [
    ("unknown", {"reason": "x"}, "没有该工单。"),
    ("job", {"reason": "  "}, "请说明原因。"),
    ("held", {"reason": "x"}, "不能执行此操作"),
])
def test_escalate_refusals_are_translated_and_change_nothing(client, world, target, form,
                                                             message):
    code = repair(world)
    held = repair(world, NOW + MIN)
    jobs.offer(world.platform, held, world.uid("s0"), actor_id=None, at=NOW + 2 * MIN)
    before = versions(world)
    login(client, "desk")
    path = {"unknown": "J000000-NOPE", "job": code, "held": held}[target]
    client.post(f"/alliance/staff/jobs/{path}/escalate", data=form)
    page = text(client.get("/alliance/staff"))
    assert any(message in f for f in flashes(page)), flashes(page)
    assert versions(world) == before


def test_no_show_sends_the_job_back_and_excludes_the_electrician(client, world):
    code = repair(world)
    jobs.offer(world.platform, code, world.uid("s0"), actor_id=None, at=NOW + MIN)
    jobs.accept(world.platform, code, actor_id=None, at=NOW + 2 * MIN)
    login(client, "admin")
    client.post(f"/alliance/staff/jobs/{code}/no-show")
    page = text(client.get("/alliance/staff"))
    assert status(world, code) == "awaiting_dispatch"
    assert any(code in f and "未到场" in f for f in flashes(page)), flashes(page)
    with world.platform.unit_of_work() as session:
        assert session.scalars(select(JobExclusion.electrician_id)).all() == [world.uid("s0")]


def test_no_show_of_a_job_nobody_holds_is_refused(client, world):
    code = repair(world)
    before = versions(world)
    login(client, "desk")
    client.post(f"/alliance/staff/jobs/{code}/no-show")
    page = text(client.get("/alliance/staff"))
    assert any("不能执行此操作" in f for f in flashes(page)), flashes(page)
    assert versions(world) == before


def test_offer_lists_who_may_be_offered_and_offers(client, world):
    code = repair(world)
    jobs.escalate(world.platform, code, "无人接单", actor_id=None, at=NOW + MIN)
    login(client, "desk")
    page = text(client.get(f"/alliance/staff/jobs/{code}/offer"))
    offered = re.findall(r'data-candidate="(\d+)"', page)
    # The shared pool: the ten SE electricians, nearest first; none of the butler's.
    assert len(offered) == 10 and int(offered[0]) == world.uid("s0")
    assert str(world.uid("b0")) not in offered
    response = client.post(f"/alliance/staff/jobs/{code}/offer",
                           data={"electrician_id": str(world.uid("s1"))})
    assert response.status_code == 302
    assert status(world, code) == "offered"
    with world.platform.unit_of_work() as session:
        assert session.scalar(select(Job.electrician_id).where(Job.code == code)) == \
            world.uid("s1")
    page = text(client.get("/alliance/staff"))
    assert any(f"工单 {code} 已派给 SE-01" in f for f in flashes(page)), flashes(page)


@pytest.mark.parametrize(("electrician", "message"), [
    ("abc", "请从列表中选择电工。"),
    ("", "请从列表中选择电工。"),
    ("999999", "没有该电工。"),
    ("b0", "不能向该电工派发此工单：该电工所属公司不是此工单所属联盟的准入成员"),
])
def test_offer_refusals_are_translated_and_change_nothing(client, world, electrician,
                                                          message):
    code = repair(world)
    before = versions(world)
    login(client, "desk")
    value = str(world.uid(electrician)) if electrician == "b0" else electrician
    response = client.post(f"/alliance/staff/jobs/{code}/offer",
                           data={"electrician_id": value})
    assert response.headers["Location"].endswith(f"/alliance/staff/jobs/{code}/offer")
    page = text(client.get(response.headers["Location"]))
    assert message in flashes(page), flashes(page)
    assert versions(world) == before


def test_offer_of_an_unknown_job(client, world):
    login(client, "desk")
    assert client.get("/alliance/staff/jobs/NOPE/offer").status_code == 404
    response = client.post("/alliance/staff/jobs/NOPE/offer", data={"electrician_id": "1"})
    assert response.headers["Location"].endswith("/alliance/staff#desk")
    assert "没有该工单。" in flashes(text(client.get("/alliance/staff")))


def test_auditors_may_not_act(client, world):
    code = repair(world)
    before = versions(world)
    login(client, "auditor")
    assert client.post(f"/alliance/staff/jobs/{code}/escalate",
                       data={"reason": "x"}).status_code == 403
    assert client.post(f"/alliance/staff/jobs/{code}/no-show").status_code == 403
    assert client.get(f"/alliance/staff/jobs/{code}/offer").status_code == 403
    assert client.post(f"/alliance/staff/jobs/{code}/offer",
                       data={"electrician_id": str(world.uid("s0"))}).status_code == 403
    assert versions(world) == before


def test_actions_need_the_form_token(app, client, world):
    code = repair(world)
    login(client, "desk")
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(f"/alliance/staff/jobs/{code}/escalate", data={"reason": "x"})
    assert response.status_code == 400
    assert status(world, code) == "new"


# --------------------------------------------------------------------------- cockpit


def butler_world(world):
    """An O&M contract of BT with a patrol due tomorrow and an alarm on BT's repair job."""
    alarm_job = repair(world, NOW - 60 * MIN, provider="BT")
    with world.platform.unit_of_work() as session:
        from parkgrid.models import Alarm

        bt = session.scalar(select(Provider).where(Provider.code == "BT"))
        e1 = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        contract = OmContract(code="OM-7", provider=bt, enterprise=e1, frequency="weekly",
                              job_kind="inspection", window_start=time(9),
                              window_end=time(17), starts_on=TODAY)
        item = OmContractItem(name="2号主变", equipment_kind="transformer", lat=SITE[0],
                              lon=SITE[1])
        contract.items.append(item)
        session.add(contract)
        session.flush()
        patrol, _ = jobs.create_job(session, enterprise=e1, kind="inspection",
                                    title="巡检 2号主变", lat=SITE[0], lon=SITE[1],
                                    urgent=False, at=NOW, provider=bt)
        patrol.contract_item_id, patrol.due_on = item.id, TODAY + timedelta(days=1)
        job_id = session.scalar(select(Job.id).where(Job.code == alarm_job))
        session.add(Alarm(key="lr-1", park_id=e1.park_id, rule="load_rate", enterprise=e1,
                          starts_at=NOW - 2 * 60 * MIN, ends_at=NOW - 60 * MIN,
                          details='{"load_rate": "0.95"}', job_id=job_id))
        bt.electricians[0].certificates[0].expires = TODAY + timedelta(days=9)
        return alarm_job, patrol.code


def test_the_butler_cockpit(client, world):
    alarm_job, patrol = butler_world(world)
    login(client, "BT-user")
    home = text(client.get("/"))
    assert 'id="nav-cockpit"' in home
    page = text(client.get("/alliance/cockpit"))
    assert "运维驾驶舱" in page
    assert 'data-contract="OM-7"' in page and "2号主变" in page
    assert f'data-upcoming="{patrol}"' in page
    alarms = page.split('id="alarms"')[1].split("</section>")[0]
    assert "负载率越限" in alarms and f'href="/alliance/jobs/{alarm_job}"' in alarms
    assert "load_rate=0.95" in alarms
    sla = page.split('data-sla="provider"')[1].split("</tr>")[0]
    assert 'data-late="1"' in sla  # its repair: nobody came in 30 minutes
    roster = page.split('id="roster"')[1]
    assert "C-BT-0" in roster and "剩余 9 天" in roster
    assert page.count('class="job-marker') == 2 and page.count('class="electrician-dot') == 10

    client.get("/lang/en")
    page = text(client.get("/alliance/cockpit"))
    assert "O&M cockpit" in page and "Load rate over limit" in page


def test_a_shared_electricians_provider_is_told_the_cockpit_is_not_for_it(client, world):
    login(client, "SE-user")
    assert 'id="nav-cockpit"' not in text(client.get("/"))
    response = client.get("/alliance/cockpit")
    assert response.status_code == 200
    page = text(response)
    assert 'id="not-butler"' in page and "能源云管家" in page and "共享电工" in page


@pytest.mark.parametrize("username", ["admin", "desk", "auditor", "ent1"])
def test_only_providers_open_the_cockpit(client, username):
    login(client, username)
    assert client.get("/alliance/cockpit").status_code == 403
