"""The committed contract artefacts match their sources and carry an honest header."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from parkgrid.chain import load_artefact

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTEFACT = REPO_ROOT / "contracts" / "build" / "CapacityMarket.json"


def test_committed_artefacts_match_a_fresh_compile() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "contracts" / "compile.py"), "--check"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_header_names_compiler_evm_and_optimizer() -> None:
    header = load_artefact("CapacityMarket")["_generated"]
    assert "solc 0.8.28+commit." in header
    assert "evmVersion cancun" in header
    assert "runs=200" in header
    assert "viaIR=True" in header
    assert "do not edit; regenerate with python contracts/compile.py" in header


def test_artefact_is_written_deterministically_without_local_paths() -> None:
    text = ARTEFACT.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
    assert str(REPO_ROOT) not in text


def test_artefact_exposes_the_contract_interface() -> None:
    artefact = load_artefact("CapacityMarket")
    names = {(entry["type"], entry.get("name")) for entry in artefact["abi"]}
    functions = {
        "registerEnterprise", "openDay", "recordOrder", "amendOrder", "cancelOrder",
        "recordOrderBatch", "recordTrades", "publishClearing", "voidClearing",
        "publishSettlement", "settlementRun", "settlementRunCount",
        "day", "clearingRun", "runTrades", "runTradeBlocks", "order", "batch",
        "accountOf", "enterpriseOf", "REGISTRAR_ROLE", "MARKET_OPERATOR_ROLE", "CLEARING_ROLE",
    }
    events = {
        "EnterpriseRegistered", "DayOpened", "OrderRecorded", "OrderAmended", "OrderCancelled",
        "OrderActionBatched", "OrderBatchRecorded", "TradeRecorded", "ClearingPublished",
        "ClearingVoided", "SettlementPublished",
    }
    errors = {
        "CapacityMarketNotEnterpriseAccount", "CapacityMarketGateClosed",
        "CapacityMarketGateOpen", "CapacityMarketOrderExists", "CapacityMarketBatchExists",
        "CapacityMarketAlreadyPublished", "CapacityMarketTradeCountMismatch",
        "CapacityMarketWrongRun", "AccessControlUnauthorizedAccount",
        "CapacityMarketInvalidPeriod", "CapacityMarketInvalidSettlementKind",
        "CapacityMarketWrongSettlementRun", "CapacityMarketInvalidSettlementHash",
    }
    expected = ({("function", n) for n in functions} | {("event", n) for n in events}
                | {("error", n) for n in errors})
    assert expected <= names, expected - names
    # v1's single-listing interface is gone.
    assert not {("function", "recordListing"), ("function", "listing")} & names
    assert artefact["bytecode"].startswith("0x60") and len(artefact["deployedBytecode"]) > 1000


def _signature(artefact: dict, kind: str, name: str) -> list[tuple[str, str, bool]]:
    (entry,) = [e for e in artefact["abi"] if e["type"] == kind and e.get("name") == name]
    return [(p["name"], p["type"], p.get("indexed", False)) for p in entry["inputs"]]


def test_void_clearing_names_the_run() -> None:
    assert _signature(load_artefact("CapacityMarket"), "function", "voidClearing") == [
        ("deliveryDay", "uint32", False), ("runNumber", "uint32", False),
        ("reason", "string", False)]


def test_order_recorded_is_lean() -> None:
    # For recordOrder's gas: no signer (it is the transaction's sender) and the enterprise as
    # data, not a topic; the order and its day stay searchable.
    assert _signature(load_artefact("CapacityMarket"), "event", "OrderRecorded") == [
        ("orderId", "bytes32", True), ("enterpriseId", "bytes32", False),
        ("deliveryDay", "uint32", True), ("side", "uint8", False),
        ("contentHash", "bytes32", False)]


def test_settlement_interface() -> None:
    artefact = load_artefact("CapacityMarket")
    hashes = [("meteringRoot", "bytes32"), ("ruleHash", "bytes32"),
              ("statementsRoot", "bytes32"), ("resultHash", "bytes32")]
    assert _signature(artefact, "function", "publishSettlement") == [
        ("periodId", "uint32", False), ("runNumber", "uint32", False), ("kind", "uint8", False),
        *((name, kind, False) for name, kind in hashes), ("lineCount", "uint32", False)]
    # Searchable by period and run; everything else is data.
    assert _signature(artefact, "event", "SettlementPublished") == [
        ("periodId", "uint32", True), ("runNumber", "uint32", True), ("kind", "uint8", False),
        *((name, kind, False) for name, kind in hashes), ("lineCount", "uint32", False),
        ("publisher", "address", False)]
    # The client finds a run's event in the one block the getter returns.
    (getter,) = [e for e in artefact["abi"] if e.get("name") == "settlementRun"]
    (output,) = getter["outputs"]
    assert [(c["name"], c["type"]) for c in output["components"]] == [
        ("kind", "uint8"), *hashes, ("lineCount", "uint32"), ("blockNumber", "uint64"),
        ("publisher", "address")]
    # The client tells "already published" from the expected run number.
    assert _signature(artefact, "error", "CapacityMarketWrongSettlementRun") == [
        ("periodId", "uint32", False), ("expectedRun", "uint32", False),
        ("runNumber", "uint32", False)]
