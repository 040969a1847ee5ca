"""The auditor's inspection of a market day on eth-tester: the history rebuilt from events, a
clean day reported with its counts, and each kind of tampering named."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date

import numpy as np
import pytest
from sqlalchemy import select

from parkgrid import auditor
from parkgrid.auditor.extract import read_extract
from parkgrid.auditor.history import read_day
from parkgrid.auditor.report import check_file_signature, sign_file
from parkgrid.models import (
    MeterDayVersion,
    MeteringPoint,
    Order,
    OrderPeriod,
    Park,
    StatementLine,
    User,
)
from parkgrid.services import calendar, metering
from parkgrid.services import orders as order_service
from parkgrid.services import settlement as settlement_service

from .market_book import PERIOD, clear_and_publish, place, user
from .test_settlement_service import after, chunks, readings_for


@pytest.fixture
def day(book):
    """The book's day with an amendment, a cancellation and a batch, cleared, published and
    settled (initial run), as the platform runs it."""
    platform, park_id, delivery_day, gate, ids = book
    now = calendar.utcnow()
    with platform.unit_of_work() as session:
        who = user(session, "enterprise3")
        order = order_service.amend_order(session, who, ids["buy_low"], order_service.OrderInput(
            side="buy", delivery_day=delivery_day, periods={PERIOD: "120"}, price="0.0550"),
            now)
        order_id = order.id
    assert order_service.record_order_on_chain(platform, order_id) == "recorded"
    extra = place(platform, "enterprise2", "buy", "10", "0.0100", now)
    with platform.unit_of_work() as session:
        order = order_service.cancel_order(session, user(session, "enterprise2"), extra, now)
        order_id = order.id
    assert order_service.record_order_on_chain(platform, order_id) == "recorded"
    with platform.unit_of_work() as session:
        who = user(session, "enterprise")
        batch = order_service.create_orders(session, who, [order_service.OrderInput(
            side="sell", delivery_day=delivery_day, periods={PERIOD + 1: q}, price="0.0400")
            for q in ("20", "30")], now)
        batch_ids = [o.id for o in batch]
    assert order_service.record_batch_on_chain(platform, batch_ids) == 1  # one batch
    clear_and_publish(book)
    with platform.unit_of_work() as session:
        zone = session.get(Park, park_id).timezone
    metering.import_readings(platform, park_id, chunks(readings_for(platform, delivery_day)))
    run_id = settlement_service.request_run(platform, park_id, "initial", day=delivery_day,
                                            now=after(delivery_day, zone))
    settlement_service.execute(platform, run_id)
    return platform, park_id, delivery_day


def audit(platform, park_id, delivery_day):
    with platform.unit_of_work() as session:
        return auditor.audit_platform_day(platform, session, session.get(Park, park_id),
                                          delivery_day)


def subjects(report, area):
    return {(f["subject"], f["detail"]) for f in report["findings"] if f["area"] == area}


def test_the_history_is_rebuilt_from_events_alone(day):
    platform, park_id, delivery_day = day
    with platform.unit_of_work() as session:
        history = read_day(platform.market(session), delivery_day)
        stored = {o.public_id: o for o in session.scalars(
            select(Order).where(Order.delivery_day == delivery_day))}
    assert set(history.orders) == set(stored)
    for order_id, order in history.orders.items():
        assert order.side == stored[order_id].side
        assert order.cancelled == (stored[order_id].status == "cancelled")
    assert sorted(o.version for o in history.orders.values()) == [1, 1, 1, 1, 1, 2]
    assert sum(1 for o in history.orders.values() if o.actions[0].batch_id) == 2
    assert history.gate_closure and history.opened_block and history.window
    assert history.window[1] < platform.chain.block_number()
    [run] = history.runs
    assert run.published and run.trades and len(run.trades) == run.trade_count
    [settled] = history.settlements
    assert settled.kind == "initial" and settled.line_count > 0
    assert not history.void_items


def test_a_clean_day_says_so_with_its_counts(day):
    platform, park_id, delivery_day = day
    report = audit(platform, park_id, delivery_day)
    assert report["findings"] == [] and report["clean"]
    counts = report["counts"]
    assert counts["orders_on_chain"] == 6 and counts["order_documents_matched"] == 7
    assert counts["database_orders_matched"] == 6
    assert counts["clearings_identical"] == 1 and counts["clearing_files_matched"] == 1
    assert counts["trades_matched"] == counts["trades_on_chain"] > 0
    assert counts["settlement_files_matched"] == 1 and counts["settlements_recomputed"] == 1
    assert counts["statement_lines_proved"] == counts["statement_lines"] > 0
    assert counts["meter_intervals_checked"] > 0


def test_a_third_party_audits_with_the_chain_and_the_extract_only(day):
    platform, park_id, delivery_day = day
    with platform.unit_of_work() as session:
        extract = auditor.build_extract(session, session.get(Park, park_id), delivery_day)
        market = platform.market(session)
    report = auditor.audit_extract(market, extract)
    assert report["clean"], report["findings"]
    assert "database_orders" not in report["counts"]
    # A published file changed after publication: the manifest and the root say so.
    tampered = _rewrite(extract, "clearing/run-1/result.json",
                        lambda text: text + " ")
    report = auditor.audit_extract(market, tampered)
    found = subjects(report, "clearing") | subjects(report, "files")
    assert any(s == "run 1" and "root" in d for s, d in found)
    assert any("differs from the hash in the manifest" in d for _s, d in found)
    # The input a run was cleared with is anchored too: a changed limit is caught.
    tampered = _rewrite(extract, "clearing/run-1/input.json",
                        lambda text: text.replace('"limit_kva":"', '"limit_kva":"9', 1))
    report = auditor.audit_extract(market, tampered)
    assert any(s == "run 1" and "result and input files give root" in d
               for s, d in subjects(report, "clearing"))


def _rewrite(extract: bytes, name: str, change) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(extract))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == name:
                data = change(data.decode()).encode()
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def test_a_changed_stored_order_is_named(day):
    platform, park_id, delivery_day = day
    with platform.unit_of_work() as session:
        order = session.scalars(select(Order).where(Order.delivery_day == delivery_day,
                                                    Order.status != "cancelled")).first()
        period = session.scalar(select(OrderPeriod).where(OrderPeriod.order_id == order.id))
        period.quantity_kva = period.quantity_kva + 1
        target = order.public_id
    report = audit(platform, park_id, delivery_day)
    assert any(s == target and "differs from its recorded version" in d
               for s, d in subjects(report, "orders"))


def test_a_changed_meter_reading_is_named(day):
    platform, park_id, delivery_day = day
    with platform.unit_of_work() as session:
        version = session.scalars(select(MeterDayVersion).where(
            MeterDayVersion.day == delivery_day)).first()
        watts = np.frombuffer(version.watts, "<i8").copy()
        interval = int(np.flatnonzero(np.frombuffer(version.quality, np.uint8) == 0)[0])
        watts[interval] += 1234
        version.watts = watts.astype("<i8").tobytes()
        point = session.get(MeteringPoint, version.metering_point_id).code
    report = audit(platform, park_id, delivery_day)
    assert any(d.startswith(f"{point} interval {interval}:")
               for _s, d in subjects(report, "metering"))


def test_a_changed_statement_amount_is_named(day):
    platform, park_id, delivery_day = day
    with platform.unit_of_work() as session:
        line = session.scalars(select(StatementLine).order_by(StatementLine.position)).first()
        line.fen += 100
        position, was = line.position, line.fen - 100
    report = audit(platform, park_id, delivery_day)
    found = subjects(report, "settlement")
    assert any(f"line {position} " in d and f"published {was + 100} fen, recomputed {was} fen"
               in d for _s, d in found)
    assert any(f"line {position} " in d and "not proved" in d for _s, d in found)


def test_the_signed_report_and_its_pdf_check_out_and_a_changed_one_does_not(day):
    platform, park_id, delivery_day = day
    report = audit(platform, park_id, delivery_day)
    with platform.unit_of_work() as session:
        key = auditor.auditor_key(session, platform,
                                  session.scalar(select(User).where(User.username == "auditor")))
    envelope = auditor.sign_report(report, key)
    signer = auditor.check_signature(json.loads(json.dumps(envelope)))
    assert signer == envelope["signature"]["signer"]
    forged = json.loads(json.dumps(envelope))
    forged["report"]["counts"]["trades_matched"] += 1
    assert auditor.check_signature(forged) is None
    pdf = auditor.render_pdf(envelope)
    assert pdf.startswith(b"%PDF")
    signature = sign_file(pdf, key)
    assert check_file_signature(pdf, signature) == signer
    assert check_file_signature(pdf + b" ", signature) is None
    # The same auditor signs with the same key next time.
    with platform.unit_of_work() as session:
        again = auditor.auditor_key(session, platform,
                                    session.scalar(select(User).where(User.username == "auditor")))
    assert again == key


def test_an_extract_is_refused_when_it_is_not_one():
    with pytest.raises(auditor.ExtractError):
        read_extract(b"not a zip")


def test_a_day_never_opened_on_chain_has_an_empty_history(demo_platform):
    with demo_platform.unit_of_work() as session:
        history = read_day(demo_platform.market(session), date(2026, 1, 1))
    assert history.gate_closure is None and not history.orders and not history.runs


# --------------------------------------------------------------------------- pages, API, CLI

@pytest.fixture
def audit_client(day):
    from parkgrid.web import create_app

    platform, _park_id, delivery_day = day
    app = create_app(platform.settings, platform)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    return app.test_client(), delivery_day


def test_the_auditor_audits_a_day_on_its_page_and_downloads_signed_reports(audit_client,
                                                                             tmp_path):
    from click.testing import CliRunner

    from parkgrid.cli import main

    from .test_web import page_login, token

    client, delivery_day = audit_client
    page_login(client, "auditor", "auditor-demo-1")
    page = client.get(f"/audit/days?day={delivery_day}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="audit-verdict"' in body and "ok" in body
    assert "statement_lines_proved" in body
    park = json.loads(client.get(f"/api/v1/audit/days/{delivery_day}", headers=token(
        client, "auditor", "auditor-demo-1")).data)["report"]["park"]
    report = client.get(f"/audit/days/{park}/{delivery_day}/report.json")
    envelope = json.loads(report.data)
    assert auditor.check_signature(envelope) and envelope["report"]["clean"]
    pdf = client.get(f"/audit/days/{park}/{delivery_day}/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    signature = json.loads(pdf.headers["X-Report-Signature"])
    assert check_file_signature(pdf.data, signature) == envelope["signature"]["signer"]
    extract = client.get(f"/audit/days/{park}/{delivery_day}/extract.zip")
    assert read_extract(extract.data).day == delivery_day
    # The command line checks both signatures, and refuses a changed report.
    (tmp_path / "r.json").write_bytes(report.data)
    (tmp_path / "r.pdf").write_bytes(pdf.data)
    (tmp_path / "r.pdf.sig.json").write_text(json.dumps(signature))
    runner = CliRunner()
    for name in ("r.json", "r.pdf"):
        result = runner.invoke(main, ["audit", "check-signature", str(tmp_path / name)])
        assert result.exit_code == 0 and envelope["signature"]["signer"] in result.output
    envelope["report"]["clean"] = False
    (tmp_path / "r.json").write_text(json.dumps(envelope))
    result = runner.invoke(main, ["audit", "check-signature", str(tmp_path / "r.json")])
    assert result.exit_code != 0 and "does not hold" in result.output
    # A bad day is refused in the user's language, and the log page lists staff actions.
    page = client.get("/audit/days?day=not-a-day")
    assert page.status_code == 400 and "2026-11-24" in page.get_data(as_text=True)
    assert client.get("/audit/log").status_code == 200


def test_the_api_gives_the_signed_report_the_pdf_the_extract_and_the_log(audit_client):
    from .test_web import token

    client, delivery_day = audit_client
    headers = token(client, "auditor", "auditor-demo-1")
    response = client.get(f"/api/v1/audit/days/{delivery_day}", headers=headers)
    assert response.status_code == 200 and response.json["report"]["clean"]
    assert auditor.check_signature(response.json)
    pdf = client.get(f"/api/v1/audit/days/{delivery_day}/report.pdf", headers=headers)
    assert pdf.status_code == 200 and check_file_signature(
        pdf.data, json.loads(pdf.headers["X-Report-Signature"]))
    extract = client.get(f"/api/v1/audit/days/{delivery_day}/extract", headers=headers)
    assert extract.status_code == 200 and read_extract(extract.data).orders
    bad = client.get("/api/v1/audit/days/yesterday", headers=headers)
    assert bad.status_code == 422 and "day" in json.dumps(bad.json)
    bad = client.get(f"/api/v1/audit/days/{delivery_day}?park=NOPE", headers=headers)
    assert bad.status_code == 422
    staff = token(client, "settlement", "settlement-demo-1")
    client.post("/api/v1/settlement/runs", headers=staff, json={"kind": "initial"})
    log = client.get("/api/v1/audit/log?limit=5", headers=headers)
    assert log.status_code == 200 and log.json[0]["user"] == "settlement"
    assert client.get("/api/v1/audit/log?limit=0", headers=headers).status_code == 422
    enterprise = token(client, "enterprise", "enterprise-demo-1")
    assert client.get(f"/api/v1/audit/days/{delivery_day}",
                      headers=enterprise).status_code == 403
