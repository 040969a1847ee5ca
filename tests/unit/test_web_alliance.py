"""The alliance pages on a small SQLite world: the provider's job board, an enterprise's repair
form, requests list and job page; a job's whole life through the pages, refused input shown
in Chinese with nothing changed, decline, cancel and a sign-off without a drawing."""

from __future__ import annotations

import base64
import re
import shutil
from decimal import Decimal
from io import BytesIO

import pytest
from sqlalchemy import func, select

from parkgrid.models import Enterprise, Job, JobEvent, JobExclusion
from parkgrid.services import jobs as service
from parkgrid.web import create_app

from .alliance_world import (
    SITE,
    World,
    add_provider,
    build_world,
    jpeg,
    make_platform,
    png,
)

PASSWORD = "password-123"
DATABASE = "a.sqlite3"  # the file make_platform opens in its folder


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The world built once (hashing its passwords is slow); each test gets a copy."""
    folder = tmp_path_factory.mktemp("alliance-pages")
    platform = make_platform(folder)
    world = build_world(platform)
    world.ids.update({f"e{n}": i for n, i in enumerate(add_provider(world, "SP").values())})
    add_provider(world, "RIVAL", home_offset=Decimal("0.2"))
    platform.engine.dispose()
    return folder / DATABASE, dict(world.ids)


@pytest.fixture
def world(template, tmp_path):
    source, ids = template
    shutil.copy(source, tmp_path / DATABASE)
    platform = make_platform(tmp_path)  # on the copy; its files folder starts empty
    yield World(platform, dict(ids))
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
    client.post("/logout")
    response = client.post("/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


def text(response) -> str:
    return response.get_data(as_text=True)


def job(world, code) -> Job:
    with world.platform.unit_of_work() as session:
        found = session.scalar(select(Job).where(Job.code == code))
        found.events, found.exclusions, found.attachments  # noqa: B018  (load them)
        session.expunge(found)
        return found


def job_count(world) -> int:
    with world.platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Job))


def event_kinds(world, code) -> list[str]:
    return [e.kind for e in job(world, code).events]


REPAIR = {"title": "配电室跳闸", "description": "2号低压柜", "urgent": "y",
          "lat": "31.300100", "lon": "120.700200", "skills": "low_voltage"}


def raise_on_page(client, photos=(), **changes) -> str:
    response = client.post("/alliance/repair", content_type="multipart/form-data",
                           data={**REPAIR, **changes, "photos": list(photos)})
    assert response.status_code == 302, text(response)
    match = re.search(r"/alliance/jobs/([^/?#]+)$", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def raise_by_service(world, user="ent1") -> str:
    request = service.RepairRequest(lat=SITE[0], lon=SITE[1], title="低压柜跳闸")
    return service.request_repair(world.platform, request, actor_id=world.uid(user))


def offered_to_sp(world, code) -> int:
    """The dispatch desk (the platform itself) offers the job to SP's first electrician,
    unless automatic dispatch offered it already; returns who holds the offer."""
    current = job(world, code)
    if current.status != "offered":
        service.offer(world.platform, code, world.ids["e0"], actor_id=None)
        current = job(world, code)
    assert current.status == "offered"
    return current.electrician_id


def take_to_sign_off(world, code) -> None:
    offered_to_sp(world, code)
    provider = world.uid("SP-user")
    for step in (service.accept, service.start_travel, service.check_in, service.start_work):
        step(world.platform, code, actor_id=provider)
    service.attach_photo(world.platform, code, jpeg(), actor_id=provider)
    service.request_sign_off(world.platform, code, actor_id=provider)
    assert job(world, code).status == "awaiting_sign_off"


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize(("path", "username", "status"), [
    ("/alliance/board", "SP-user", 200),
    ("/alliance/board", "ent1", 403),
    ("/alliance/board", "desk", 403),
    ("/alliance/repair", "ent1", 200),
    ("/alliance/repair", "SP-user", 403),
    ("/alliance/repair", "auditor", 403),
    ("/alliance/requests", "ent1", 200),
    ("/alliance/requests", "SP-user", 403),
    ("/alliance/requests", "admin", 403),
    ("/alliance/jobs/{code}", "ent1", 200),
    ("/alliance/jobs/{code}", "desk", 200),
    ("/alliance/jobs/{code}", "admin", 200),
    ("/alliance/jobs/{code}", "auditor", 200),
    ("/alliance/jobs/{code}", "SP-user", 200),  # its electrician holds the offer
    ("/alliance/jobs/{code}", "ent2", 404),
    ("/alliance/jobs/{code}", "RIVAL-user", 404),
])
def test_each_page_opens_for_its_roles_and_no_one_else(world, client, path, username, status):
    code = raise_by_service(world)
    offered_to_sp(world, code)
    login(client, username)
    response = client.get(path.format(code=code))
    assert response.status_code == status, text(response)


def test_anonymous_visitors_are_sent_to_the_login(client):
    for path in ("/alliance/board", "/alliance/repair", "/alliance/requests",
                 "/alliance/jobs/J000000-XXXXXX"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_each_role_sees_its_alliance_links(client):
    login(client, "ent1")
    page = text(client.get("/"))
    assert 'id="nav-repair"' in page and 'id="nav-requests"' in page
    assert 'id="nav-board"' not in page
    login(client, "SP-user")
    page = text(client.get("/"))
    assert 'id="nav-board"' in page and 'id="nav-repair"' not in page
    login(client, "desk")
    page = text(client.get("/"))
    assert "nav-board" not in page and "nav-repair" not in page


def test_the_repair_form_starts_at_the_enterprises_site(world, client):
    login(client, "ent1")
    page = text(client.get("/alliance/repair"))
    assert 'name="lat"' in page and 'value="31.3' not in page
    assert re.search(r'<input[^>]*checked[^>]*name="urgent"|<input[^>]*name="urgent"[^>]*checked',
                     page), "urgent is on by default"
    with world.platform.unit_of_work() as session:
        enterprise = session.scalar(select(Enterprise).where(Enterprise.code == "E1"))
        enterprise.site_lat, enterprise.site_lon = Decimal("31.312345"), Decimal("120.654321")
    page = text(client.get("/alliance/repair"))
    assert 'value="31.312345"' in page and 'value="120.654321"' in page
    for skill in ("低压电工作业", "高压电工作业", "防爆电气作业", "电气试验作业"):
        assert skill in page


# --------------------------------------------------------------------------- the whole life


def test_a_job_goes_from_request_to_signed_close_through_the_pages(world, client):
    login(client, "ent1")
    code = raise_on_page(client, photos=[(BytesIO(jpeg()), "crack.jpg")])
    page = text(client.get(f"/alliance/jobs/{code}"))
    assert 'data-status="new"' in page and "data-countdown" in page  # the clock runs
    assert len(job(world, code).attachments) == 1
    listed = text(client.get("/alliance/requests"))
    assert code in listed and 'data-status="new"' in listed

    electrician = offered_to_sp(world, code)
    login(client, "SP-user")
    board = text(client.get("/alliance/board"))
    offers = board.split('id="underway"')[0]
    assert f'id="job-{code}"' in offers and f'id="accept-{code}"' in offers
    seconds = int(re.search(r'data-seconds="(-?\d+)"', offers).group(1))
    assert 0 < seconds <= 5 * 60
    assert "到期时间" in offers  # the static expiry time, right without the script

    def step(path, expected, **data):
        response = client.post(f"/alliance/jobs/{code}/{path}", data={"back": "board", **data},
                               content_type="multipart/form-data")
        assert response.status_code == 302 and "/alliance/board" in response.headers["Location"]
        assert job(world, code).status == expected, (path, text(client.get("/alliance/board")))

    step("accept", "accepted")
    underway = text(client.get("/alliance/board")).split('id="underway"')[1]
    assert f'id="travel-{code}"' in underway and "已接单" in underway
    step("travel", "en_route")
    step("check-in", "on_site", lat="31.300300", lon="120.700400")
    step("work", "in_progress")
    step("photos", "in_progress", photo=(BytesIO(png()), "done.png"))
    assert job(world, code).photos == 1
    step("sign-off-request", "awaiting_sign_off")
    board = text(client.get("/alliance/board"))
    assert "等待客户签字确认" in board

    login(client, "ent1")
    page = text(client.get(f"/alliance/jobs/{code}"))
    assert 'id="sign-off-form"' in page and "<canvas" in page
    assert "alliance-signature.js" in page
    assert "按时到场" in page  # the clock stopped at check-in, in time
    drawn = data_url(png(color=(0, 0, 0)))
    signed = client.post(f"/alliance/jobs/{code}/sign-off",
                         data={"signer_name": "王经理", "signature": drawn})
    assert signed.status_code == 302, text(signed)
    done = job(world, code)
    assert done.status == "closed" and done.signer_name == "王经理"
    assert done.electrician_id == electrician
    assert event_kinds(world, code) == [
        "created", "offer", "accept", "start_travel", "check_in", "start_work",
        "attach_photo", "request_sign_off", "sign_off"]

    page = text(client.get(f"/alliance/jobs/{code}"))
    assert 'data-status="closed"' in page and 'data-clock="met"' in page
    assert 'id="sign-off-form"' not in page and 'id="cancel-form"' not in page
    timeline = page.split('id="timeline"')[1]
    names = ["已提交报修", "已派单给电工", "已接单", "已出发", "已到场签到", "开始作业",
             "已上传照片", "已请求签字确认", "已签字确认"]
    assert all(name in timeline for name in names), timeline
    positions = [timeline.index(name) for name in names]
    assert positions == sorted(positions)
    assert "王经理" in page and "电工0" in page and "SP电力" in page

    ids = [int(i) for i in re.findall(r'data-attachment="(\d+)"', page)]
    assert len(set(ids)) == 3  # the request's photo, the work photo, the signature
    for attachment in set(ids):
        served = client.get(f"/alliance/jobs/{code}/files/{attachment}")
        assert served.status_code == 200 and served.mimetype.startswith("image/")
    login(client, "ent2")
    assert client.get(f"/alliance/jobs/{code}/files/{ids[0]}").status_code == 404

    login(client, "SP-user")
    closed = text(client.get("/alliance/board")).split('id="closed"')[1]
    assert code in closed
    client.get("/lang/en")
    page = text(client.get(f"/alliance/jobs/{code}"))
    assert "Closed" in page and "Signed off" in page and "On site in time" in page


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("changes", "photos", "field", "message"), [
    ({"lat": "91"}, (), "lat", "请填写 -90 至 90 之间的度数。"),
    ({"lon": "east"}, (), "lon", "请填写 -180 至 180 之间的度数。"),
    ({"title": ""}, (), "title", "请简要说明故障"),
    ({}, ((b"plain text, not a photo", "photo.jpg"),), "photos", "该文件不是可读取的图片"),
    ({}, ((b"x" * 200_001, "huge.jpg"),), "photos", "文件超过 200000 字节"),
])
def test_bad_repair_input_is_shown_in_chinese_and_stores_nothing(world, client, changes,
                                                                 photos, field, message):
    login(client, "ent1")
    before = (job_count(world), len(world.platform.storage.files()))
    response = client.post("/alliance/repair", content_type="multipart/form-data", data={
        **REPAIR, **changes, "photos": [(BytesIO(data), name) for data, name in photos]})
    assert response.status_code == 422
    errors = re.findall(rf'<span class="error" data-field="{field}">([^<]+)</span>',
                        text(response))
    assert errors and message in errors[0], text(response)
    assert (job_count(world), len(world.platform.storage.files())) == before
    assert "配电室跳闸" in text(response) or field == "title"  # the typed input is kept


def test_a_provider_declines_an_offer_with_a_reason(world, client):
    code = raise_by_service(world)
    electrician = offered_to_sp(world, code)
    login(client, "SP-user")
    response = client.post(f"/alliance/jobs/{code}/decline",
                           data={"back": "board", "reason": "电工在另一现场"})
    assert response.status_code == 302
    assert "您已拒绝工单" in text(client.get("/alliance/board"))
    with world.platform.unit_of_work() as session:
        excluded = session.scalars(select(JobExclusion.electrician_id)
                                   .join(Job).where(Job.code == code)).all()
        last = session.scalars(select(JobEvent).join(Job).where(Job.code == code)
                               .order_by(JobEvent.seq.desc())).first()
        assert excluded == [electrician] and last.kind == "decline"
        assert "电工在另一现场" in last.data


def test_a_refused_step_is_explained_and_changes_nothing(world, client):
    code = raise_by_service(world)
    offered_to_sp(world, code)
    login(client, "SP-user")
    client.post(f"/alliance/jobs/{code}/work", data={"back": "board"})
    board = text(client.get("/alliance/board"))
    assert "工单处于 已派单 状态时不能执行此操作。" in board
    assert job(world, code).status == "offered"

    login(client, "RIVAL-user")
    client.post(f"/alliance/jobs/{code}/accept", data={"back": "board"})
    assert "只有该工单电工所属的公司可以执行此操作。" in text(client.get("/alliance/board"))
    assert job(world, code).status == "offered"

    login(client, "ent1")
    assert client.post(f"/alliance/jobs/{code}/accept").status_code == 403
    assert job(world, code).status == "offered"


def test_the_enterprise_cancels_with_a_reason(world, client):
    code = raise_by_service(world)
    login(client, "ent1")
    refused = client.post(f"/alliance/jobs/{code}/cancel", data={"reason": ""})
    assert refused.status_code == 422 and "请填写理由。" in text(refused)
    assert job(world, code).status == "new"

    login(client, "ent2")
    assert client.post(f"/alliance/jobs/{code}/cancel",
                       data={"reason": "不是我们的"}).status_code == 404
    login(client, "ent1")
    done = client.post(f"/alliance/jobs/{code}/cancel", data={"reason": "故障已自行排除"})
    assert done.status_code == 302
    cancelled = job(world, code)
    assert cancelled.status == "cancelled" and cancelled.last_reason == "故障已自行排除"
    page = text(client.get(f"/alliance/jobs/{code}"))
    assert "已取消" in page and "故障已自行排除" in page and 'id="cancel-form"' not in page
    listed = text(client.get("/alliance/requests"))
    assert 'data-status="cancelled"' in listed


def test_a_sign_off_without_a_drawing_is_refused(world, client):
    code = raise_by_service(world)
    take_to_sign_off(world, code)
    login(client, "ent1")
    for signature, message in [
            ("", "请先在框内签名"),
            ("data:image/png;base64,@@not-base64@@", "无法读取签名"),
            (data_url(jpeg()), "只接受 PNG 格式的图片")]:
        response = client.post(f"/alliance/jobs/{code}/sign-off",
                               data={"signer_name": "王经理", "signature": signature})
        assert response.status_code == 422
        errors = re.findall(r'<span class="error" data-field="signature">([^<]+)</span>',
                            text(response))
        assert errors and message in errors[0], text(response)
        assert 'value="王经理"' in text(response)  # what was typed stays
        current = job(world, code)
        assert current.status == "awaiting_sign_off" and current.signer_name is None
    assert [a.kind for a in job(world, code).attachments] == ["photo"]

    login(client, "SP-user")
    assert client.post(f"/alliance/jobs/{code}/sign-off",
                       data={"signature": data_url(png())}).status_code == 403
    assert job(world, code).status == "awaiting_sign_off"
