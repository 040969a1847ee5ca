"""An urgent repair through the real `parkgrid run`, in the browser: the enterprise raises it,
the job is offered to the demo provider's electrician, the provider takes it from the job
board to the sign-off request with a photo, and the enterprise signs it off on the canvas.

Automatic dispatch may offer the job by itself; the test then takes that offer (or hands an
offer to another company back to dispatch) instead of offering it itself.
"""

from __future__ import annotations

import re
import time
from io import BytesIO

import pytest
from PIL import Image

from .conftest import RunningPlatform
from .test_thin_path import login

pytestmark = pytest.mark.e2e
PROVIDER = "P01"  # the company of the demo login "provider"
PARK_CENTRE = ("31.300000", "120.700000")
OPEN_FOR_OFFERS = ("new", "awaiting_dispatch", "escalated")
HOLDING = ("offered", "accepted", "en_route", "on_site", "in_progress")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    platform = RunningPlatform(tmp_path_factory.mktemp("alliance-repair"), "eth-tester")
    yield platform
    platform.stop()


def photo() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (64, 48), (40, 110, 170)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def free_electrician(running, token) -> int:
    """One of the provider's electricians holding no job, made available around the clock
    with a valid low-voltage certificate."""
    status, roster = running.api("GET", f"/api/v1/alliance/providers/{PROVIDER}/electricians",
                                 token=token)
    assert status == 200, roster
    status, jobs = running.api("GET", "/api/v1/jobs", token=token)
    assert status == 200, jobs
    busy = {j["electrician"]["id"] for j in jobs if j["electrician"] and j["status"] in HOLDING}
    chosen = next(e["id"] for e in roster if e["active"] and e["id"] not in busy)
    status, body = running.api("PATCH", f"/api/v1/alliance/electricians/{chosen}", token=token,
                               body={"shift_start": "00:00", "shift_end": "00:00",
                                     "weekdays": [1, 2, 3, 4, 5, 6, 7],
                                     "skills": ["low_voltage"], "active": True})
    assert status == 200, body
    status, body = running.api("POST", f"/api/v1/alliance/electricians/{chosen}/certificates",
                               token=token, body={"type": "low_voltage", "number": "E2E-0001",
                                                  "expires": "2099-01-01"})
    assert status == 200, body
    return chosen


def offered_to_provider(running, code: str, ours: int) -> dict:
    """Wait until the job is offered to one of the provider's electricians: take an
    automatic offer to it, hand an offer to another company back, or offer it ourselves
    as the dispatch desk."""
    desk = running.token("settlement", "settlement-demo-1")
    deadline = time.monotonic() + 90
    while True:
        status, job = running.api("GET", f"/api/v1/jobs/{code}", token=desk)
        assert status == 200, job
        holder = job["electrician"]
        if job["status"] == "offered" and holder["provider"] == PROVIDER:
            return job
        if job["status"] == "offered":
            running.api("POST", f"/api/v1/jobs/{code}/decline", token=desk,
                        body={"electrician_id": holder["id"], "reason": "e2e: for P01"})
        elif job["status"] in OPEN_FOR_OFFERS:
            status, body = running.api("POST", f"/api/v1/jobs/{code}/offer", token=desk,
                                       body={"electrician_id": ours})
            assert status in (200, 409), body  # 409: dispatch offered it meanwhile
        else:
            pytest.fail(f"job {code} is {job['status']} before anyone was offered it")
        assert time.monotonic() < deadline, f"job {code} never reached {PROVIDER}: {job}"
        time.sleep(0.5)


def logout(page) -> None:
    page.click("button:has-text('退出')")
    page.wait_for_url(re.compile(r".*/login$"))


def click_and_wait(page, button: str, then: str) -> None:
    page.click(button)
    page.wait_for_selector(then)


def test_an_urgent_repair_from_request_to_signed_close(running, page):
    base = running.base_url
    provider_token = running.token("provider", "provider-demo-1")

    # The enterprise opens the repair form (urgent by default, at its site if recorded).
    login(page, base, "enterprise", "enterprise-demo-1")
    page.goto(base + "/alliance/repair")
    assert "报修" in page.inner_text("h1")
    assert page.is_checked("#urgent")
    if not page.input_value("#lat"):
        page.fill("#lat", PARK_CENTRE[0])
        page.fill("#lon", PARK_CENTRE[1])
    site = (page.input_value("#lat"), page.input_value("#lon"))

    # Meanwhile the provider's free electrician reports from right there.
    ours = free_electrician(running, provider_token)
    status, body = running.api("POST", f"/api/v1/alliance/electricians/{ours}/position",
                               token=provider_token, body={"lat": site[0], "lon": site[1]})
    assert status == 200, body

    page.fill("#title", "配电室低压柜跳闸")
    page.fill("#description", "2号柜主开关跳闸，车间停电")
    page.set_input_files("#photos", files=[{"name": "fault.jpg", "mimeType": "image/jpeg",
                                            "buffer": photo()}])
    page.click("#repair-submit")
    page.wait_for_url(re.compile(r".*/alliance/jobs/[^/]+$"))
    code = page.inner_text("#job-code").strip()
    assert page.locator("[data-clock=running] .countdown").count() == 1
    logout(page)

    offered = offered_to_provider(running, code, ours)
    assert offered["on_site_clock"]["time_left_s"] > 0

    # The provider takes it from the job board, step by step.
    login(page, base, "provider", "provider-demo-1")
    page.goto(base + "/alliance/board")
    card = f"#offered #job-{code}"
    page.wait_for_selector(card)
    countdown = page.locator(f"{card} .offer-clock .countdown")
    first = countdown.inner_text()
    page.wait_for_function(
        "([el, was]) => el.textContent !== was", arg=[countdown.element_handle(), first])
    assert "派单剩余" in countdown.inner_text()  # the offer counts down live
    click_and_wait(page, f"#accept-{code}", f"#underway #travel-{code}")
    click_and_wait(page, f"#travel-{code}", f"#check-in-{code}")
    page.fill(f"#check-in-lat-{code}", site[0])
    page.fill(f"#check-in-lon-{code}", site[1])
    click_and_wait(page, f"#check-in-{code}", f"#work-{code}")
    assert page.locator(f"#job-{code} [data-clock=met]").count() == 1
    click_and_wait(page, f"#work-{code}", f"#upload-{code}")
    page.set_input_files(f"#photo-{code}", files=[{"name": "done.jpg",
                                                   "mimeType": "image/jpeg",
                                                   "buffer": photo()}])
    click_and_wait(page, f"#upload-{code}", f"#request-sign-off-{code}")
    assert "1 张照片" in page.inner_text(f"#job-{code}")
    page.click(f"#request-sign-off-{code}")
    page.wait_for_selector(f"#job-{code} [data-status=awaiting_sign_off]")
    logout(page)

    # The enterprise signs on the canvas with the mouse.
    login(page, base, "enterprise", "enterprise-demo-1")
    page.goto(f"{base}/alliance/jobs/{code}")
    page.wait_for_selector("#sign-off-form")
    page.fill("#signer_name", "王经理")
    page.click("#sign-off-submit")  # nothing drawn yet: refused, nothing changes
    error = page.locator(".error[data-field=signature]")
    assert "请先在框内签名" in error.inner_text()
    assert page.locator("[data-status=awaiting_sign_off]").count() == 1

    pad = page.locator("#signature-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + box["height"] * 0.6)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(box["x"] + 30 + step * 25,
                        box["y"] + box["height"] * (0.6 - 0.3 * (step % 2)), steps=3)
    page.mouse.up()
    assert page.input_value("#signature").startswith("data:image/png;base64,")
    page.click("#sign-off-submit")
    page.wait_for_selector("#job-status [data-status=closed]")
    assert "已关闭" in page.inner_text("#job-status")
    assert page.inner_text("#signer").strip() == "王经理"
    assert page.locator("#on-site-clock [data-clock=met]").count() == 1
    signature = page.locator("img.signature").get_attribute("src")
    served = page.request.get(base + signature)
    assert served.status == 200 and served.headers["content-type"] == "image/png"
    assert served.body()[:8] == b"\x89PNG\r\n\x1a\n"

    desk = running.token("settlement", "settlement-demo-1")
    status, job = running.api("GET", f"/api/v1/jobs/{code}", token=desk)
    assert status == 200 and job["status"] == "closed", job
    assert [e["kind"] for e in job["events"]][-7:] == [
        "accept", "start_travel", "check_in", "start_work", "attach_photo",
        "request_sign_off", "sign_off"]
    assert sorted(a["kind"] for a in job["attachments"]) == ["photo", "photo", "signature"]
