"""A whole market day through the real `parkgrid run` on anvil, in the browser.

Two enterprises behind the derated transformer bid against a cheap seller behind another;
the gate closes, the platform clears the day by itself, settlement staff review the
congested result and publish it on chain, and each enterprise sees what it traded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .conftest import ROOT, RunningPlatform
from .test_thin_path import login

pytestmark = pytest.mark.e2e
PARK_TZ = ZoneInfo("Asia/Shanghai")
PERIOD = "10"
GATE_IN_S = 50  # time to place the orders before the gate closes


@pytest.fixture(scope="module")
def market_day(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("market-day")
    running = RunningPlatform(data_dir, "anvil")
    running.data_dir = data_dir
    yield running
    running.stop()


def set_gate(running, at: datetime) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKGRID_")}
    env["PARKGRID_DATA_DIR"] = str(running.data_dir)
    done = subprocess.run([sys.executable, "-m", "parkgrid.cli", "market", "set-gate",
                           at.strftime("%H:%M:%S")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def place_in_browser(page, running, username, password, side, qty, price):
    login(page, running.base_url, username, password)
    page.goto(f"{running.base_url}/market/orders/new?side={side}")
    page.fill("#first_hour", PERIOD)
    page.fill("#last_hour", PERIOD)
    page.fill("#quantity_kva", qty)
    page.fill("#price", price)
    page.click("#order-submit")
    page.wait_for_url(re.compile(r".*/market/orders/[0-9a-f-]{36}$"))
    page.wait_for_function(
        "document.querySelector('#tx-hash').innerText.startsWith('0x')", timeout=30_000)
    page.click("button:has-text('退出')")


def test_a_congested_day_is_cleared_published_and_seen_by_both_sides(market_day, page):
    running = market_day
    now = datetime.now(PARK_TZ)
    if (now + timedelta(seconds=GATE_IN_S + 60)).date() != now.date():
        time.sleep(GATE_IN_S + 90)  # the gate must fall on today's date: wait past midnight
        now = datetime.now(PARK_TZ)
    gate = (now + timedelta(seconds=GATE_IN_S)).replace(microsecond=0)
    set_gate(running, gate)

    place_in_browser(page, running, "enterprise", "enterprise-demo-1", "sell", "300", "0.03")
    place_in_browser(page, running, "enterprise2", "enterprise-demo-2", "buy", "150", "0.06")
    token = running.token("enterprise3", "enterprise-demo-3")
    status, calendar = running.api("GET", "/api/v1/orders/calendar", token=token)
    status, body = running.api("POST", "/api/v1/orders", token=token, body={
        "side": "buy", "delivery_day": calendar["open_delivery_day"], "price": "0.05",
        "periods": [{"period": int(PERIOD), "quantity_kva": "150"}]})
    assert status == 201, body

    # The gate closes; the platform's gate watch clears the day without anyone asking.
    time.sleep(max(0.0, (gate - datetime.now(PARK_TZ)).total_seconds()) + 1)
    login(page, running.base_url, "settlement", "settlement-demo-1")
    deadline = time.monotonic() + 90
    while True:
        page.goto(running.base_url + "/clearing/")
        link = page.locator(f"a:has-text('{calendar['open_delivery_day']}')")
        if link.count():
            break
        assert time.monotonic() < deadline, "the day was not cleared after its gate"
        time.sleep(2)
    link.first.click()
    assert page.inner_text("#accepted-orders").strip() == "3"
    assert page.inner_text("#congestion-rent").strip() == "3.97"  # (0.05 − 0.03) × 198.5
    assert "阻塞" in page.content() and page.locator("svg").count() >= 2

    page.click("#publish")
    page.wait_for_selector("#publish-tx")
    assert re.match(r"^0x[0-9a-f]{64}$", page.inner_text("#publish-tx").strip())
    page.click("button:has-text('退出')")

    expected = {("enterprise", "enterprise-demo-1"): ("198.5", "0.0300"),
                ("enterprise2", "enterprise-demo-2"): ("150.0", "0.0500")}
    for (username, password), (qty, price) in expected.items():
        login(page, running.base_url, username, password)
        page.goto(running.base_url + "/market/results")
        assert page.inner_text(".result .accepted").strip() == qty
        assert page.inner_text(".result .price").strip() == price
        page.click("button:has-text('退出')")

    # The auditor re-derives the published day from the chain: clean, with its counts.
    login(page, running.base_url, "auditor", "auditor-demo-1")
    page.click("#nav-audit-days")
    page.fill("#day", calendar["open_delivery_day"])
    page.click("#audit-run")
    page.wait_for_selector("#audit-verdict", timeout=60_000)
    assert "全部核对通过" in page.inner_text("#audit-verdict")
    counts = page.inner_text("#audit-counts")
    assert "orders_on_chain\t3" in counts and "clearings_identical\t1" in counts
    assert page.locator("#audit-orders tbody tr").count() == 3
    with page.expect_download() as download:
        page.click("a:has-text('已签名报告（PDF）')")
    assert download.value.suggested_filename.endswith(".pdf")
