"""A settled day through the real `parkgrid run` on anvil, in the browser: settlement staff
import yesterday's metering file and settle the day; an enterprise opens its statement,
downloads it as CSV and PDF, and its lines add up to the total on the page."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .conftest import ROOT, RunningPlatform
from .test_thin_path import login

pytestmark = pytest.mark.e2e
PARK_TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("settlement-day")
    running = RunningPlatform(data_dir, "anvil")
    running.data_dir = data_dir
    yield running
    running.stop()


def demo_readings(running, day: str, out) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKGRID_")}
    env["PARKGRID_DATA_DIR"] = str(running.data_dir)
    done = subprocess.run([sys.executable, "-m", "parkgrid.cli", "demo", "readings", day,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_staff_import_and_settle_a_day_and_an_enterprise_downloads_its_statement(
        settled, page, tmp_path):
    running = settled
    day = (datetime.now(PARK_TZ) - timedelta(days=1)).date().isoformat()
    readings = tmp_path / "readings.csv"
    demo_readings(running, day, readings)
    broken = tmp_path / "broken.csv"
    broken.write_text("point,start,kw\nMP-X,2026-10-06T00:00:00+08:00,abc\n")

    login(page, running.base_url, "settlement", "settlement-demo-1")
    page.goto(running.base_url + "/settlement/")
    page.set_input_files("#file", str(broken))
    page.click("#upload")
    page.wait_for_selector("#refusal")
    assert "line 2" in page.inner_text("#refusal")  # refused whole, with its line

    page.goto(running.base_url + "/settlement/")
    page.set_input_files("#file", str(readings))
    page.click("#upload")
    page.wait_for_selector("#import-status")
    assert int(page.inner_text("#point-days")) > 0

    page.select_option("#kind", "initial")
    page.fill("#day", day)
    page.click("#run")
    page.wait_for_url(re.compile(r".*/settlement/runs/\d+$"))
    page.wait_for_selector("#run-status[data-status='published']", timeout=60_000)
    assert re.match(r"^0x[0-9a-f]{64}$", page.inner_text("#publish-tx").strip())
    assert page.inner_text("#balance").strip() in ("0.00", "0")  # the run is zero-sum
    root = page.inner_text("#statements-root").strip()
    page.click("button:has-text('退出')")

    login(page, running.base_url, "enterprise", "enterprise-demo-1")
    page.goto(running.base_url + "/settlement/statements")
    page.click("#statements a")
    page.wait_for_selector("#total")
    assert page.inner_text("#statements-root").strip() == root
    total_fen = int(page.get_attribute("#total", "data-fen"))

    with page.expect_download() as csv_download:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(
        csv_download.value.path().read_text(encoding="utf-8-sig"))))
    assert rows, "the statement has lines"
    full = [r for r in rows if r.get("section", "full") == "full"]
    assert sum(int(r["fen"]) for r in full) == total_fen

    with page.expect_download() as pdf_download:
        page.click("#download-pdf")
    assert pdf_download.value.path().read_bytes().startswith(b"%PDF")
