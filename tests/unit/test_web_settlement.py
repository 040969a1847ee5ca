"""Settlement pages and API on the demo park: a cleared and published day is metered,
settled and anchored; staff review it, enterprises read and dispute their statements."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from eth_utils import keccak
from sqlalchemy import func, select

from parkgrid.canonical import merkle_root, verify_merkle_proof
from parkgrid.models import Enterprise, MeterDayVersion, Park, SettlementRun
from parkgrid.services import calendar
from parkgrid.services import settlement as settlement_service
from settlement.day import inputs_from_extract, line_bytes, settle_day
from settlement.run import Line

from .market_book import PERIOD, clear_and_publish
from .test_web import page_login, token


@pytest.fixture
def cleared(book, monkeypatch):
    """The book's day cleared and published, and the clock moved to the morning after."""
    platform, park_id, day, _gate, ids = book
    clear_and_publish(book)
    with platform.unit_of_work() as session:
        zone = ZoneInfo(session.get(Park, park_id).timezone)
    morning = datetime.combine(day + timedelta(days=1), time(9), zone)
    monkeypatch.setattr(calendar, "utcnow", lambda: morning.astimezone(ZoneInfo("UTC")))
    return platform, park_id, day, ids


def readings(platform, day, share="0.5") -> bytes:
    """A full day of readings for every metering point of the park: each enterprise draws
    `share` of its contracted capacity, spread over its points."""
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        zone = ZoneInfo(park.timezone)
        start = datetime.combine(day, time(0), zone)
        lines = ["point,start,kw"]
        for enterprise in session.scalars(select(Enterprise).order_by(Enterprise.code)):
            points = enterprise.metering_points
            kw = (Decimal(enterprise.contracted_kva) * Decimal(share) / len(points)).quantize(
                Decimal("0.001"))
            for point in points:
                for quarter in range(96):
                    moment = (start + timedelta(minutes=15 * quarter)).isoformat()
                    lines.append(f"{point.code},{moment},{kw}")
    return ("\n".join(lines) + "\n").encode()


def correction(platform, day, code, bought) -> bytes:
    """A day of an enterprise's readings: its contracted capacity all day, plus what it
    bought in the cleared period (so it used exactly what it was allowed)."""
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        enterprise = session.scalar(select(Enterprise).where(Enterprise.code == code))
        start = datetime.combine(day, time(0), ZoneInfo(park.timezone))
        lines = ["point,start,kw"]
        points = enterprise.metering_points
        for point in points:
            for quarter in range(96):
                kva = Decimal(enterprise.contracted_kva) + (bought if quarter // 4 == PERIOD
                                                            else 0)
                kw = (kva / len(points)).quantize(Decimal("0.001"))
                moment = (start + timedelta(minutes=15 * quarter)).isoformat()
                lines.append(f"{point.code},{moment},{kw}")
    return ("\n".join(lines) + "\n").encode()


def point_count(platform) -> int:
    with platform.unit_of_work() as session:
        return sum(len(e.metering_points) for e in session.scalars(select(Enterprise)))


def versions(platform) -> int:
    with platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(MeterDayVersion))


def run_of(platform, run_id) -> SettlementRun:
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run_id)
        session.expunge(run)
        return run


def upload_page(client, data: bytes, name="day.csv", **fields):
    return client.post("/settlement/imports", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name), "file_format": "", **fields})


def run_id_from(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_staff_import_settle_review_and_extract(app, client, cleared):
    platform, park_id, day, _ids = cleared
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "settlement", "settlement-demo-1")
    assert "导入计量数据" in client.get("/settlement/").get_data(as_text=True)

    # A malformed file is refused with its line and reason; nothing of it is stored.
    bad = b"point,start,kw\nE001-M1,2026-01-01T00:00:00+08:00,1\nE001-M1,yesterday,5\n"
    response = upload_page(client, bad, name="bad.csv")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "文件被拒收" in page and 'id="refusal"' in page and "line 3" in page
    assert "yesterday" in page
    assert versions(platform) == 0

    response = upload_page(client, readings(platform, day), name="good.csv")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="import-status"' in page and "已接受" in page
    assert f'id="point-days">{point_count(platform)}<' in page
    assert versions(platform) == point_count(platform)

    response = client.post("/settlement/runs", data={"kind": "initial",
                                                     "day": day.isoformat(), "reason": ""})
    run_id = run_id_from(response)
    page = client.get(f"/settlement/runs/{run_id}").get_data(as_text=True)
    run = run_of(platform, run_id)
    assert run.status == "published" and run.run_number == 1
    assert 'data-status="published"' in page and run.statements_root in page
    assert run.publish_tx_hash in page
    assert "罚金池" in page and "阻塞盈余" in page and 'id="deviation-chart"' in page
    assert 'id="balance" class="ok">0.00<' in page
    assert "<svg" in page and "<progress" not in page
    index = client.get("/settlement/").get_data(as_text=True)
    assert day.isoformat() in index and run.publish_tx_hash[:18] in index

    response = client.get(f"/settlement/runs/{run_id}/extract")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert set(archive.namelist()) == {"README.txt", "inputs.json", "result.json", "lines.csv",
                                       "anchors.json"}
    assert archive.read("result.json") == run.result_file
    # Anyone can settle the extract's inputs again with the open core: the same bytes.
    again = settle_day(inputs_from_extract(archive.read("inputs.json")), final=False)
    assert again.canonical_bytes() == archive.read("result.json")
    anchors = json.loads(archive.read("anchors.json"))
    assert anchors["statements_root"] == run.statements_root
    assert (anchors["run_number"], anchors["tx_hash"]) == (1, run.publish_tx_hash)
    assert anchors["contract"]["address"].startswith("0x")
    rows = list(csv.DictReader(io.StringIO(archive.read("lines.csv").decode())))
    assert len(rows) == run.line_count > 0
    assert sum(int(r["fen"]) for r in rows if r["section"] == "full") == 0
    # The leaves in the extract rebuild the root anchored on chain.
    for r in rows:
        line = Line(r["account"], r["kind"], int(r["period"]) if r["period"] else None,
                    r["reference"], int(r["fen"]))
        assert r["leaf"] == "0x" + keccak(f"{r['section']}:".encode() + line_bytes(line)).hex()
    assert [int(r["position"]) for r in rows] == list(range(1, len(rows) + 1))
    leaves = [keccak(run.result_file)] + [bytes.fromhex(r["leaf"][2:]) for r in rows]
    assert "0x" + merkle_root(leaves).hex() == run.statements_root
    with platform.unit_of_work() as session:
        on_chain = platform.market(session).settlement_run(run.period_id, 1)
    assert "0x" + on_chain.statements_root.hex() == run.statements_root

    # The auditor reads the run and its extract but imports and runs nothing.
    client.post("/logout")
    page_login(client, "auditor", "auditor-demo-1")
    assert client.get(f"/settlement/runs/{run_id}").status_code == 200
    assert client.get(f"/settlement/runs/{run_id}/extract").status_code == 200
    assert upload_page(client, readings(platform, day)).status_code == 403
    assert client.post("/settlement/runs", data={"kind": "final",
                                                 "day": day.isoformat()}).status_code == 403

    # A run still waiting for its task shows its progress and refreshes itself.
    queued = settlement_service.request_run(platform, park_id, "final", day=day)
    page = client.get(f"/settlement/runs/{queued}").get_data(as_text=True)
    assert '<meta http-equiv="refresh"' in page and 'id="run-progress"' in page
    progress = client.get(f"/settlement/runs/{queued}/progress").json
    assert (progress["status"], progress["progress"]) == ("queued", 0)


def settle_by_api(client, platform, day, kind="initial") -> int:
    staff = token(client, "settlement", "settlement-demo-1")
    response = client.post("/api/v1/metering/readings", data=readings(platform, day),
                           content_type="text/csv", headers=staff)
    assert response.status_code == 201, response.json
    response = client.post("/api/v1/settlement/runs", headers=staff,
                           json={"day": day.isoformat(), "kind": kind})
    assert response.status_code == 202, response.json
    return response.json["id"]


def test_enterprise_reads_its_statement_downloads_and_disputes(app, client, cleared):
    platform, _park_id, day, _ids = cleared
    run_id = settle_by_api(client, platform, day)
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "enterprise", "enterprise-demo-1")
    listing = client.get("/settlement/statements").get_data(as_text=True)
    assert f'data-run="{run_id}"' in listing and day.isoformat() in listing

    page = client.get(f"/settlement/statements/{run_id}").get_data(as_text=True)
    run = run_of(platform, run_id)
    assert "结算单" in page and 'id="account">E001' in page and run.statements_root in page
    assert "容量费" in page and "罚金池返还" in page and "<details>" in page
    assert 'id="assessments"' in page and "偏差考核" in page
    # E001 sold capacity in the cleared period: it receives money.
    assert "应收合计" in page

    response = client.get(f"/settlement/statements/{run_id}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows and {r["account"] for r in rows} == {"E001"}
    capacity = [r for r in rows if r["kind"] == "capacity"]
    assert [int(r["period"]) for r in capacity] == [PERIOD]
    assert int(capacity[0]["fen"]) < 0  # the seller receives
    assert all(Decimal(r["yuan"]) * 100 == int(r["fen"]) for r in rows)
    total = sum(int(r["fen"]) for r in rows)
    assert f'data-fen="{total}"' in page

    pdf = client.get(f"/settlement/statements/{run_id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF") and b"/Type /Page" in pdf.data
    assert b"E001" in pdf.data and pdf.data.rstrip().endswith(b"%%EOF")

    # A dispute within the window; amounts are yuan on the page and fen in the record.
    bad = client.post(f"/settlement/statements/{run_id}/dispute",
                      data={"claimed_yuan": "1.234", "text": "x"})
    assert bad.status_code == 422 and "最多两位小数" in bad.get_data(as_text=True)
    small = client.post(f"/settlement/statements/{run_id}/dispute",
                        data={"claimed_yuan": "1.00", "text": "One yuan."})
    assert small.status_code == 422 and "低于 1000 分" in small.get_data(as_text=True)
    response = client.post(f"/settlement/statements/{run_id}/dispute",
                           data={"claimed_yuan": "50.00", "text": "The meter was replaced."})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The meter was replaced." in page and "50.00" in page

    # Other enterprises: their own statement of the run, never E001's.
    client.post("/logout")
    page_login(client, "enterprise2", "enterprise-demo-2")
    page = client.get(f"/settlement/statements/{run_id}").get_data(as_text=True)
    assert 'id="account">E002' in page and "The meter was replaced." not in page
    assert client.get(f"/settlement/runs/{run_id}").status_code == 403
    assert client.get(f"/settlement/runs/{run_id}/accounts/E001").status_code == 403
    assert client.get("/settlement/statements/99999").status_code == 404
    second = token(client, "enterprise2", "enterprise-demo-2")
    assert client.get(f"/api/v1/settlement/statements/{run_id}?account=E001",
                      headers=second).status_code == 404

    # Staff see the dispute on the run page and reject it with a reason.
    client.post("/logout")
    page_login(client, "settlement", "settlement-demo-1")
    page = client.get(f"/settlement/runs/{run_id}").get_data(as_text=True)
    assert "The meter was replaced." in page and "E001" in page
    dispute_id = int(page.split('data-dispute="')[1].split('"')[0])
    response = client.post(f"/settlement/disputes/{dispute_id}/resolve",
                           data={"run_id": run_id, "resolution": "Readings checked.",
                                 "decision": "reject"})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "已驳回" in page and "Readings checked." in page
    staff_view = client.get(f"/settlement/runs/{run_id}/accounts/E001").get_data(as_text=True)
    assert run.statements_root in staff_view and 'id="raise-dispute"' not in staff_view


def test_english_pages(app, client, cleared):
    platform, _park_id, day, _ids = cleared
    run_id = settle_by_api(client, platform, day)
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "enterprise", "enterprise-demo-1")
    client.get("/lang/en")
    page = client.get(f"/settlement/statements/{run_id}").get_data(as_text=True)
    assert "Settlement statement" in page and "Total to receive (yuan)" in page
    assert "penalty pool paid back" in page
    assert b"%PDF" == client.get(f"/settlement/statements/{run_id}.pdf").data[:4]


def test_api_upload_run_statement_proofs_and_disputes(client, cleared):
    platform, _park_id, day, _ids = cleared
    staff = token(client, "settlement", "settlement-demo-1")

    bad = b"point,start,kw\nE001-M1,2026-01-01T00:00:00+08:00,lots\n"
    response = client.post("/api/v1/metering/readings?filename=bad.csv", data=bad,
                           content_type="text/csv", headers=staff)
    assert response.status_code == 422
    assert response.json["line"] == 2 and "lots" in response.json["reason"]
    refused = client.get(f"/api/v1/metering/imports/{response.json['import_id']}",
                         headers=staff).json
    assert refused["status"] == "refused" and refused["filename"] == "bad.csv"
    assert versions(platform) == 0
    assert client.post("/api/v1/metering/readings", data=bad, content_type="application/json",
                       headers=staff).status_code == 415

    response = client.post("/api/v1/metering/readings", data=readings(platform, day),
                           content_type="application/octet-stream", headers=staff)
    assert response.status_code == 201, response.json
    record = response.json
    assert record["status"] == "accepted" and record["point_days"] == point_count(platform)
    assert record["accepted"] == 96 * point_count(platform)
    assert client.get(f"/api/v1/metering/imports/{record['id']}",
                      headers=staff).json["sha256"] == record["sha256"]

    response = client.post("/api/v1/settlement/runs", headers=staff,
                           json={"day": day.isoformat(), "kind": "initial"})
    assert response.status_code == 202 and set(response.json) >= {"id", "status"}
    run_id = response.json["id"]
    again = client.post("/api/v1/settlement/runs", headers=staff,
                        json={"day": day.isoformat(), "kind": "initial"})
    assert again.status_code == 409  # the day has its published initial run
    run = client.get(f"/api/v1/settlement/runs/{run_id}", headers=staff).json
    assert (run["status"], run["progress"], run["run_number"]) == ("published", 100, 1)
    assert run["totals"]["balance_fen"] == 0 and run["totals"]["penalty_pool_fen"] > 0
    assert run["counts"]["assessed"] > 0 and run["counts"]["quality"]["actual"] > 0
    root = bytes.fromhex(run["statements_root"][2:])

    enterprise = token(client, "enterprise", "enterprise-demo-1")
    mine = client.get(f"/api/v1/settlement/statements/{run_id}", headers=enterprise).json
    assert mine["account"] == "E001" and mine["statements_root"] == run["statements_root"]
    assert mine["lines"] and mine["total_fen"] == sum(x["fen"] for x in mine["lines"])
    for item in mine["lines"]:
        line = Line("E001", item["kind"], item["period"], item["reference"], item["fen"])
        leaf = keccak(f"{item['section']}:".encode() + line_bytes(line))
        assert "0x" + leaf.hex() == item["leaf"]
        assert verify_merkle_proof(leaf, [bytes.fromhex(p[2:]) for p in item["proof"]], root)
    tampered = keccak(b"full:" + line_bytes(Line("E001", "capacity", PERIOD, "x", 1)))
    assert not verify_merkle_proof(tampered, [bytes.fromhex(p[2:])
                                              for p in mine["lines"][0]["proof"]], root)
    listed = client.get("/api/v1/settlement/statements", headers=enterprise).json
    assert listed[0]["run_id"] == run_id and listed[0]["total_fen"] == mine["total_fen"]

    as_staff = client.get(f"/api/v1/settlement/statements/{run_id}?account=E001",
                          headers=staff).json
    assert as_staff["lines"] == mine["lines"]
    assert client.get(f"/api/v1/settlement/statements/{run_id}",
                      headers=staff).status_code == 422

    dispute = client.post("/api/v1/settlement/disputes", headers=enterprise, json={
        "run_id": run_id, "claimed_fen": 5000, "text": "Period 10 was an outage."})
    assert dispute.status_code == 201, dispute.json
    assert (dispute.json["status"], dispute.json["enterprise"]) == ("open", "E001")
    small = client.post("/api/v1/settlement/disputes", headers=enterprise, json={
        "run_id": run_id, "claimed_fen": 1, "text": "A fen."})
    assert small.status_code == 422 and "claimed_fen" in small.json["errors"]


def test_settlement_roles_are_checked(client, cleared):
    platform, _park_id, day, _ids = cleared
    body = {"day": day.isoformat(), "kind": "initial"}
    assert client.post("/api/v1/settlement/runs", json=body).status_code == 401
    auditor = token(client, "auditor", "auditor-demo-1")
    assert client.post("/api/v1/metering/readings", data=readings(platform, day),
                       content_type="text/csv", headers=auditor).status_code == 403
    assert client.post("/api/v1/settlement/runs", json=body, headers=auditor).status_code == 403
    enterprise = token(client, "enterprise", "enterprise-demo-1")
    assert client.post("/api/v1/settlement/runs", json=body,
                       headers=enterprise).status_code == 403
    assert client.post("/api/v1/metering/readings", data=b"point,start,kw\n",
                       content_type="text/csv", headers=enterprise).status_code == 403
    assert client.get("/api/v1/settlement/runs/1", headers=enterprise).status_code == 403
    staff = token(client, "settlement", "settlement-demo-1")
    assert client.post("/api/v1/settlement/disputes", headers=staff, json={
        "run_id": 1, "claimed_fen": 5000, "text": "x"}).status_code == 403
    assert versions(platform) == 0
    spec = client.get("/api/openapi.json").json
    assert {"/api/v1/metering/readings", "/api/v1/settlement/runs",
            "/api/v1/settlement/runs/{run_id}", "/api/v1/settlement/statements/{run_id}",
            "/api/v1/settlement/disputes"} <= set(spec["paths"])
    assert "text/csv" in spec["paths"]["/api/v1/metering/readings"]["post"]["requestBody"][
        "content"]


def test_final_run_refused_for_missing_data_then_dispute_rerun(app, client, cleared):
    platform, _park_id, day, _ids = cleared
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "settlement", "settlement-demo-1")
    earlier = day - timedelta(days=3)  # no readings at all: a final run must refuse
    response = client.post("/settlement/runs", data={"kind": "final",
                                                     "day": earlier.isoformat()})
    refused_id = run_id_from(response)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-status="failed"' in page and 'id="run-error"' in page
    assert "最终结算被拒绝" in page

    upload_page(client, readings(platform, day))
    final_id = run_id_from(client.post("/settlement/runs", data={"kind": "final",
                                                                 "day": day.isoformat()}))
    assert run_of(platform, final_id).status == "published"
    assert run_of(platform, refused_id).status == "failed"

    client.post("/logout")
    page_login(client, "enterprise2", "enterprise-demo-2")
    client.post(f"/settlement/statements/{final_id}/dispute",
                data={"claimed_yuan": "20", "text": "Our bought capacity was curtailed."})
    # The buyer's meter under-read: a correction file replaces its day, then the dispute is
    # accepted and the day settled again, paying only the differences.
    client.post("/logout")
    page_login(client, "settlement", "settlement-demo-1")
    response = upload_page(client, correction(platform, day, "E002", bought=Decimal(150)),
                           correction="y", reason="Meter E002 replaced; check-meter values.")
    assert response.status_code == 302
    page = client.get(f"/settlement/runs/{final_id}").get_data(as_text=True)
    dispute_id = int(page.split('data-dispute="')[1].split('"')[0])
    response = client.post(f"/settlement/disputes/{dispute_id}/resolve", data={
        "run_id": final_id, "resolution": "Curtailment confirmed.", "decision": "accept"})
    rerun_id = run_id_from(response)
    rerun = run_of(platform, rerun_id)
    assert (rerun.kind, rerun.status, rerun.run_number) == ("rerun", "published", 2)
    assert rerun.previous_run_id == final_id
    page = client.get(f"/settlement/runs/{final_id}").get_data(as_text=True)
    assert "已接受" in page and f"/settlement/runs/{rerun_id}" in page

    client.post("/logout")
    page_login(client, "enterprise2", "enterprise-demo-2")
    page = client.get(f"/settlement/statements/{rerun_id}").get_data(as_text=True)
    assert "与上次差额" in page and 'id="difference"' in page
    assert "替代" in page  # the assessment states it rests on substituted values
    listed = client.get("/api/v1/settlement/statements",
                        headers=token(client, "enterprise2", "enterprise-demo-2")).json
    previous = next(r for r in listed if r["run_id"] == final_id)
    latest = next(r for r in listed if r["run_id"] == rerun_id)
    # The re-run's own lines equal the earlier run's plus the differences it pays.
    assert latest["total_fen"] == previous["total_fen"] + latest["difference_fen"]
    assert latest["difference_fen"] < 0  # the charge for unused bought capacity is refunded
