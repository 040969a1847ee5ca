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
