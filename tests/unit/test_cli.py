"""The staff command-line tool on a fresh SQLite database."""

from __future__ import annotations

from click.testing import CliRunner

from parkgrid.cli import main


def test_db_upgrade_and_demo_load_are_repeatable(tmp_path):
    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester"}
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["demo", "load"], env=env)
    assert result.exit_code == 0, result.output
    assert "enterprises: 61" in result.output
    result = runner.invoke(main, ["demo", "load"], env=env)
    assert "already_loaded: 1" in result.output and "enterprises: 0" in result.output
    assert (tmp_path / "parkgrid.sqlite3").exists()

    result = runner.invoke(main, ["market", "set-rules", "--scope", "transformer",
                                  "--ties", "time_priority"], env=env)
    assert result.exit_code == 0 and "scope transformer, pricing zonal, ties time_priority" \
        in result.output, result.output
    result = runner.invoke(main, ["market", "set-gate", "25:00"], env=env)
    assert result.exit_code != 0 and "not a time of day" in result.output
    result = runner.invoke(main, ["market", "set-gate", "11:30"], env=env)
    assert result.exit_code == 0 and "gate closure of" in result.output, result.output


def test_service_mode_without_a_broker_is_refused_with_a_reason(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade"], env={
        "PARKGRID_MODE": "service", "PARKGRID_DATA_DIR": str(tmp_path)})
    assert result.exit_code != 0
    assert "PARKGRID_DATABASE_URL and PARKGRID_BROKER_URL" in result.output


def test_worker_needs_a_broker(tmp_path):
    result = CliRunner().invoke(main, ["worker"], env={"PARKGRID_DATA_DIR": str(tmp_path)})
    assert result.exit_code != 0 and "no broker configured" in result.output


def test_metering_and_settlement_commands(tmp_path):
    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester"}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(main, ["demo", "load"], env=env).exit_code == 0
    readings = tmp_path / "day.csv"
    result = runner.invoke(main, ["demo", "readings", "2026-10-06", "--out", str(readings)],
                           env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["metering", "import", str(readings)], env=env)
    assert result.exit_code == 0 and "accepted" in result.output, result.output
    assert "duplicate: 1" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("point,start,kw\nX,2026-10-06T00:00:00+08:00,ten\n")
    result = runner.invoke(main, ["metering", "import", str(bad)], env=env)
    assert result.exit_code != 0 and "line 2" in result.output

    result = runner.invoke(main, ["metering", "outage", "2026-10-06T20:00:00+08:00",
                                  "2026-10-06T19:00:00+08:00", "--reason", "trip"], env=env)
    assert result.exit_code != 0 and "end after it starts" in result.output
    result = runner.invoke(main, ["metering", "outage", "2026-10-06T20:00:00+08:00",
                                  "2026-10-06T22:00:00+08:00", "--reason", "feeder trip"],
                           env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["settlement", "exempt", "NOPE", "2026-10-06", "3",
                                  "--reason", "r", "--evidence", "e"], env=env)
    assert result.exit_code != 0 and "no enterprise NOPE" in result.output

    rule = tmp_path / "rule.json"
    rule.write_text('{"name": "park-2026", "version": 1, "band": {"upper": "0.05", '
                    '"lower": "0.05"}, "price_factor": "2", "fixed_price": "0", "seasonal": '
                    '[[7, {"upper": "0.04", "lower": "0.04"}]], "charge_over": true, '
                    '"charge_under": true, "minimum_charge": "1", "source": "park rules"}')
    result = runner.invoke(main, ["settlement", "set-rules", "--rule-file", str(rule),
                                  "--dispute-days", "10"], env=env)
    assert result.exit_code == 0 and "park-2026 v1" in result.output, result.output
    rule.write_text('{"name": "park-2026", "version": 2, "band": {"upper": "-1"}}')
    result = runner.invoke(main, ["settlement", "set-rules", "--rule-file", str(rule)],
                           env=env)
    assert result.exit_code != 0 and "not a valid rule document" in result.output


def test_serve_passes_its_server_options_to_waitress(tmp_path, monkeypatch):
    import waitress

    import parkgrid.services.chain_setup as chain_setup

    seen = {}
    monkeypatch.setattr(chain_setup, "check_chain", lambda _platform: "chain ok")
    monkeypatch.setattr(waitress, "serve", lambda app, **options: seen.update(options))
    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester"}
    result = CliRunner().invoke(main, ["serve", "--port", "8123", "--threads", "4",
                                       "--connection-limit", "500"], env=env)
    assert result.exit_code == 0, result.output
    assert (seen["port"], seen["threads"], seen["connection_limit"]) == (8123, 4, 500)
    assert seen["asyncore_use_poll"] is True
    result = CliRunner().invoke(main, ["serve", "--threads", "0"], env=env)
    assert result.exit_code != 0 and "--threads" in result.output


def test_staff_commands_are_written_to_the_audit_log_with_their_outcome(tmp_path):
    import json

    from sqlalchemy import create_engine, text

    env = {"PARKGRID_DATA_DIR": str(tmp_path), "PARKGRID_CHAIN_URL": "eth-tester"}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(main, ["market", "set-gate", "11:30"], env=env).exit_code != 0
    assert runner.invoke(main, ["demo", "load"], env=env).exit_code == 0
    assert runner.invoke(main, ["market", "set-gate", "11:30"], env=env).exit_code == 0
    assert runner.invoke(main, ["market", "set-gate", "25:00"], env=env).exit_code != 0
    engine = create_engine(f"sqlite:///{tmp_path / 'parkgrid.sqlite3'}")
    with engine.connect() as db:
        rows = db.execute(text("SELECT action, detail FROM audit_log ORDER BY id")).all()
    engine.dispose()
    logged = [(action, json.loads(detail)) for action, detail in rows]
    assert [action for action, _ in logged] == [
        "cli:parkgrid db upgrade", "cli:parkgrid market set-gate", "cli:parkgrid demo load",
        "cli:parkgrid market set-gate", "cli:parkgrid market set-gate"]
    outcomes = [detail["outcome"] for _, detail in logged]
    assert outcomes[0] == "ok" and outcomes[1].startswith("failed")  # no park yet
    assert outcomes[2:4] == ["ok", "ok"] and outcomes[4].startswith("failed")
    assert logged[3][1]["params"]["closure"] == "11:30" and logged[3][1]["via"] == "cli"
