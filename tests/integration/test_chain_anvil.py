"""The chain adapter against a real anvil node: persistence across restarts, resets, block time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from parkgrid.chain import (
    ANVIL_DEFAULT_KEY,
    AnvilNode,
    CapacityMarket,
    ChainConnection,
    ChainResetError,
    ChainRevertError,
    ChainTimeoutError,
    ChainUnavailableError,
    JsonRpcChain,
    OrderRecord,
    SettlementEvent,
    SettlementRunRecord,
    connect,
    enterprise_key,
)
from parkgrid.chain.anvil import ANVIL_EXECUTABLE

pytestmark = pytest.mark.integration

DAY = 20250615
MONTH = 20250600
ENTERPRISE_ID = enterprise_key("E-001")
ADMIN = Account.from_key(ANVIL_DEFAULT_KEY)  # funded by every fresh anvil


def h(label: str) -> bytes:
    return keccak(text=label)


ORDER, BATCH = h("order"), h("batch")
TRADE = CapacityMarket.trade_item(ORDER, 40, -12_345, h("trade detail"))


@pytest.fixture(scope="module", autouse=True)
def anvil_installed() -> None:
    # No silent skip: a missing node binary is a broken checkout, and says how to fix it.
    if not ANVIL_EXECUTABLE.exists():
        pytest.fail(f"anvil is not installed at {ANVIL_EXECUTABLE}; run 'make setup' in the "
                    "repository root")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    with AnvilNode(state_file=tmp_path / "state.json") as running:
        yield running


def rpc(chain: ChainConnection, method: str, *params: Any) -> Any:
    response = chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def open_market(chain: ChainConnection, enterprise: LocalAccount) -> tuple[CapacityMarket, int]:
    """Deploy a market (the admin is also clearing staff), bind `enterprise` to E-001 and
    open DAY with its gate 100 s ahead; return the market and the gate."""
    market, _ = CapacityMarket.deploy(chain, ADMIN)
    market.grant_role(ADMIN, "CLEARING_ROLE", ADMIN.address)
    chain.fund(ADMIN, enterprise.address, 10**18)
    market.register_enterprise(ADMIN, ENTERPRISE_ID, enterprise.address)
    gate = chain.latest_timestamp() + 100
    market.open_day(ADMIN, DAY, gate)
    return market, gate


def reads(market: CapacityMarket) -> tuple[object, ...]:
    return (market.order(ORDER), market.batch(BATCH), market.day(DAY),
            market.clearing_run(DAY, 1), market.trade_events(DAY, 1))


def anchors(label: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(metering root, rule hash, statements root, result hash) of a settlement run."""
    return (h(f"{label} metering"), h("deviation rules v1"), h(f"{label} statements"),
            h(f"{label} result"))


def test_market_survives_a_restart_with_state_and_a_reset_is_detected(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    enterprise = Account.create()

    with AnvilNode(state_file=state) as node:
        chain = connect(node.url)
        chain_id = chain.chain_id()
        market, gate = open_market(chain, enterprise)
        market.record_order(enterprise, ORDER, ENTERPRISE_ID, DAY, "sell", h("v1"))
        amended = market.amend_order(enterprise, ORDER, h("v2"))
        market.record_order_batch(enterprise, BATCH, ENTERPRISE_ID, DAY,
                                  [(h("batched"), "new", "buy", h("b1"))])
        chain.set_next_block_timestamp(gate)
        market.record_trades(ADMIN, DAY, 1, [TRADE])
        market.publish_clearing(ADMIN, DAY, 1, h("root"), 1)
        market.publish_settlement(ADMIN, DAY, 1, "initial", *anchors("initial"), 2)
        settlement = (market.settlement_run(DAY, 1), market.settlement_events(DAY))
        assert settlement[0] is not None and len(settlement[1]) == 1

        assert market.order(ORDER) == OrderRecord(
            ORDER, ENTERPRISE_ID, DAY, "sell", 2, False, h("v2"), amended.block_number,
            amended.tx_hash, enterprise.address)
        before = reads(market)
        assert before[2].published and len(before[4]) == 1  # type: ignore[union-attr]
        market.verify(chain_id)
    assert state.stat().st_size > 0  # written on a graceful stop

    with AnvilNode(state_file=state) as node:
        chain = connect(node.url)
        market = CapacityMarket(chain, market.address)
        market.verify(chain_id)
        assert reads(market) == before
        assert (market.settlement_run(DAY, 1), market.settlement_events(DAY)) == settlement
        # The nonces came back too: the enterprise goes on trading on the next day.
        market.open_day(ADMIN, DAY + 1, chain.latest_timestamp() + 100)
        market.record_order(enterprise, h("next"), ENTERPRISE_ID, DAY + 1, "buy", h("n1"))

    # Same URL, but no state: a reset chain.
    with AnvilNode(port=node.port, log_file=tmp_path / "fresh.log") as fresh:
        market = CapacityMarket(connect(fresh.url), market.address)
        with pytest.raises(ChainResetError, match="no code at that address"):
            market.verify(chain_id)
        for read in (lambda: market.order(ORDER), lambda: market.day(DAY)):
            with pytest.raises(ChainResetError, match="no code there"):
                read()


def test_a_closed_gate_stays_closed_after_a_restart(tmp_path: Path) -> None:
    # The chain's clock must not go back when anvil reloads its state, or a day whose gate
    # has closed on chain would take orders again. (anvil 1.7.1 stamps the first blocks
    # after a reload with the wall-clock time, even when the saved chain is ahead of it.)
    state = tmp_path / "state.json"
    enterprise = Account.create()
    with AnvilNode(state_file=state) as node:
        chain = connect(node.url)
        market, gate = open_market(chain, enterprise)
        market.record_order(enterprise, ORDER, ENTERPRISE_ID, DAY, "sell", h("v1"))
        chain.set_next_block_timestamp(gate)
        market.record_trades(ADMIN, DAY, 1, [TRADE])  # the first block at the gate

    with AnvilNode(state_file=state) as node:
        chain = connect(node.url)
        market = CapacityMarket(chain, market.address)
        receipt = chain.fund(ADMIN, enterprise.address, 1)
        block_time = chain.w3.eth.get_block(receipt.block_number)["timestamp"]
        assert block_time > gate, f"block {receipt.block_number} went back to {block_time}"
        # The blocks after it go on from there, not from the wall clock.
        later = chain.fund(ADMIN, enterprise.address, 1)
        assert chain.w3.eth.get_block(later.block_number)["timestamp"] >= block_time
        with pytest.raises(ChainRevertError, match="CapacityMarketGateClosed"):
            market.amend_order(enterprise, ORDER, h("v2"))


def test_other_chain_id_is_detected(tmp_path: Path) -> None:
    with AnvilNode(chain_id=31337, log_file=tmp_path / "first.log") as node:
        market, _ = CapacityMarket.deploy(connect(node.url), ADMIN)
    with AnvilNode(chain_id=31338, port=node.port, log_file=tmp_path / "other.log") as other:
        with pytest.raises(ChainResetError, match="expected chain id 31337"):
            CapacityMarket(connect(other.url), market.address).verify(31337)


# =========================================================================== gate closure
# One node for all the gate tests; each test gets a new connection (so new nonce counters)
# and the chain is put back to a snapshot after it.

@dataclass
class GateChain:
    url: str
    address: str
    gate: int
    enterprise: LocalAccount
    snapshot: str


@pytest.fixture(scope="module")
def gate_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateChain]:
    log = tmp_path_factory.mktemp("anvil") / "gate.log"
    with AnvilNode(log_file=log) as running:
        chain = connect(running.url)
        enterprise = Account.create()
        market, gate = open_market(chain, enterprise)
        market.record_order(enterprise, ORDER, ENTERPRISE_ID, DAY, "buy", h("v1"))
        yield GateChain(running.url, market.address, gate, enterprise,
                        rpc(chain, "evm_snapshot"))


@pytest.fixture
def gated(gate_chain: GateChain) -> Iterator[CapacityMarket]:
    chain = connect(gate_chain.url)
    yield CapacityMarket(chain, gate_chain.address)
    assert rpc(chain, "evm_revert", gate_chain.snapshot) is True
    gate_chain.snapshot = rpc(chain, "evm_snapshot")  # a revert uses the snapshot up


Call = Callable[[CapacityMarket, LocalAccount], object]
ORDER_CALLS: dict[str, Call] = {
    "recordOrder": lambda m, e: m.record_order(e, h("late"), ENTERPRISE_ID, DAY, "sell",
                                               h("late v1")),
    "amendOrder": lambda m, e: m.amend_order(e, ORDER, h("v2")),
    "cancelOrder": lambda m, e: m.cancel_order(e, ORDER),
    "recordOrderBatch": lambda m, e: m.record_order_batch(
        e, BATCH, ENTERPRISE_ID, DAY, [(h("batched"), "new", "buy", h("b1"))]),
}
CLEARING_CALLS: dict[str, Call] = {
    "recordTrades": lambda m, e: m.record_trades(ADMIN, DAY, 1, [TRADE]),
    "publishClearing": lambda m, e: m.publish_clearing(ADMIN, DAY, 1, h("root"), 0),
}


def gate_state(market: CapacityMarket) -> tuple[object, ...]:
    return (market.order(h("late")), *reads(market))


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("function", [*ORDER_CALLS, *CLEARING_CALLS])
def test_orders_before_the_gate_clearing_from_it(
        gate_chain: GateChain, gated: CapacityMarket, function: str, offset: int) -> None:
    is_order = function in ORDER_CALLS
    call = (ORDER_CALLS | CLEARING_CALLS)[function]
    chain, gate = gated.chain, gate_chain.gate
    before = gate_state(gated)
    chain.set_next_block_timestamp(gate + offset)
    block = chain.block_number()

    if (offset < 0) == is_order:  # allowed
        call(gated, gate_chain.enterprise)
        assert chain.latest_timestamp() == gate + offset
        assert gate_state(gated) != before
        return
    with pytest.raises(ChainRevertError) as caught:
        call(gated, gate_chain.enterprise)
    expected = "CapacityMarketGateClosed" if is_order else "CapacityMarketGateOpen"
    assert (caught.value.error_name, caught.value.error_args) == (expected, {
        "deliveryDay": DAY, "gateClosure": gate, "blockTimestamp": gate + offset})
    assert chain.block_number() == block
    assert gate_state(gated) == before


def test_settlement_runs_are_anchored_numbered_and_read_back(
        gate_chain: GateChain, gated: CapacityMarket) -> None:
    # DAY's gate is still ahead: settlement needs neither a closed gate nor a clearing.
    chain, enterprise = gated.chain, gate_chain.enterprise
    assert chain.latest_timestamp() < gate_chain.gate
    expected = []
    for run_number, kind in enumerate(("initial", "final", "rerun"), start=1):
        hashes = anchors(kind)
        receipt = gated.publish_settlement(ADMIN, DAY, run_number, kind, *hashes, run_number)
        expected.append((receipt, run_number, kind, hashes))
    month_hashes = (b"\x00" * 32, *anchors("month")[1:])
    month = gated.publish_settlement(ADMIN, MONTH, 1, "monthly", *month_hashes, 30)
    print(f"publishSettlement gas on anvil: {[r.gas_used for r, *_ in expected]}, "
          f"monthly {month.gas_used}")

    assert gated.settlement_run_count(DAY) == 3
    assert [gated.settlement_run(DAY, n) for n in (1, 2, 3)] == [
        SettlementRunRecord(DAY, n, kind, *hashes, n, r.block_number, ADMIN.address)
        for r, n, kind, hashes in expected]
    assert gated.settlement_events(DAY) == [
        SettlementEvent(DAY, n, kind, *hashes, n, ADMIN.address, r.block_number, 0, r.tx_hash)
        for r, n, kind, hashes in expected]
    assert gated.settlement_events(MONTH) == [SettlementEvent(
        MONTH, 1, "monthly", *month_hashes, 30, ADMIN.address, month.block_number, 0,
        month.tx_hash)]

    before = (gated.settlement_events(DAY), gated.settlement_events(MONTH))
    block = chain.block_number()
    refusals: list[tuple[Call, str, dict[str, object]]] = [
        (lambda m, e: m.publish_settlement(ADMIN, DAY, 3, "rerun", *anchors("rerun"), 3),
         "CapacityMarketWrongSettlementRun", {"periodId": DAY, "expectedRun": 4,
                                              "runNumber": 3}),
        (lambda m, e: m.publish_settlement(ADMIN, DAY, 5, "rerun", *anchors("skip"), 3),
         "CapacityMarketWrongSettlementRun", {"periodId": DAY, "expectedRun": 4,
                                              "runNumber": 5}),
        (lambda m, e: m.publish_settlement(ADMIN, DAY, 4, "monthly", *anchors("m"), 3),
         "CapacityMarketInvalidSettlementKind", {"periodId": DAY, "kind": 4}),
        (lambda m, e: m.publish_settlement(ADMIN, MONTH, 2, "final", *anchors("m"), 3),
         "CapacityMarketInvalidSettlementKind", {"periodId": MONTH, "kind": 2}),
        (lambda m, e: m.publish_settlement(ADMIN, 20251300, 1, "monthly", *anchors("m"), 3),
         "CapacityMarketInvalidPeriod", {"periodId": 20251300}),
        (lambda m, e: m.publish_settlement(ADMIN, DAY, 4, "rerun", b"\x00" * 32,
                                           *anchors("z")[1:], 3),
         "CapacityMarketInvalidSettlementHash", {"periodId": DAY, "runNumber": 4}),
        (lambda m, e: m.publish_settlement(e, DAY, 4, "rerun", *anchors("e"), 3),
         "AccessControlUnauthorizedAccount", {"account": enterprise.address,
                                              "neededRole": "0x" + h("CLEARING_ROLE").hex()}),
    ]
    for call, name, args in refusals:
        with pytest.raises(ChainRevertError) as caught:
            call(gated, enterprise)
        assert (caught.value.error_name, caught.value.error_args) == (name, args)
    assert chain.block_number() == block
    assert (gated.settlement_events(DAY), gated.settlement_events(MONTH)) == before


# =========================================================================== the node

def test_concurrent_sends_from_one_key_get_distinct_nonces(node: AnvilNode) -> None:
    chain = connect(node.url)
    targets = [Account.create().address for _ in range(12)]
    receipts: list[object] = []
    errors: list[BaseException] = []

    def pay(address: str) -> None:
        try:
            receipts.append(chain.fund(ADMIN, address, 10**15))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=pay, args=(address,)) for address in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert len(receipts) == len(targets)
    assert all(chain.balance_of(address) == 10**15 for address in targets)
    assert chain.w3.eth.get_transaction_count(ADMIN.address) == len(targets)


def test_a_nonce_taken_by_another_process_is_resynced_or_retried(node: AnvilNode,
                                                                  monkeypatch) -> None:
    """Two processes sending with one key count nonces apart: the one whose count went
    stale re-reads it from the node; if that is taken again before it sends, the write is
    refused as retryable (ChainTimeoutError) with nothing sent, never as a failure."""
    first, second = connect(node.url), connect(node.url)  # as two worker processes
    first.fund(ADMIN, Account.create().address, 1)
    second.fund(ADMIN, Account.create().address, 1)  # takes the nonce `first` counts on next
    first.fund(ADMIN, Account.create().address, 1)  # stale: re-read from the node, then sent
    assert first.w3.eth.get_transaction_count(ADMIN.address) == 3

    second.fund(ADMIN, Account.create().address, 1)
    # The re-read answer is stale as well (the other process sent again in between).
    monkeypatch.setattr(type(first.w3.eth), "get_transaction_count", lambda *_args: 2)
    with pytest.raises(ChainTimeoutError, match="taken by another transaction"):
        first.fund(ADMIN, Account.create().address, 1)
    monkeypatch.undo()
    assert first.w3.eth.get_transaction_count(ADMIN.address, "pending") == 4  # nothing sent
    first.fund(ADMIN, Account.create().address, 1)  # tried again: goes through
    assert first.w3.eth.get_transaction_count(ADMIN.address) == 5


def test_a_forked_worker_process_opens_its_own_node_connection(node: AnvilNode,
                                                                tmp_path: Path) -> None:
    """Sharing the parent's keep-alive connection, two worker processes would read each
    other's answers."""
    from celery.signals import worker_process_init

    from parkgrid import tasks
    from parkgrid.config import Settings
    from parkgrid.wiring import Platform

    platform = Platform(Settings(data_dir=tmp_path, chain_url=node.url,
                                 secret_key="fork-test").with_defaults())
    tasks.configure(platform.settings, platform)
    inherited = platform.chain
    assert platform.chain is inherited
    worker_process_init.send(sender=None)  # what Celery sends in a new worker process
    assert platform.chain is not inherited and platform.chain.block_number() >= 0


def test_unmined_transaction_times_out(node: AnvilNode) -> None:
    chain = connect(node.url)
    rpc(chain, "evm_setAutomine", False)
    try:
        with pytest.raises(ChainTimeoutError, match="not mined within 0.5 s"):
            chain.send(ADMIN, to=Account.create().address, value=1, timeout=0.5)
    finally:
        rpc(chain, "evm_setAutomine", True)


def test_stopped_node_is_reported_unavailable(tmp_path: Path) -> None:
    node = AnvilNode(state_file=tmp_path / "state.json").start()
    chain = connect(node.url)
    assert isinstance(chain, JsonRpcChain)
    node.stop()
    with pytest.raises(ChainUnavailableError, match=node.url):
        chain.block_number()


def test_missing_anvil_binary_says_to_run_make_setup(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        AnvilNode(executable=tmp_path / "anvil", log_file=tmp_path / "anvil.log").start()
