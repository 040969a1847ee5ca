"""Metering import and settlement runs on the demo park: versions, refusals, runs anchored on
chain with their roots, final refused while data are missing, re-runs paying differences."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from eth_utils import keccak
from sqlalchemy import func, select

from parkgrid.canonical import merkle_root, verify_merkle_proof
from parkgrid.demo import sample_readings
from parkgrid.models import (
    Enterprise,
    MeterDayVersion,
    MeteringImport,
    MeteringOutage,
    Park,
    SettlementRun,
    SettlementStatus,
)
from parkgrid.services import metering
from parkgrid.services import settlement as service
from parkgrid.services.errors import Conflict, ValidationFailed
from settlement.day import inputs_from_extract, metering_leaves, settle_day
from settlement.run import totals

from .market_book import clear_and_publish, user

PAST_DAY = date(2026, 10, 6)


def park_of(platform):
    with platform.unit_of_work() as session:
        park = session.scalar(select(Park))
        return park.id, park.timezone


def readings_for(platform, day, faults=True):
    with platform.unit_of_work() as session:
        return sample_readings(session, session.scalar(select(Park)), day, faults=faults)


def chunks(data: bytes, size: int = 4096):
    return (data[i:i + size] for i in range(0, len(data), size))


def versions(platform):
    with platform.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(MeterDayVersion))


def after(day: date, zone: str) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(zone)) \
        + timedelta(hours=1)


def test_an_import_stores_one_version_per_point_day_and_a_repeat_adds_none(demo_platform):
    park_id, _zone = park_of(demo_platform)
    data = readings_for(demo_platform, PAST_DAY)
    record = metering.import_readings(demo_platform, park_id, chunks(data), filename="d.csv")
    with demo_platform.unit_of_work() as session:
        points = session.scalar(select(func.count()).select_from(Enterprise)
                                .join(Enterprise.metering_points))
    assert record.point_days == points == versions(demo_platform)
    report = json.loads(record.report)
    assert report["counts"]["duplicate"] == 1
    assert record.readings == data.count(b"\n") - 1
    again = metering.import_readings(demo_platform, park_id, chunks(data), filename="d.csv")
    assert again.point_days == 0 and versions(demo_platform) == points


def test_a_correction_is_a_new_version_and_the_old_one_stays(demo_platform):
    park_id, zone = park_of(demo_platform)
    metering.import_readings(demo_platform, park_id, chunks(readings_for(demo_platform,
                                                                         PAST_DAY)))
    with demo_platform.unit_of_work() as session:
        point = session.scalar(select(MeterDayVersion)).metering_point.code
    start = datetime.combine(PAST_DAY, datetime.min.time(), ZoneInfo(zone))
    fix = f"point,start,kw\n{point},{(start + timedelta(hours=3)).isoformat()},123.456\n"
    record = metering.import_readings(demo_platform, park_id, [fix.encode()],
                                      substitute_reason="check meter CM-7")
    assert record.point_days == 1
    with demo_platform.unit_of_work() as session:
        rows = session.scalars(select(MeterDayVersion).join(MeterDayVersion.metering_point)
                               .where(MeterDayVersion.day == PAST_DAY)
                               .order_by(MeterDayVersion.version)).all()
        rows = [r for r in rows if r.metering_point.code == point]
        assert [r.version for r in rows] == [1, 2]
        old, new = (np.frombuffer(r.watts, "<i8") for r in rows)
        assert new[12] == 123456 and old[12] != 123456
        assert (np.delete(old, 12) == np.delete(new, 12)).all()
        day = metering.load_days(session, session.scalar(select(Park)), [PAST_DAY],
                                 [point])[PAST_DAY]
        (value,) = [v for v in day.series(point) if v.interval == 12]
        assert value.quality == "substituted" and "CM-7" in value.explanation


@pytest.mark.parametrize(("text", "reason"), [
    (b"point,start\nX,2026-10-06T00:00:00+08:00\n", "line 1"),
    (b"point,start,kw\nMP,2026-10-06T00:00:00+08:00,abc\n", "line 2"),
    (b"point,start,kw\nMP,2026-10-06T00:00:00+08:00,1\nMP,2026-10-06T00:15", "line 3"),
    (b"point,start,kw\n\xff\xfe\n", "line 2"),
    (b"100,NEM12,200405011135,MDA1,Ret1\n300,20040501,1\n", "line 2"),
])
def test_a_malformed_file_is_refused_with_its_line_and_nothing_is_kept(demo_platform, text,
                                                                       reason):
    park_id, _zone = park_of(demo_platform)
    with pytest.raises(metering.FileRefused, match=reason):
        metering.import_readings(demo_platform, park_id, [text], filename="bad")
    assert versions(demo_platform) == 0
    with demo_platform.unit_of_work() as session:
        (record,) = session.scalars(select(MeteringImport)).all()
        assert record.status == "refused" and reason in record.refusal


def test_unknown_points_and_conflicting_duplicates_are_rejected_never_merged(demo_platform):
    park_id, zone = park_of(demo_platform)
    with demo_platform.unit_of_work() as session:
        point = session.scalar(select(Enterprise)).metering_points[0].code
    at = datetime.combine(PAST_DAY, datetime.min.time(), ZoneInfo(zone)).isoformat()
    text = (f"point,start,kw\nNOPE,{at},5\n{point},{at},10\n{point},{at},11\n").encode()
    record = metering.import_readings(demo_platform, park_id, [text])
    counts = json.loads(record.report)["counts"]
    assert counts["unknown-point"] == 1 and counts["conflicting-duplicate"] == 1
    assert record.accepted == 0 and versions(demo_platform) == 0


def settle(platform, park_id, day, kind, zone, **kw):
    run_id = service.request_run(platform, park_id, kind, day=day, now=after(day, zone), **kw)
    return service.execute(platform, run_id)


def test_an_initial_run_is_zero_sum_anchored_and_proves_every_line(demo_platform):
    park_id, zone = park_of(demo_platform)
    metering.import_readings(demo_platform, park_id, chunks(readings_for(demo_platform,
                                                                         PAST_DAY)))
    with pytest.raises(Conflict, match="not over"):
        service.request_run(demo_platform, park_id, "initial", day=PAST_DAY,
                            now=after(PAST_DAY, zone) - timedelta(hours=2))
    run = settle(demo_platform, park_id, PAST_DAY, "initial", zone)
    assert run.status == SettlementStatus.PUBLISHED and run.run_number == 1
    with demo_platform.unit_of_work() as session:
        run = session.get(SettlementRun, run.id)
        assert sum(line.fen for line in run.lines) == 0
        kinds = {line.kind for line in run.lines}
        assert "deviation" in kinds and "penalty-pool" in kinds  # the demo's over-users
        market = demo_platform.market(session)
        record = market.settlement_run(int(PAST_DAY.strftime("%Y%m%d")), 1)
        assert "0x" + record.statements_root.hex() == run.statements_root
        assert "0x" + record.result_hash.hex() == run.result_hash == "0x" + keccak(
            run.result_file).hex()
        assert "0x" + record.metering_root.hex() == run.metering_root
        assert "0x" + record.rule_hash.hex() == run.rule_hash == run.rule.rule_hash
        # An enterprise's statement: each line proved against the root on chain.
        account = next(line.account for line in run.lines if line.kind == "deviation")
        statement = service.statement(session, run, account)
        assert statement["lines"] and all(
            verify_merkle_proof(bytes.fromhex(x["leaf"][2:]),
                                [bytes.fromhex(p[2:]) for p in x["proof"]],
                                record.statements_root) for x in statement["lines"])
        # The stored inputs settle again to the same bytes, and their metering root holds.
        inputs = inputs_from_extract(run.inputs_file)
        assert settle_day(inputs, final=False).canonical_bytes() == run.result_file
        assert "0x" + merkle_root([keccak(x) for x in metering_leaves(inputs.meter)]).hex() \
            == run.metering_root


def test_final_is_refused_while_an_interval_is_missing_then_reruns_pay_differences(
        demo_platform):
    park_id, zone = park_of(demo_platform)
    data = readings_for(demo_platform, PAST_DAY, faults=False)
    # Leave one point without its evening: under a marked outage it cannot be estimated.
    with demo_platform.unit_of_work() as session:
        point = session.scalar(select(Enterprise).order_by(Enterprise.code.desc())
                               ).metering_points[0]
        start = datetime.combine(PAST_DAY, datetime.min.time(), ZoneInfo(zone))
        session.add(MeteringOutage(park_id=park_id, metering_point_id=point.id,
                                   starts_at=start + timedelta(hours=20),
                                   ends_at=start + timedelta(hours=22), reason="feeder trip"))
        code = point.code
    kept = [line for line in data.decode().splitlines()
            if not (line.startswith(code + ",") and "T20:" in line)]
    metering.import_readings(demo_platform, park_id, ["\n".join(kept).encode()])
    first = settle(demo_platform, park_id, PAST_DAY, "initial", zone)
    with pytest.raises(Conflict, match="missing"):
        settle(demo_platform, park_id, PAST_DAY, "final", zone)

    # The missing hour arrives as a late delivery: a new version; the final run pays only
    # the difference against the initial one.
    late = [line for line in data.decode().splitlines()
            if line.startswith(code + ",") and "T20:" in line]
    metering.import_readings(demo_platform, park_id, [("point,start,kw\n" + "\n".join(late))
                                                      .encode()])
    final = settle(demo_platform, park_id, PAST_DAY, "final", zone)
    assert final.run_number == 2  # the refused final never reached the chain
    with pytest.raises(ValidationFailed):
        settle(demo_platform, park_id, PAST_DAY, "rerun", zone)
    # A correction triples the afternoon peak of one point; the re-run pays the difference.
    rerun_fix = next(line for line in data.decode().splitlines()[1:]
                     if "T14:00:00" in line).split(",")
    rerun_fix[2] = str(Decimal(rerun_fix[2]) * 3)
    metering.import_readings(demo_platform, park_id,
                             [("point,start,kw\n" + ",".join(rerun_fix)).encode()],
                             substitute_reason="meter exchange")
    rerun = settle(demo_platform, park_id, PAST_DAY, "rerun", zone, reason="meter exchange")
    with demo_platform.unit_of_work() as session:
        runs = [session.get(SettlementRun, r.id) for r in (first, final, rerun)]
        for previous, current in zip(runs, runs[1:], strict=False):
            full_prev = totals([_line(x) for x in previous.lines if x.section == "full"])
            full_cur = totals([_line(x) for x in current.lines if x.section == "full"])
            diff = totals([_line(x) for x in current.lines if x.section == "difference"])
            for account in set(full_prev) | set(full_cur):
                assert full_prev.get(account, 0) + diff.get(account, 0) == full_cur.get(
                    account, 0)
        assert [r.run_number for r in runs] == [1, 2, 3]
        assert any(x.section == "difference" and x.kind == "deviation" for x in runs[2].lines)
        failed = session.scalars(select(SettlementRun).where(
            SettlementRun.status == SettlementStatus.FAILED)).all()
        assert len(failed) == 1 and "missing" in failed[0].error
    # Re-runs on unchanged data pay no differences; two in a row have the same roots and
    # kind, and each still gets its own number.
    again = settle(demo_platform, park_id, PAST_DAY, "rerun", zone, reason="dispute checked")
    third = settle(demo_platform, park_id, PAST_DAY, "rerun", zone, reason="checked again")
    assert (again.run_number, third.run_number) == (4, 5)
    assert again.statements_root == third.statements_root
    with demo_platform.unit_of_work() as session:
        assert not [x for x in session.get(SettlementRun, again.id).lines
                    if x.section == "difference"]


def _line(row):
    from settlement.run import Line
    return Line(row.account, row.kind, row.period_index, row.reference, row.fen)


def test_capacity_trades_settle_at_clearing_prices_and_a_buyer_below_its_purchase_pays(book):
    platform, park_id, day, _gate, ids = book
    clear_and_publish(book)
    _park, zone = park_of(platform)
    metering.import_readings(platform, park_id, chunks(readings_for(platform, day)))
    run = settle(platform, park_id, day, "initial", zone)
    with platform.unit_of_work() as session:
        run = session.get(SettlementRun, run.id)
        capacity = {(x.account, x.reference): x.fen for x in run.lines if x.kind == "capacity"}
        buyer = user(session, "enterprise2").enterprise.code
        # 150 kVA for one hour at 0.05 yuan/kVA·h.
        assert capacity[(buyer, ids["buy_high"])] == 750
        seller = user(session, "enterprise").enterprise.code
        assert capacity[(seller, ids["sell"])] in (-595, -596)  # 198.5 × 0.03, rounded
        rent = [x.fen for x in run.lines if x.kind == "congestion-rent"]
        assert rent and sum(rent) in (-397, -398)
        # The high bidder used far less than the 150 kVA it bought: charged for it.
        assert any(x.account == buyer and x.kind == "deviation" for x in run.lines)
        assert sum(x.fen for x in run.lines) == 0


def test_an_exemption_excuses_the_period_and_progress_is_visible_while_running(
        demo_platform):
    park_id, zone = park_of(demo_platform)
    metering.import_readings(demo_platform, park_id, chunks(readings_for(
        demo_platform, PAST_DAY, faults=False)))
    first = settle(demo_platform, park_id, PAST_DAY, "initial", zone)
    with demo_platform.unit_of_work() as session:
        charged = sorted({(x.account, x.period_index) for x in
                          session.get(SettlementRun, first.id).lines if x.kind == "deviation"})
    account, period = charged[0]
    with pytest.raises(ValidationFailed, match="evidence"):
        service.add_exemption(demo_platform, park_id, account, PAST_DAY, period, "trip", " ")
    service.add_exemption(demo_platform, park_id, account, PAST_DAY, period,
                          "grid-side feeder trip", "dispatch log 2026-10-06 #41")
    run_id = service.request_run(demo_platform, park_id, "final", day=PAST_DAY,
                                 now=after(PAST_DAY, zone))
    seen = []

    def progress(percent):
        with demo_platform.unit_of_work() as session:  # what the run's page would read
            seen.append((percent, session.get(SettlementRun, run_id).progress))

    run = service.execute(demo_platform, run_id, progress)
    assert [p for p, _ in seen] == [5, 40, 70, 90] and all(p == s for p, s in seen)
    with demo_platform.unit_of_work() as session:
        run = session.get(SettlementRun, run.id)
        lines = {(x.section, x.account, x.kind, x.period_index): x.fen for x in run.lines}
        assert ("full", account, "deviation", period) not in lines
        assert lines[("difference", account, "deviation", period)] < 0  # paid back
        result = json.loads(run.result_file)
        assert "grid-side feeder trip" in json.dumps(result, ensure_ascii=False)


def test_a_month_rolls_up_each_days_last_run_zero_sum(demo_platform):
    park_id, zone = park_of(demo_platform)
    days = [PAST_DAY, PAST_DAY + timedelta(days=1)]
    for day in days:
        metering.import_readings(demo_platform, park_id, chunks(readings_for(demo_platform,
                                                                             day)))
        settle(demo_platform, park_id, day, "initial", zone)
    with pytest.raises(Conflict, match="not ended"):
        service.request_run(demo_platform, park_id, "monthly", month=PAST_DAY,
                            now=after(days[-1], zone))
    run_id = service.request_run(demo_platform, park_id, "monthly", month=PAST_DAY,
                                 now=after(date(2026, 10, 31), zone))
    run = service.execute(demo_platform, run_id)
    assert run.status == SettlementStatus.PUBLISHED and run.period_id == 20261000
    with demo_platform.unit_of_work() as session:
        month = session.get(SettlementRun, run.id)
        dailies = session.scalars(select(SettlementRun).where(
            SettlementRun.period_id != 20261000)).all()
        daily = totals([_line(x) for r in dailies for x in r.lines])
        assert totals([_line(x) for x in month.lines]) == {k: v for k, v in daily.items() if v}
        assert sum(x.fen for x in month.lines) == 0
        record = demo_platform.market(session).settlement_run(20261000, 1)
        assert record.kind == "monthly" and record.metering_root == b"\0" * 32
