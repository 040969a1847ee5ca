"""A third party audits a market day on anvil with the command line: a chain URL, the
contract's address and the published extract, nothing of the platform's."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from eth_account import Account
from sqlalchemy import select

from parkgrid import auditor, migrate
from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode
from parkgrid.config import Settings
from parkgrid.demo import generate_demo_park, load_demo_park, sample_readings
from parkgrid.models import Park, User
from parkgrid.services import calendar, clearing, metering
from parkgrid.services import orders as order_service
from parkgrid.services import settlement as settlement_service
from parkgrid.services.chain_setup import setup_chain
from parkgrid.wiring import Platform

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def place(platform, username, side, periods, price, now):
    with platform.unit_of_work() as session:
        who = session.scalar(select(User).where(User.username == username))
        day = calendar.open_delivery_day(who.enterprise.park, now)
        order = order_service.create_order(session, who, order_service.OrderInput(
            side=side, delivery_day=day, periods=periods, price=price), now)
        order_id = order.id
    assert order_service.record_order_on_chain(platform, order_id) == "recorded"
    return day


def audit(*args):
    return subprocess.run([sys.executable, "-m", "parkgrid.cli", "audit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180,
                          # Nothing of the platform's settings: only what a third party has.
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("PARKGRID_")})


def test_a_third_party_audits_a_day_on_anvil_from_the_chain_and_the_extract(tmp_path):
    with AnvilNode(state_file=tmp_path / "state.json") as node:
        settings = Settings(data_dir=tmp_path, chain_url=node.url,
                            secret_key="audit-test").with_defaults()
        migrate.upgrade(settings.database_url)
        platform = Platform(settings)
        with platform.unit_of_work() as session:
            load_demo_park(session, platform.keybox, generate_demo_park())
        setup_chain(platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))
        now = calendar.utcnow()
        day = place(platform, "enterprise", "sell", {10: "200", 11: "100"}, "0.0300", now)
        place(platform, "enterprise2", "buy", {10: "150"}, "0.0600", now)
        place(platform, "enterprise3", "buy", {11: "80"}, "0.0500", now)
        with platform.unit_of_work() as session:
            park = session.scalar(select(Park))
            park_id, zone = park.id, ZoneInfo(park.timezone)
            gate = calendar.gate_closure(park, day)
            staff_id = session.scalar(select(User.id).where(User.username == "settlement"))
            readings = sample_readings(session, park, day, faults=False)
        run_id = clearing.run_clearing(platform, park_id, day, now=gate)
        platform.chain.set_next_block_timestamp(int(gate.timestamp()) + 1)
        clearing.publish(platform, run_id, staff_id)
        metering.import_readings(platform, park_id, [readings])
        after = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        settlement_service.execute(platform, settlement_service.request_run(
            platform, park_id, "initial", day=day, now=after + timedelta(hours=1)))
        with platform.unit_of_work() as session:
            extract = auditor.build_extract(session, session.scalar(select(Park)), day)
            address = platform.market(session).address
        (tmp_path / "extract.zip").write_bytes(extract)
        key = Account.create()
        (tmp_path / "key").write_text(key.key.hex())
        common = ["day", "--chain-url", node.url, "--contract", address, "--key-file",
                  str(tmp_path / "key")]

        done = audit(*common, "--extract", str(tmp_path / "extract.zip"),
                     "--json", str(tmp_path / "report.json"), "--pdf", str(tmp_path / "r.pdf"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "clean" in done.stdout and "statement_lines_proved" in done.stdout
        envelope = json.loads((tmp_path / "report.json").read_text())
        assert envelope["signature"]["signer"] == key.address
        assert envelope["report"]["counts"]["orders_on_chain"] == 3
        assert envelope["report"]["counts"]["clearings_identical"] == 1
        for name in ("report.json", "r.pdf"):
            checked = audit("check-signature", str(tmp_path / name))
            assert checked.returncode == 0 and key.address in checked.stdout

        # A published file changed: named, and the command fails.
        source = zipfile.ZipFile(io.BytesIO(extract))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            for info in source.infolist():
                data = source.read(info.filename)
                if info.filename == "settlement/run-1/result.json":
                    data = data.replace(b'"', b' "', 1)
                target.writestr(info, data)
        (tmp_path / "tampered.zip").write_bytes(buffer.getvalue())
        failed = audit(*common, "--extract", str(tmp_path / "tampered.zip"))
        assert failed.returncode == 1
        assert "settlement run 1: the published result file does not match" in failed.stdout

        # Bad input: a clear error, no traceback.
        wrong = audit(*common, "--extract", str(tmp_path / "key"))
        assert wrong.returncode != 0 and "not a day extract" in wrong.stderr
        assert "Traceback" not in wrong.stderr
