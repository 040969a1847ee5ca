"""The chain adapter against a real anvil node: persistence across restarts, resets, timeouts."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from parkgrid.chain import (
    ANVIL_DEFAULT_KEY,
    AnvilNode,
    CapacityMarket,
    ChainResetError,
    ChainTimeoutError,
    ChainUnavailableError,
    JsonRpcChain,
    connect,
    enterprise_key,
)
from parkgrid.chain.anvil import ANVIL_EXECUTABLE

pytestmark = pytest.mark.integration

DAY = 20250615


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


@pytest.fixture
def admin() -> LocalAccount:
    return Account.from_key(ANVIL_DEFAULT_KEY)


def test_listing_survives_a_restart_with_state_and_a_reset_is_detected(
        tmp_path: Path, admin: LocalAccount) -> None:
    state = tmp_path / "state.json"
    listing_id, content_hash = os.urandom(32), os.urandom(32)
    enterprise = Account.create()
    enterprise_id = enterprise_key("E-001")

    with AnvilNode(state_file=state) as node:
        chain = connect(node.url)
        chain_id = chain.chain_id()
        market, _ = CapacityMarket.deploy(chain, admin)
        market.register_enterprise(admin, enterprise_id, enterprise.address)
        chain.fund(admin, enterprise.address, 10**18)
        receipt = market.record_listing(enterprise, listing_id, enterprise_id, DAY,
                                        content_hash)
        record = market.listing(listing_id)
        assert record is not None
        assert (record.enterprise_id, record.delivery_day, record.content_hash) == (
            enterprise_id, DAY, content_hash)
        assert (record.tx_hash, record.block_number, record.account) == (
            receipt.tx_hash, receipt.block_number, enterprise.address)
        market.verify(chain_id)
    assert state.stat().st_size > 0  # written on a graceful stop

    with AnvilNode(state_file=state) as node:
        market = CapacityMarket(connect(node.url), market.address)
        market.verify(chain_id)
        again = market.listing(listing_id)
        assert again is not None
        assert (again.content_hash, again.block_number, again.tx_hash) == (
            content_hash, receipt.block_number, receipt.tx_hash)
        # The restarted node keeps the nonces too: the enterprise can go on recording.
        market.record_listing(enterprise, os.urandom(32), enterprise_id, DAY, os.urandom(32))

    # Same URL, but no state: a reset chain.
    with AnvilNode(port=node.port, log_file=tmp_path / "fresh.log") as fresh:
        market = CapacityMarket(connect(fresh.url), market.address)
        with pytest.raises(ChainResetError, match="no code at that address"):
            market.verify(chain_id)
        with pytest.raises(ChainResetError):
            market.listing(listing_id)


def test_other_chain_id_is_detected(tmp_path: Path, admin: LocalAccount) -> None:
    with AnvilNode(chain_id=31337, log_file=tmp_path / "first.log") as node:
        market, _ = CapacityMarket.deploy(connect(node.url), admin)
    with AnvilNode(chain_id=31338, port=node.port, log_file=tmp_path / "other.log") as other:
        with pytest.raises(ChainResetError, match="expected chain id 31337"):
            CapacityMarket(connect(other.url), market.address).verify(31337)


def test_concurrent_sends_from_one_key_get_distinct_nonces(
        node: AnvilNode, admin: LocalAccount) -> None:
    chain = connect(node.url)
    targets = [Account.create().address for _ in range(12)]
    receipts: list[object] = []
    errors: list[BaseException] = []

    def pay(address: str) -> None:
        try:
            receipts.append(chain.fund(admin, address, 10**15))
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
    assert chain.w3.eth.get_transaction_count(admin.address) == len(targets)


def test_unmined_transaction_times_out(node: AnvilNode, admin: LocalAccount) -> None:
    chain = connect(node.url)
    chain.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        with pytest.raises(ChainTimeoutError, match="not mined within 0.5 s"):
            chain.send(admin, to=Account.create().address, value=1, timeout=0.5)
    finally:
        chain.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def test_stopped_node_is_reported_unavailable(tmp_path: Path) -> None:
    node = AnvilNode(state_file=tmp_path / "state.json").start()
    chain = connect(node.url)
    assert isinstance(chain, JsonRpcChain)
    node.stop()
    with pytest.raises(ChainUnavailableError, match=node.url):
        chain.block_number()


def test_missing_anvil_binary_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        AnvilNode(executable=tmp_path / "anvil", log_file=tmp_path / "anvil.log").start()
