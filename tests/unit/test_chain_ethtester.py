"""The chain adapter and the CapacityMarket contract on the in-process eth-tester chain."""

from __future__ import annotations

import pickle
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

import parkgrid.chain.market as market_module
from parkgrid.canonical import uuid_to_bytes32
from parkgrid.chain import (
    SETTLEMENT_KINDS,
    BatchRecord,
    CapacityMarket,
    ChainError,
    ChainResetError,
    ChainRevertError,
    ChainUnavailableError,
    DayRecord,
    EthTesterChain,
    OrderRecord,
    Receipt,
    RunRecord,
    SettlementEvent,
    SettlementRunRecord,
    connect,
    enterprise_key,
    free_port,
    load_artefact,
)
from parkgrid.chain.connection import ChainConnection
from parkgrid.chain.errors import REVERT_MESSAGES, decode_revert
from parkgrid.chain.market import role_id

GAS_BUDGET_RECORD_ORDER = 75_000
GAS_BUDGET_BATCH_ITEM = 5_000  # per item, in a batch of 100
# Not a product budget: a ceiling that catches a layout regression. Six new storage slots
# (~133k) plus the transaction, calldata, the event and the period's run count.
GAS_CEILING_PUBLISH_SETTLEMENT = 190_000

OPEN_DAY = 20250615  # open for orders: its gate is a month ahead
CLOSED_DAY = 20250614  # past its gate, nothing recorded: ready to be cleared
PUBLISHED_DAY = 20250613  # past its gate, run 1 published with one trade
GATE_DAY = 20250617  # gate an hour after CLOSED_DAY's: the gate tests move time up to it
NEW_DAY = 20250616  # never opened
MONTH = 20250600  # June 2025, for monthly settlement runs
ZERO32 = b"\x00" * 32


def h(label: str) -> bytes:
    """A fixed bytes32 for `label`: ids and hashes are reproducible, and so is gas."""
    return keccak(text=label)


def platform_id(label: str) -> bytes:
    """A fixed order or batch id shaped like the platform's: a UUID left-padded to bytes32."""
    return uuid_to_bytes32(str(uuid.uuid5(uuid.NAMESPACE_URL, "parkgrid-test:" + label)))


STANDING_ORDER = h("standing order")  # sell order of `enterprise` on OPEN_DAY, version 1
GATE_ORDER = h("gate order")  # buy order of `enterprise` on GATE_DAY, version 1
NEW_ORDER, NEW_BATCH, NEW_ENTERPRISE = h("new order"), h("new batch"), enterprise_key("E-NEW")
PUBLISHED_ROOT = h("published root")
PUBLISHED_TRADE = CapacityMarket.trade_item(STANDING_ORDER, 40, -12_345, h("published detail"))

ACTORS = ("admin", "registrar", "market_operator", "clearing", "enterprise",
          "other_enterprise", "stranger")
ORDER_FUNCTIONS = ("recordOrder", "amendOrder", "cancelOrder", "recordOrderBatch")


@dataclass
class World:
    enterprise_id: ClassVar[bytes] = enterprise_key("E-001")  # bound to actors["enterprise"]
    other_enterprise_id: ClassVar[bytes] = enterprise_key("E-002")  # to "other_enterprise"

    chain: EthTesterChain
    market: CapacityMarket
    deployer: LocalAccount  # holds DEFAULT_ADMIN_ROLE, REGISTRAR_ROLE, MARKET_OPERATOR_ROLE
    actors: dict[str, LocalAccount]  # each holds one role, or is an enterprise's account
    newcomer: LocalAccount  # funded, no role, bound to no enterprise
    closed_gate: int  # gate of CLOSED_DAY and PUBLISHED_DAY
    gate: int  # gate of GATE_DAY
    published_block: int

    @property
    def enterprise(self) -> LocalAccount:
        return self.actors["enterprise"]

    @property
    def clearing(self) -> LocalAccount:
        return self.actors["clearing"]


@pytest.fixture(scope="module")
def world() -> World:
    chain = EthTesterChain()
    deployer = chain.funded_account(0)
    market, _ = CapacityMarket.deploy(chain, deployer)
    # eth-tester's prefunded accounts: no funding transactions needed.
    actors = {name: chain.funded_account(i) for i, name in enumerate(ACTORS, start=1)}
    for name, role in (("admin", "DEFAULT_ADMIN_ROLE"), ("registrar", "REGISTRAR_ROLE"),
                       ("market_operator", "MARKET_OPERATOR_ROLE"),
                       ("clearing", "CLEARING_ROLE")):
        market.grant_role(deployer, role, actors[name].address)
    market.register_enterprise(deployer, World.enterprise_id, actors["enterprise"].address)
    market.register_enterprise(deployer, World.other_enterprise_id,
                               actors["other_enterprise"].address)
    now = chain.latest_timestamp()
    market.open_day(deployer, OPEN_DAY, now + 30 * 86_400)
    closed_gate = now + 60
    for day in (CLOSED_DAY, PUBLISHED_DAY):
        market.open_day(deployer, day, closed_gate)
    market.open_day(deployer, GATE_DAY, closed_gate + 3_600)
    market.record_order(actors["enterprise"], STANDING_ORDER, World.enterprise_id, OPEN_DAY,
                        "sell", h("standing v1"))
    market.record_order(actors["enterprise"], GATE_ORDER, World.enterprise_id, GATE_DAY,
                        "buy", h("gate order v1"))
    chain.set_next_block_timestamp(closed_gate)
    market.record_trades(actors["clearing"], PUBLISHED_DAY, 1, [PUBLISHED_TRADE])
    published = market.publish_clearing(actors["clearing"], PUBLISHED_DAY, 1, PUBLISHED_ROOT, 1)
    return World(chain, market, deployer, actors, chain.funded_account(8), closed_gate,
                 closed_gate + 3_600, published.block_number)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    # Every test starts from the state right after the module's setup.
    snapshot = world.chain.snapshot()
    yield world
    world.chain.revert_to(snapshot)


def send(w: World, signer: LocalAccount, function: str, *args: Any) -> Receipt:
    """Send a contract function the client has no method for."""
    return w.chain.send(signer, getattr(w.market.contract.functions, function)(*args))


def events(w: World, name: str, receipt: Receipt) -> list[dict[str, Any]]:
    """The decoded `name` events of a receipt, as plain dicts of their arguments."""
    found = getattr(w.market.contract.events, name)().process_receipt(
        {"logs": receipt.logs}, errors=DISCARD)  # other events of the receipt are skipped
    return [dict(event["args"]) for event in found]


def refused(w: World, call: Callable[[], object]) -> ChainRevertError:
    """Run `call`, expect a revert, and check that nothing was mined."""
    block = w.chain.block_number()
    with pytest.raises(ChainRevertError) as caught:
        call()
    assert w.chain.block_number() == block
    return caught.value


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


def timestamp_of(w: World, receipt: Receipt) -> int:
    return int(w.chain.w3.eth.get_block(receipt.block_number)["timestamp"])


# =========================================================================== roles

@dataclass(frozen=True)
class Case:
    """One state-changing contract function: who may call it, a call, what it changes."""

    allowed: str  # the one actor of ACTORS allowed to make this call
    guard: str  # the role it needs, "enterprise account", or "self" (renounceRole)
    attempt: Callable[[World, LocalAccount], object]
    probe: Callable[[World], object]


def _order_probe(w: World) -> object:
    return w.market.order(STANDING_ORDER)


CASES: dict[str, Case] = {
    "registerEnterprise": Case(
        "registrar", "REGISTRAR_ROLE",
        lambda w, a: w.market.register_enterprise(a, NEW_ENTERPRISE, w.newcomer.address),
        lambda w: (w.market.account_of(NEW_ENTERPRISE),
                   w.market.enterprise_of(w.newcomer.address))),
    "openDay": Case(
        "market_operator", "MARKET_OPERATOR_ROLE",
        lambda w, a: w.market.open_day(a, NEW_DAY, w.closed_gate + 3_600),
        lambda w: w.market.day(NEW_DAY)),
    "recordOrder": Case(
        "enterprise", "enterprise account",
        lambda w, a: w.market.record_order(a, NEW_ORDER, w.enterprise_id, OPEN_DAY, "buy",
                                           h("new order v1")),
        lambda w: w.market.order(NEW_ORDER)),
    "amendOrder": Case(
        "enterprise", "enterprise account",
        lambda w, a: w.market.amend_order(a, STANDING_ORDER, h("standing v2")), _order_probe),
    "cancelOrder": Case(
        "enterprise", "enterprise account",
        lambda w, a: w.market.cancel_order(a, STANDING_ORDER), _order_probe),
    "recordOrderBatch": Case(
        "enterprise", "enterprise account",
        lambda w, a: w.market.record_order_batch(
            a, NEW_BATCH, w.enterprise_id, OPEN_DAY, [(h("batched"), "new", "buy", h("b1"))]),
        lambda w: w.market.batch(NEW_BATCH)),
    "recordTrades": Case(
        "clearing", "CLEARING_ROLE",
        lambda w, a: w.market.record_trades(a, CLOSED_DAY, 1, [PUBLISHED_TRADE]),
        lambda w: (w.market.clearing_run(CLOSED_DAY, 1), w.market.trade_events(CLOSED_DAY, 1))),
    "publishClearing": Case(
        "clearing", "CLEARING_ROLE",
        lambda w, a: w.market.publish_clearing(a, CLOSED_DAY, 1, h("closed root"), 0),
        lambda w: w.market.day(CLOSED_DAY)),
    "voidClearing": Case(
        "clearing", "CLEARING_ROLE",
        lambda w, a: w.market.void_clearing(a, PUBLISHED_DAY, 1, "meter data corrected"),
        lambda w: (w.market.day(PUBLISHED_DAY), w.market.clearing_run(PUBLISHED_DAY, 1))),
    "grantRole": Case(
        "admin", "DEFAULT_ADMIN_ROLE",
        lambda w, a: w.market.grant_role(a, "CLEARING_ROLE", w.newcomer.address),
        lambda w: w.market.has_role("CLEARING_ROLE", w.newcomer.address)),
    "revokeRole": Case(
        "admin", "DEFAULT_ADMIN_ROLE",
        lambda w, a: send(w, a, "revokeRole", role_id("CLEARING_ROLE"), w.clearing.address),
        lambda w: w.market.has_role("CLEARING_ROLE", w.clearing.address)),
    # Only a role's holder may renounce it: here, clearing staff renouncing their own role.
    "publishSettlement": Case(
        "clearing", "CLEARING_ROLE",
        lambda w, a: w.market.publish_settlement(a, NEW_DAY, 1, "initial", *anchors("matrix"),
                                                 12),
        lambda w: (w.market.settlement_run_count(NEW_DAY), w.market.settlement_run(NEW_DAY, 1))),
    "renounceRole": Case(
        "clearing", "self",
        lambda w, a: send(w, a, "renounceRole", role_id("CLEARING_ROLE"), w.clearing.address),
        lambda w: w.market.has_role("CLEARING_ROLE", w.clearing.address)),
}


def test_the_matrix_covers_every_state_changing_function() -> None:
    abi = load_artefact("CapacityMarket")["abi"]
    writes = {e["name"] for e in abi
              if e["type"] == "function" and e["stateMutability"] not in ("view", "pure")}
    assert writes == set(CASES)


def expected_refusal(w: World, case: Case, actor: LocalAccount) -> tuple[str, dict[str, Any]]:
    if case.guard == "self":
        return "AccessControlBadConfirmation", {}
    if case.guard == "enterprise account":
        return "CapacityMarketNotEnterpriseAccount", {"enterpriseId": hex32(w.enterprise_id),
                                                      "account": actor.address}
    return "AccessControlUnauthorizedAccount", {"account": actor.address,
                                                "neededRole": hex32(role_id(case.guard))}


@pytest.mark.parametrize(("function", "actor"),
                         [pytest.param(f, a, id=f"{f}-{a}") for f in CASES for a in ACTORS])
def test_role_matrix(w: World, function: str, actor: str) -> None:
    case, signer = CASES[function], w.actors[actor]
    if actor == case.allowed:
        before = case.probe(w)
        case.attempt(w, signer)  # raises on a revert
        assert case.probe(w) != before
        return
    before = case.probe(w)
    error = refused(w, lambda: case.attempt(w, signer))
    assert (error.error_name, error.error_args) == expected_refusal(w, case, signer)
    assert case.probe(w) == before


def test_deploy_makes_the_deployer_admin_registrar_and_market_operator(w: World) -> None:
    for role in ("DEFAULT_ADMIN_ROLE", "REGISTRAR_ROLE", "MARKET_OPERATOR_ROLE"):
        assert w.market.has_role(role, w.deployer.address)
    assert not w.market.has_role("CLEARING_ROLE", w.deployer.address)
    assert not w.market.has_role("REGISTRAR_ROLE", w.newcomer.address)
    w.market.verify(w.chain.chain_id())  # the code at the address is this build


@pytest.mark.parametrize("function", ORDER_FUNCTIONS)
def test_the_platform_operator_cannot_act_for_an_enterprise(w: World, function: str) -> None:
    # The deployer holds every platform role; none of them lets it touch an enterprise's orders.
    w.market.grant_role(w.deployer, "CLEARING_ROLE", w.deployer.address)
    case = CASES[function]
    before = case.probe(w)
    error = refused(w, lambda: case.attempt(w, w.deployer))
    assert (error.error_name, error.error_args) == expected_refusal(w, case, w.deployer)
    assert case.probe(w) == before


# =========================================================================== enterprises

def test_enterprise_key_is_a_namespaced_hash() -> None:
    assert enterprise_key("E-001") == keccak(text="parkgrid:enterprise:E-001")
    assert len(enterprise_key("E-001")) == 32
    assert enterprise_key("E-001") != enterprise_key("E-002")


def test_register_enterprise_binds_account_both_ways(w: World) -> None:
    receipt = w.market.register_enterprise(w.deployer, NEW_ENTERPRISE, w.newcomer.address)

    assert w.market.account_of(NEW_ENTERPRISE) == w.newcomer.address
    assert w.market.enterprise_of(w.newcomer.address) == NEW_ENTERPRISE
    assert events(w, "EnterpriseRegistered", receipt) == [{
        "enterpriseId": NEW_ENTERPRISE, "account": w.newcomer.address,
        "previousAccount": "0x" + "00" * 20}]


def test_an_account_serves_one_enterprise(w: World) -> None:
    error = refused(w, lambda: w.market.register_enterprise(w.deployer, NEW_ENTERPRISE,
                                                            w.enterprise.address))
    assert error.error_name == "CapacityMarketAccountAlreadyRegistered"
    assert error.error_args == {"account": w.enterprise.address,
                                "enterpriseId": hex32(w.enterprise_id)}
    assert w.market.account_of(NEW_ENTERPRISE) is None


@pytest.mark.parametrize("function", ORDER_FUNCTIONS)
def test_rebinding_an_enterprise_account_retires_the_old_one(w: World, function: str) -> None:
    old, new = w.enterprise, w.newcomer
    receipt = w.market.register_enterprise(w.deployer, w.enterprise_id, new.address)
    assert events(w, "EnterpriseRegistered", receipt)[0]["previousAccount"] == old.address
    assert w.market.account_of(w.enterprise_id) == new.address
    assert w.market.enterprise_of(old.address) == w.enterprise_id  # history stays readable

    case = CASES[function]
    before = case.probe(w)
    error = refused(w, lambda: case.attempt(w, old))
    assert (error.error_name, error.error_args) == expected_refusal(w, case, old)
    assert case.probe(w) == before
    # The new account acts for the enterprise, on orders the old one placed too.
    case.attempt(w, new)
    assert case.probe(w) != before


# =========================================================================== days

def test_open_day_emits_and_reads_back(w: World) -> None:
    assert w.market.day(NEW_DAY) is None
    gate = w.chain.latest_timestamp() + 3_600
    receipt = w.market.open_day(w.deployer, NEW_DAY, gate)
    assert events(w, "DayOpened", receipt) == [
        {"deliveryDay": NEW_DAY, "gateClosure": gate, "operator": w.deployer.address}]
    assert w.market.day(NEW_DAY) == DayRecord(NEW_DAY, gate, 1, False, ZERO32, 0)


def test_a_day_opens_once(w: World) -> None:
    gate = w.market.day(OPEN_DAY).gate_closure  # type: ignore[union-attr]
    error = refused(w, lambda: w.market.open_day(w.deployer, OPEN_DAY, gate + 1))
    assert error.error_name == "CapacityMarketDayAlreadyOpen"
    assert error.error_args == {"deliveryDay": OPEN_DAY, "gateClosure": gate}
    assert w.market.day(OPEN_DAY).gate_closure == gate  # type: ignore[union-attr]


@pytest.mark.parametrize("day", [0, 20251301, 20250100, 20250132, 2025061, 1718409600])
def test_delivery_day_must_look_like_yyyymmdd(w: World, day: int) -> None:
    error = refused(w, lambda: w.market.open_day(w.deployer, day, w.closed_gate + 3_600))
    assert (error.error_name, error.error_args) == (
        "CapacityMarketInvalidDeliveryDay", {"deliveryDay": day})


@pytest.mark.parametrize("offset", [-1, 0, "milliseconds"])
def test_gate_closure_must_be_a_future_time_in_seconds(w: World, offset: int | str) -> None:
    now = w.chain.latest_timestamp()
    # The estimate runs in a block one second after the latest: that second is not future.
    gate = now * 1000 if offset == "milliseconds" else now + 1 + int(offset)
    error = refused(w, lambda: w.market.open_day(w.deployer, NEW_DAY, gate))
    assert (error.error_name, error.error_args) == (
        "CapacityMarketInvalidGateClosure", {"deliveryDay": NEW_DAY, "gateClosure": gate})
    assert w.market.day(NEW_DAY) is None


# =========================================================================== orders

@pytest.mark.parametrize("side", ["sell", "buy"])
def test_record_order_emits_event_and_is_readable(w: World, side: str) -> None:
    before = w.chain.block_number()
    receipt = w.market.record_order(w.enterprise, NEW_ORDER, w.enterprise_id, OPEN_DAY, side,
                                    h("content"))

    assert receipt.status == 1 and receipt.block_number == before + 1
    # The signer is not in the event: it is the transaction's sender, read with the record.
    assert events(w, "OrderRecorded", receipt) == [{
        "orderId": NEW_ORDER, "enterpriseId": w.enterprise_id, "deliveryDay": OPEN_DAY,
        "side": ("sell", "buy").index(side), "contentHash": h("content")}]
    assert w.market.order(NEW_ORDER) == OrderRecord(
        NEW_ORDER, w.enterprise_id, OPEN_DAY, side, 1, False, h("content"),
        receipt.block_number, receipt.tx_hash, w.enterprise.address)


def test_unknown_order_reads_as_none(w: World) -> None:
    assert w.market.order(NEW_ORDER) is None


def test_recording_an_order_twice_reverts_and_changes_nothing(w: World) -> None:
    first = w.market.order(STANDING_ORDER)
    for account, enterprise_id in ((w.enterprise, w.enterprise_id),
                                   (w.actors["other_enterprise"], w.other_enterprise_id)):
        error = refused(w, lambda a=account, e=enterprise_id: w.market.record_order(
            a, STANDING_ORDER, e, OPEN_DAY, "buy", h("replayed")))
        assert error.error_name == "CapacityMarketOrderExists"
        assert error.error_args == {"orderId": hex32(STANDING_ORDER)}
        assert str(error).startswith(f"CapacityMarketOrderExists: order "
                                     f"{hex32(STANDING_ORDER)} is already recorded")
    assert w.market.order(STANDING_ORDER) == first
    # The revert surfaced at gas estimation, so the nonce was not used up.
    w.market.record_order(w.enterprise, NEW_ORDER, w.enterprise_id, OPEN_DAY, "sell", h("c"))


def test_amending_raises_the_version_and_keeps_the_rest(w: World) -> None:
    w.market.amend_order(w.enterprise, STANDING_ORDER, h("standing v2"))
    receipt = w.market.amend_order(w.enterprise, STANDING_ORDER, h("standing v3"))

    assert events(w, "OrderAmended", receipt) == [{
        "orderId": STANDING_ORDER, "enterpriseId": w.enterprise_id, "deliveryDay": OPEN_DAY,
        "version": 3, "contentHash": h("standing v3")}]
    assert w.market.order(STANDING_ORDER) == OrderRecord(
        STANDING_ORDER, w.enterprise_id, OPEN_DAY, "sell", 3, False, h("standing v3"),
        receipt.block_number, receipt.tx_hash, w.enterprise.address)


def test_a_cancelled_order_cannot_change_any_more(w: World) -> None:
    w.market.amend_order(w.enterprise, STANDING_ORDER, h("standing v2"))
    receipt = w.market.cancel_order(w.enterprise, STANDING_ORDER)
    assert events(w, "OrderCancelled", receipt) == [{
        "orderId": STANDING_ORDER, "enterpriseId": w.enterprise_id, "deliveryDay": OPEN_DAY,
        "version": 2}]
    cancelled = w.market.order(STANDING_ORDER)
    assert cancelled == OrderRecord(
        STANDING_ORDER, w.enterprise_id, OPEN_DAY, "sell", 2, True, h("standing v2"),
        receipt.block_number, receipt.tx_hash, w.enterprise.address)

    for call, name in (
        (lambda: w.market.amend_order(w.enterprise, STANDING_ORDER, h("v3")),
         "CapacityMarketOrderCancelled"),
        (lambda: w.market.cancel_order(w.enterprise, STANDING_ORDER),
         "CapacityMarketOrderCancelled"),
        (lambda: w.market.record_order(w.enterprise, STANDING_ORDER, w.enterprise_id,
                                       OPEN_DAY, "sell", h("v1 again")),
         "CapacityMarketOrderExists"),
    ):
        assert refused(w, call).error_name == name
    assert w.market.order(STANDING_ORDER) == cancelled


@pytest.mark.parametrize("function", ["amend", "cancel"])
def test_only_recorded_orders_can_change(w: World, function: str) -> None:
    def call() -> object:
        if function == "amend":
            return w.market.amend_order(w.enterprise, NEW_ORDER, h("v2"))
        return w.market.cancel_order(w.enterprise, NEW_ORDER)

    error = refused(w, call)
    assert (error.error_name, error.error_args) == (
        "CapacityMarketUnknownOrder", {"orderId": hex32(NEW_ORDER)})
    assert w.market.order(NEW_ORDER) is None


# =========================================================================== batches

def test_record_order_batch_emits_items_in_order_and_stores_only_the_batch(w: World) -> None:
    items = [(h("a"), "new", "buy", h("a1")), (h("b"), "amend", "sell", h("b2")),
             (h("c"), "cancel", "buy", None)]
    receipt = w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id, OPEN_DAY,
                                          items)

    assert events(w, "OrderActionBatched", receipt) == [
        {"batchId": NEW_BATCH, "orderId": order_id, "action": ("new", "amend", "cancel").index(
            action), "side": ("sell", "buy").index(side), "contentHash": content or ZERO32}
        for order_id, action, side, content in items]
    assert events(w, "OrderBatchRecorded", receipt) == [{
        "batchId": NEW_BATCH, "enterpriseId": w.enterprise_id, "deliveryDay": OPEN_DAY,
        "count": 3, "account": w.enterprise.address}]
    # The summary comes after the items.
    assert len(receipt.logs) == 4
    w.market.contract.events.OrderBatchRecorded().process_log(receipt.logs[-1])
    assert w.market.batch(NEW_BATCH) == BatchRecord(
        NEW_BATCH, w.enterprise_id, OPEN_DAY, w.enterprise.address, receipt.tx_hash,
        receipt.block_number, tuple((o, a, s, c or ZERO32) for o, a, s, c in items))
    assert w.market.order(h("a")) is None  # batched orders live in events only


def test_recording_a_batch_twice_reverts_and_changes_nothing(w: World) -> None:
    w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id, OPEN_DAY,
                                [(h("a"), "new", "buy", h("a1"))])
    first = w.market.batch(NEW_BATCH)
    assert first is not None and len(first.items) == 1
    for account, enterprise_id in ((w.enterprise, w.enterprise_id),
                                   (w.actors["other_enterprise"], w.other_enterprise_id)):
        error = refused(w, lambda a=account, e=enterprise_id: w.market.record_order_batch(
            a, NEW_BATCH, e, OPEN_DAY, [(h("z"), "new", "sell", h("z1"))]))
        assert (error.error_name, error.error_args) == (
            "CapacityMarketBatchExists", {"batchId": hex32(NEW_BATCH)})
    assert w.market.batch(NEW_BATCH) == first


def test_unknown_batch_reads_as_none(w: World) -> None:
    assert w.market.batch(NEW_BATCH) is None


def test_a_batch_whose_events_are_gone_is_reported(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id, OPEN_DAY,
                                [(h("a"), "new", "buy", h("a1"))])
    # As on a node that has pruned old logs: the getter knows the batch, the logs are empty.
    for name in ("OrderBatchRecorded", "OrderActionBatched"):
        monkeypatch.setattr(getattr(w.market.contract.events, name), "get_logs",
                            lambda **kwargs: [])
    with pytest.raises(ChainResetError, match="shows 0 summary and 0 item events"):
        w.market.batch(NEW_BATCH)


# =========================================================================== bad input

def _bad_batch(w: World, batch_id: bytes, items: list[tuple[bytes, int, int, bytes]]) -> object:
    # Raw items, so shapes the client refuses can reach the contract.
    return send(w, w.enterprise, "recordOrderBatch", batch_id, w.enterprise_id, OPEN_DAY, items)


BAD_CALLS: dict[str, tuple[Callable[[World], object], str]] = {
    "order with zero content": (lambda w: w.market.record_order(
        w.enterprise, NEW_ORDER, w.enterprise_id, OPEN_DAY, "sell", ZERO32),
        "CapacityMarketInvalidOrder"),
    "order with zero id": (lambda w: w.market.record_order(
        w.enterprise, ZERO32, w.enterprise_id, OPEN_DAY, "sell", h("c")),
        "CapacityMarketInvalidOrder"),
    "order side 2": (lambda w: send(
        w, w.enterprise, "recordOrder", NEW_ORDER, w.enterprise_id, OPEN_DAY, 2, h("c")),
        "CapacityMarketInvalidSide"),
    "order on a day not open": (lambda w: w.market.record_order(
        w.enterprise, NEW_ORDER, w.enterprise_id, NEW_DAY, "sell", h("c")),
        "CapacityMarketDayNotOpen"),
    "order of an unregistered enterprise": (lambda w: w.market.record_order(
        w.enterprise, NEW_ORDER, NEW_ENTERPRISE, OPEN_DAY, "sell", h("c")),
        "CapacityMarketNotEnterpriseAccount"),
    "amendment with zero content": (lambda w: w.market.amend_order(
        w.enterprise, STANDING_ORDER, ZERO32), "CapacityMarketInvalidOrder"),
    "empty batch": (lambda w: _bad_batch(w, NEW_BATCH, []), "CapacityMarketInvalidBatch"),
    "batch with zero id": (lambda w: _bad_batch(w, ZERO32, [(h("a"), 0, 0, h("a1"))]),
                           "CapacityMarketInvalidBatch"),
    "batched new order without content": (lambda w: _bad_batch(
        w, NEW_BATCH, [(h("a"), 0, 0, h("a1")), (h("b"), 0, 1, ZERO32)]),
        "CapacityMarketInvalidOrderAction"),
    "batched action 3": (lambda w: _bad_batch(w, NEW_BATCH, [(h("a"), 3, 0, h("a1"))]),
                         "CapacityMarketInvalidOrderAction"),
    "batched side 2": (lambda w: _bad_batch(w, NEW_BATCH, [(h("a"), 0, 2, h("a1"))]),
                       "CapacityMarketInvalidOrderAction"),
    "batched zero order id": (lambda w: _bad_batch(w, NEW_BATCH, [(ZERO32, 0, 0, h("a1"))]),
                              "CapacityMarketInvalidOrderAction"),
    "batch on a day not open": (lambda w: w.market.record_order_batch(
        w.enterprise, NEW_BATCH, w.enterprise_id, NEW_DAY, [(h("a"), "new", "buy", h("a1"))]),
        "CapacityMarketDayNotOpen"),
    "zero enterprise id": (lambda w: w.market.register_enterprise(
        w.deployer, ZERO32, w.newcomer.address), "CapacityMarketInvalidEnterprise"),
    "zero enterprise account": (lambda w: w.market.register_enterprise(
        w.deployer, NEW_ENTERPRISE, "0x" + "00" * 20), "CapacityMarketInvalidEnterprise"),
    "trades of a day not open": (lambda w: w.market.record_trades(
        w.clearing, NEW_DAY, 1, [PUBLISHED_TRADE]), "CapacityMarketDayNotOpen"),
    "no trades": (lambda w: send(w, w.clearing, "recordTrades", CLOSED_DAY, 1, []),
                  "CapacityMarketNoTrades"),
    "trades of a later run": (lambda w: w.market.record_trades(
        w.clearing, CLOSED_DAY, 2, [PUBLISHED_TRADE]), "CapacityMarketWrongRun"),
    "zero result root": (lambda w: w.market.publish_clearing(
        w.clearing, CLOSED_DAY, 1, ZERO32, 0), "CapacityMarketInvalidResultRoot"),
    "publishing a later run": (lambda w: w.market.publish_clearing(
        w.clearing, CLOSED_DAY, 2, h("root"), 0), "CapacityMarketWrongRun"),
    "publishing a day not open": (lambda w: w.market.publish_clearing(
        w.clearing, NEW_DAY, 1, h("root"), 0), "CapacityMarketDayNotOpen"),
    "voiding without a reason": (lambda w: w.market.void_clearing(
        w.clearing, PUBLISHED_DAY, 1, ""), "CapacityMarketReasonRequired"),
    "voiding an unpublished run": (lambda w: w.market.void_clearing(
        w.clearing, CLOSED_DAY, 1, "why"), "CapacityMarketNotPublished"),
    "voiding a day not open": (lambda w: w.market.void_clearing(
        w.clearing, NEW_DAY, 1, "why"), "CapacityMarketDayNotOpen"),
    "voiding a later run": (lambda w: w.market.void_clearing(
        w.clearing, PUBLISHED_DAY, 2, "why"), "CapacityMarketWrongRun"),
    "voiding run 0": (lambda w: w.market.void_clearing(
        w.clearing, PUBLISHED_DAY, 0, "why"), "CapacityMarketWrongRun"),
}


@pytest.mark.parametrize("label", list(BAD_CALLS))
def test_bad_input_is_refused_with_its_error_and_changes_nothing(w: World, label: str) -> None:
    call, name = BAD_CALLS[label]
    assert refused(w, lambda: call(w)).error_name == name  # and nothing was mined


@pytest.mark.parametrize(("call", "message"), [
    (lambda w: w.market.record_order(w.enterprise, b"short", w.enterprise_id, OPEN_DAY,
                                     "sell", h("c")), "order_id must be 32 bytes"),
    (lambda w: w.market.record_order(w.enterprise, NEW_ORDER, w.enterprise_id, OPEN_DAY,
                                     "bid", h("c")), "side must be one of"),
    (lambda w: w.market.record_order(w.enterprise, NEW_ORDER, w.enterprise_id, 2**32,
                                     "sell", h("c")), "delivery_day must be an unsigned 32"),
    (lambda w: w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id,
                                           OPEN_DAY, [(h("a"), "delete", "sell", h("c"))]),
     "action must be one of"),
    (lambda w: w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id,
                                           OPEN_DAY, [(h("a"), "new", "sell", b"short")]),
     "content_hash must be 32 bytes"),
    (lambda w: w.market.trade_item(NEW_ORDER, 1, 2**63, h("d")), "does not fit in int64"),
    (lambda w: w.market.grant_role(w.deployer, "OWNER_ROLE", w.newcomer.address),
     "unknown role"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(
        w: World, call: Callable[[World], object], message: str) -> None:
    block = w.chain.block_number()
    with pytest.raises(ValueError, match=message):
        call(w)
    assert w.chain.block_number() == block


# =========================================================================== gate closure

GATED: dict[str, Callable[[World], object]] = {
    "recordOrder": lambda w: w.market.record_order(
        w.enterprise, NEW_ORDER, w.enterprise_id, GATE_DAY, "sell", h("late order")),
    "amendOrder": lambda w: w.market.amend_order(w.enterprise, GATE_ORDER, h("gate order v2")),
    "cancelOrder": lambda w: w.market.cancel_order(w.enterprise, GATE_ORDER),
    "recordOrderBatch": lambda w: w.market.record_order_batch(
        w.enterprise, NEW_BATCH, w.enterprise_id, GATE_DAY, [(h("a"), "new", "sell", h("a1"))]),
}
CLEARING: dict[str, Callable[[World], object]] = {
    "recordTrades": lambda w: w.market.record_trades(w.clearing, GATE_DAY, 1, [PUBLISHED_TRADE]),
    "publishClearing": lambda w: w.market.publish_clearing(w.clearing, GATE_DAY, 1,
                                                           h("gate root"), 0),
}


@pytest.fixture
def gate(w: World) -> int:
    """The gate of GATE_DAY, still ahead of the chain's clock."""
    assert w.chain.latest_timestamp() < w.gate - 1
    return w.gate


def gate_day_state(w: World) -> tuple[object, ...]:
    return (w.market.order(NEW_ORDER), w.market.order(GATE_ORDER), w.market.batch(NEW_BATCH),
            w.market.day(GATE_DAY), w.market.trade_events(GATE_DAY, 1))


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("function", list(GATED))
def test_orders_change_only_before_the_gate(
        w: World, gate: int, function: str, offset: int) -> None:
    before = gate_day_state(w)
    w.chain.set_next_block_timestamp(gate + offset)
    if offset < 0:
        GATED[function](w)
        assert w.chain.latest_timestamp() == gate - 1
        assert gate_day_state(w) != before
        return
    error = refused(w, lambda: GATED[function](w))
    assert (error.error_name, error.error_args) == ("CapacityMarketGateClosed", {
        "deliveryDay": GATE_DAY, "gateClosure": gate, "blockTimestamp": gate + offset})
    assert gate_day_state(w) == before


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("function", list(CLEARING))
def test_clearing_only_from_the_gate(w: World, gate: int, function: str, offset: int) -> None:
    before = gate_day_state(w)
    w.chain.set_next_block_timestamp(gate + offset)
    if offset >= 0:
        CLEARING[function](w)
        assert w.chain.latest_timestamp() == gate + offset
        assert gate_day_state(w) != before
        return
    error = refused(w, lambda: CLEARING[function](w))
    assert (error.error_name, error.error_args) == ("CapacityMarketGateOpen", {
        "deliveryDay": GATE_DAY, "gateClosure": gate, "blockTimestamp": gate - 1})
    assert gate_day_state(w) == before


def test_nothing_can_be_voided_before_the_gate(w: World, gate: int) -> None:
    # voidClearing needs a published run, and nothing can be published before the gate.
    error = refused(w, lambda: w.market.void_clearing(w.clearing, GATE_DAY, 1, "early"))
    assert (error.error_name, error.error_args) == (
        "CapacityMarketNotPublished", {"deliveryDay": GATE_DAY, "runNumber": 1})


def test_block_time_moves_forward_only(w: World) -> None:
    target = w.chain.latest_timestamp() + 500
    w.chain.set_next_block_timestamp(target)
    receipt = w.chain.fund(w.deployer, w.newcomer.address, 1)
    assert timestamp_of(w, receipt) == target == w.chain.latest_timestamp()
    with pytest.raises(ChainError, match=f"next block's time to {target - 10}"):
        w.chain.set_next_block_timestamp(target - 10)


# =========================================================================== clearing

def trades(label: str, count: int) -> list[tuple[bytes, int, int, bytes]]:
    # Alternate payers (+) and payees (-): amounts are signed on chain.
    return [CapacityMarket.trade_item(h(f"{label} order {i}"), 10 * (i + 1),
                                      (-1) ** i * 1_000 * (i + 1), h(f"{label} detail {i}"))
            for i in range(count)]


def as_tuples(found: list[market_module.TradeEvent]) -> list[tuple[bytes, int, int, bytes]]:
    return [(e.order_id, e.quantity, e.amount_fen, e.detail_hash) for e in found]


def test_trades_are_recorded_in_chunks_and_published_once(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market_module, "TRADES_PER_TX", 2)
    recorded = trades("closed", 5)
    receipts = w.market.record_trades(w.clearing, CLOSED_DAY, 1, recorded)

    blocks = [r.block_number for r in receipts]
    assert len(blocks) == 3
    assert [len(events(w, "TradeRecorded", r)) for r in receipts] == [2, 2, 1]
    contract = w.market.contract.functions
    assert w.chain.call(contract.runTradeBlocks(CLOSED_DAY, 1)) == blocks
    assert w.chain.call(contract.runTrades(CLOSED_DAY, 1)) == [5, blocks[0], blocks[-1]]
    assert as_tuples(w.market.trade_events(CLOSED_DAY, 1)) == recorded
    assert w.market.clearing_run(CLOSED_DAY, 1) == RunRecord(CLOSED_DAY, 1, False, False,
                                                             ZERO32, 5, 0, 0)

    error = refused(w, lambda: w.market.publish_clearing(w.clearing, CLOSED_DAY, 1,
                                                         h("root"), 4))
    assert (error.error_name, error.error_args) == ("CapacityMarketTradeCountMismatch", {
        "deliveryDay": CLOSED_DAY, "runNumber": 1, "recorded": 5, "given": 4})
    assert not w.market.clearing_run(CLOSED_DAY, 1).published

    receipt = w.market.publish_clearing(w.clearing, CLOSED_DAY, 1, h("root"), 5)
    assert events(w, "ClearingPublished", receipt) == [{
        "deliveryDay": CLOSED_DAY, "runNumber": 1, "resultRoot": h("root"), "tradeCount": 5,
        "publisher": w.clearing.address}]
    published = RunRecord(CLOSED_DAY, 1, True, False, h("root"), 5, receipt.block_number, 0)
    assert w.market.clearing_run(CLOSED_DAY, 1) == published
    assert w.market.day(CLOSED_DAY) == DayRecord(CLOSED_DAY, w.closed_gate, 1, True,
                                                 h("root"), 5)

    # Written once: neither the root nor the trades of a published run change.
    for call in (lambda: w.market.publish_clearing(w.clearing, CLOSED_DAY, 1, h("other"), 5),
                 lambda: w.market.record_trades(w.clearing, CLOSED_DAY, 1, trades("late", 1))):
        error = refused(w, call)
        assert (error.error_name, error.error_args) == (
            "CapacityMarketAlreadyPublished", {"deliveryDay": CLOSED_DAY, "runNumber": 1})
    assert w.market.clearing_run(CLOSED_DAY, 1) == published
    assert as_tuples(w.market.trade_events(CLOSED_DAY, 1)) == recorded


def test_a_run_with_no_trades_publishes_with_count_zero(w: World) -> None:
    assert w.market.record_trades(w.clearing, CLOSED_DAY, 1, []) == []  # nothing sent
    w.market.publish_clearing(w.clearing, CLOSED_DAY, 1, h("empty"), 0)
    assert w.market.day(CLOSED_DAY) == DayRecord(CLOSED_DAY, w.closed_gate, 1, True,
                                                 h("empty"), 0)
    assert w.market.trade_events(CLOSED_DAY, 1) == []


def test_voiding_keeps_the_run_and_opens_the_next(w: World) -> None:
    receipt = w.market.void_clearing(w.clearing, PUBLISHED_DAY, 1, "meter E-001 misread")

    assert events(w, "ClearingVoided", receipt) == [{
        "deliveryDay": PUBLISHED_DAY, "runNumber": 1, "resultRoot": PUBLISHED_ROOT,
        "reason": "meter E-001 misread", "by": w.clearing.address}]
    assert w.market.clearing_run(PUBLISHED_DAY, 1) == RunRecord(
        PUBLISHED_DAY, 1, True, True, PUBLISHED_ROOT, 1, w.published_block,
        receipt.block_number)
    assert w.market.day(PUBLISHED_DAY) == DayRecord(PUBLISHED_DAY, w.closed_gate, 2, False,
                                                    ZERO32, 0)
    for run, name in ((1, "CapacityMarketAlreadyPublished"), (3, "CapacityMarketWrongRun")):
        assert refused(w, lambda r=run: w.market.publish_clearing(
            w.clearing, PUBLISHED_DAY, r, h("root"), 0)).error_name == name

    # Run 2, with another day's trades recorded between its chunks.
    second = trades("second", 3)
    w.market.record_trades(w.clearing, PUBLISHED_DAY, 2, second[:2])
    w.market.record_trades(w.clearing, CLOSED_DAY, 1, trades("closed", 2))
    w.market.record_trades(w.clearing, PUBLISHED_DAY, 2, second[2:])
    w.market.publish_clearing(w.clearing, PUBLISHED_DAY, 2, h("second root"), 3)

    assert as_tuples(w.market.trade_events(PUBLISHED_DAY, 1)) == [PUBLISHED_TRADE]
    assert as_tuples(w.market.trade_events(PUBLISHED_DAY, 2)) == second
    assert as_tuples(w.market.trade_events(CLOSED_DAY, 1)) == trades("closed", 2)
    assert w.market.day(PUBLISHED_DAY) == DayRecord(PUBLISHED_DAY, w.closed_gate, 2, True,
                                                    h("second root"), 3)
    assert w.market.clearing_run(PUBLISHED_DAY, 1).voided  # the record of run 1 stays


def test_a_late_void_of_a_voided_run_never_voids_the_next(w: World) -> None:
    # Run 1 is voided and run 2 published; the void of run 1 then arrives again (a retry, or
    # a delayed duplicate): it names run 1, so it is refused and run 2 stands.
    w.market.void_clearing(w.clearing, PUBLISHED_DAY, 1, "meter E-001 misread")
    w.market.publish_clearing(w.clearing, PUBLISHED_DAY, 2, h("second root"), 0)
    second = w.market.clearing_run(PUBLISHED_DAY, 2)

    error = refused(w, lambda: w.market.void_clearing(w.clearing, PUBLISHED_DAY, 1,
                                                      "meter E-001 misread"))
    assert (error.error_name, error.error_args) == ("CapacityMarketWrongRun", {
        "deliveryDay": PUBLISHED_DAY, "currentRun": 2, "runNumber": 1})
    assert str(error).startswith(
        f"CapacityMarketWrongRun: run 1 of day {PUBLISHED_DAY} is not its current run 2")
    assert w.market.clearing_run(PUBLISHED_DAY, 2) == second
    assert w.market.day(PUBLISHED_DAY) == DayRecord(PUBLISHED_DAY, w.closed_gate, 2, True,
                                                    h("second root"), 0)

    # Naming run 2 voids it and opens run 3.
    w.market.void_clearing(w.clearing, PUBLISHED_DAY, 2, "tariff corrected")
    assert w.market.clearing_run(PUBLISHED_DAY, 2).voided
    assert w.market.day(PUBLISHED_DAY).current_run == 3  # type: ignore[union-attr]


# =========================================================================== settlement

def anchors(label: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(metering root, rule hash, statements root, result hash) of a settlement run."""
    return (h(f"{label} metering"), h("deviation rules v1"), h(f"{label} statements"),
            h(f"{label} result"))


def settled(w: World, receipt: Receipt, period_id: int, run_number: int, kind: str,
            hashes: tuple[bytes, bytes, bytes, bytes], line_count: int,
            ) -> tuple[SettlementRunRecord, SettlementEvent]:
    """The record and the event a settlement run published with `receipt` should read as."""
    record = SettlementRunRecord(period_id, run_number, kind, *hashes, line_count,
                                 receipt.block_number, w.clearing.address)
    # One transaction per block here, with one event: its log index is 0.
    event = SettlementEvent(period_id, run_number, kind, *hashes, line_count,
                            w.clearing.address, receipt.block_number, 0, receipt.tx_hash)
    return record, event


def test_settlement_runs_of_a_day_and_a_month_are_numbered_and_read_back(w: World) -> None:
    # NEW_DAY was never opened for trading: it is settled (for deviations) all the same.
    assert w.market.settlement_run_count(NEW_DAY) == 0
    assert w.market.settlement_run(NEW_DAY, 1) is None
    assert w.market.settlement_events(NEW_DAY) == []

    expected = []
    for run_number, kind in enumerate(("initial", "final", "rerun"), start=1):
        hashes = anchors(f"{NEW_DAY} run {run_number}")
        receipt = w.market.publish_settlement(w.clearing, NEW_DAY, run_number, kind, *hashes,
                                              100 + run_number)
        assert events(w, "SettlementPublished", receipt) == [{
            "periodId": NEW_DAY, "runNumber": run_number, "kind": SETTLEMENT_KINDS[kind],
            "meteringRoot": hashes[0], "ruleHash": hashes[1], "statementsRoot": hashes[2],
            "resultHash": hashes[3], "lineCount": 100 + run_number,
            "publisher": w.clearing.address}]
        expected.append(settled(w, receipt, NEW_DAY, run_number, kind, hashes,
                                100 + run_number))
        # Other periods' runs in between: each period counts its own runs.
        w.market.publish_settlement(w.clearing, 20250700 + run_number, 1, "initial",
                                    *anchors(f"other {run_number}"), 7)
    # The monthly roll-up works from the days' results: it may give no metering root.
    month_hashes = (ZERO32, *anchors("month")[1:])
    month = w.market.publish_settlement(w.clearing, MONTH, 1, "monthly", *month_hashes, 3_000)

    assert w.market.settlement_run_count(NEW_DAY) == 3
    assert [w.market.settlement_run(NEW_DAY, n) for n in (1, 2, 3)] == [r for r, _ in expected]
    assert w.market.settlement_run(NEW_DAY, 4) is None
    assert w.market.settlement_events(NEW_DAY) == [e for _, e in expected]
    month_record, month_event = settled(w, month, MONTH, 1, "monthly", month_hashes, 3_000)
    assert w.market.settlement_run_count(MONTH) == 1
    assert w.market.settlement_run(MONTH, 1) == month_record
    assert w.market.settlement_events(MONTH) == [month_event]
    assert w.market.settlement_run_count(20250702) == 1
    # Settling neither opens nor clears a day.
    assert w.market.day(NEW_DAY) is None
    assert w.market.day(PUBLISHED_DAY).published  # type: ignore[union-attr]


def test_a_settlement_run_is_written_once_and_numbered_in_order(w: World) -> None:
    first_hashes = anchors("first")
    w.market.publish_settlement(w.clearing, CLOSED_DAY, 1, "initial", *first_hashes, 10)
    first = w.market.settlement_run(CLOSED_DAY, 1)

    # A retried submission of run 1, another run 1, run 3 skipping 2, and run 0.
    for run_number, hashes in ((1, first_hashes), (1, anchors("other")), (3, anchors("skip")),
                               (0, anchors("zero"))):
        error = refused(w, lambda r=run_number, x=hashes: w.market.publish_settlement(
            w.clearing, CLOSED_DAY, r, "final", *x, 10))
        assert (error.error_name, error.error_args) == ("CapacityMarketWrongSettlementRun", {
            "periodId": CLOSED_DAY, "expectedRun": 2, "runNumber": run_number})
    assert str(error).startswith(f"CapacityMarketWrongSettlementRun: settlement run 0 of "
                                 f"period {CLOSED_DAY} is not its next run 2")
    assert w.market.settlement_run(CLOSED_DAY, 1) == first
    assert w.market.settlement_run_count(CLOSED_DAY) == 1

    # A fresh period starts at 1.
    error = refused(w, lambda: w.market.publish_settlement(w.clearing, MONTH, 2, "monthly",
                                                           *anchors("month"), 1))
    assert error.error_args == {"periodId": MONTH, "expectedRun": 1, "runNumber": 2}
    w.market.publish_settlement(w.clearing, CLOSED_DAY, 2, "final", *anchors("second"), 11)
    assert w.market.settlement_run_count(CLOSED_DAY) == 2
    assert w.market.settlement_run(CLOSED_DAY, 2).kind == "final"  # type: ignore[union-attr]


@pytest.mark.parametrize(("period_id", "kind"), [
    (NEW_DAY, 4), (NEW_DAY, 0), (NEW_DAY, 5), (NEW_DAY, 255),
    (MONTH, 1), (MONTH, 2), (MONTH, 3), (MONTH, 0), (MONTH, 5)])
def test_settlement_kind_must_fit_the_period(w: World, period_id: int, kind: int) -> None:
    # Raw codes, so kinds the client has no name for reach the contract.
    error = refused(w, lambda: send(w, w.clearing, "publishSettlement", period_id, 1, kind,
                                    *anchors("kind"), 5))
    assert (error.error_name, error.error_args) == (
        "CapacityMarketInvalidSettlementKind", {"periodId": period_id, "kind": kind})
    assert w.market.settlement_run_count(period_id) == 0


@pytest.mark.parametrize("period_id", [
    0, 19991231, 19990100, 20001300, 20250000, 20250632, 20250199, 2025061, 202506,
    1718409600, 100000100, 2**32 - 1])
def test_settlement_period_must_be_a_day_or_a_month(w: World, period_id: int) -> None:
    for kind in ("initial", "monthly"):
        error = refused(w, lambda k=kind: w.market.publish_settlement(
            w.clearing, period_id, 1, k, *anchors("period"), 5))
        assert (error.error_name, error.error_args) == (
            "CapacityMarketInvalidPeriod", {"periodId": period_id})
    assert w.market.settlement_run_count(period_id) == 0


@pytest.mark.parametrize(("period_id", "kind"), [
    (20000100, "monthly"), (20000101, "initial"), (99991231, "rerun"), (99991200, "monthly"),
    (20250231, "final")])  # a shape check, not a calendar: February 31st passes
def test_settlement_period_edges_are_accepted(w: World, period_id: int, kind: str) -> None:
    w.market.publish_settlement(w.clearing, period_id, 1, kind, *anchors("edge"), 5)
    assert w.market.settlement_run(period_id, 1).kind == kind  # type: ignore[union-attr]


@pytest.mark.parametrize("zero", range(4))
@pytest.mark.parametrize(("period_id", "kind"), [(NEW_DAY, "initial"), (NEW_DAY, "rerun"),
                                                 (MONTH, "monthly")])
def test_settlement_roots_and_hashes_must_be_non_zero(
        w: World, period_id: int, kind: str, zero: int) -> None:
    hashes = list(anchors("zero"))
    hashes[zero] = ZERO32
    if kind == "monthly" and zero == 0:  # the one zero allowed
        w.market.publish_settlement(w.clearing, period_id, 1, kind, *hashes, 5)
        assert w.market.settlement_run(period_id, 1).metering_root == ZERO32  # type: ignore
        return
    error = refused(w, lambda: w.market.publish_settlement(w.clearing, period_id, 1, kind,
                                                           *hashes, 5))
    assert (error.error_name, error.error_args) == (
        "CapacityMarketInvalidSettlementHash", {"periodId": period_id, "runNumber": 1})
    assert w.market.settlement_run(period_id, 1) is None


def test_a_settlement_run_may_have_no_lines(w: World) -> None:
    w.market.publish_settlement(w.clearing, NEW_DAY, 1, "initial", *anchors("empty"), 0)
    assert w.market.settlement_run(NEW_DAY, 1).line_count == 0  # type: ignore[union-attr]


def test_only_settlement_staff_publish_settlement_runs(w: World) -> None:
    # The deployer holds every other platform role; an enterprise holds none.
    for signer in (w.deployer, w.enterprise, w.newcomer):
        error = refused(w, lambda s=signer: w.market.publish_settlement(
            s, NEW_DAY, 1, "initial", *anchors("stranger"), 5))
        assert (error.error_name, error.error_args) == ("AccessControlUnauthorizedAccount", {
            "account": signer.address, "neededRole": hex32(role_id("CLEARING_ROLE"))})
    assert w.market.settlement_run_count(NEW_DAY) == 0
    # Granting the role is what lets a new staff member publish.
    w.market.grant_role(w.deployer, "CLEARING_ROLE", w.newcomer.address)
    w.market.publish_settlement(w.newcomer, NEW_DAY, 1, "initial", *anchors("staff"), 5)
    assert w.market.settlement_run(NEW_DAY, 1).publisher == w.newcomer.address  # type: ignore


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "weekly"}, "kind must be one of"),
    ({"kind": 1}, "kind must be one of"),
    ({"period_id": 2**32}, "period_id must be an unsigned 32"),
    ({"run_number": -1}, "run_number must be an unsigned 32"),
    ({"line_count": 2**32}, "line_count must be an unsigned 32"),
    ({"rule_hash": b"short"}, "rule_hash must be 32 bytes"),
    ({"metering_root": None}, "metering_root must be 32 bytes"),
    ({"result_hash": "0x" + "11" * 32}, "result_hash must be 32 bytes"),
])
def test_bad_settlement_arguments_are_refused_before_anything_is_sent(
        w: World, change: dict[str, Any], message: str) -> None:
    metering_root, rule_hash, statements_root, result_hash = anchors("args")
    arguments = {"period_id": NEW_DAY, "run_number": 1, "kind": "initial",
                 "metering_root": metering_root, "rule_hash": rule_hash,
                 "statements_root": statements_root, "result_hash": result_hash,
                 "line_count": 5} | change
    block = w.chain.block_number()
    with pytest.raises(ValueError, match=message):
        w.market.publish_settlement(w.clearing, **arguments)
    assert w.chain.block_number() == block


def test_settlement_events_whose_logs_are_gone_are_reported(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w.market.publish_settlement(w.clearing, NEW_DAY, 1, "initial", *anchors("pruned"), 5)
    # As on a node that has pruned old logs: the getter knows the run, the logs are empty.
    monkeypatch.setattr(w.market.contract.events.SettlementPublished, "get_logs",
                        lambda **kwargs: [])
    with pytest.raises(ChainResetError, match=f"period {NEW_DAY} holds 1 settlement runs"):
        w.market.settlement_events(NEW_DAY)


def test_settlement_events_read_only_the_blocks_the_runs_name(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    receipts = [w.market.publish_settlement(w.clearing, NEW_DAY, n, kind, *anchors(kind), n)
                for n, kind in ((1, "initial"), (2, "final"))]
    ranges = []
    get_logs = w.market.contract.events.SettlementPublished.get_logs

    def spy(**kwargs: Any) -> Any:
        ranges.append((kwargs["from_block"], kwargs["to_block"]))
        return get_logs(**kwargs)

    monkeypatch.setattr(w.market.contract.events.SettlementPublished, "get_logs", spy)
    assert [e.run_number for e in w.market.settlement_events(NEW_DAY)] == [1, 2]
    assert ranges == [(r.block_number, r.block_number) for r in receipts]


# =========================================================================== gas

def test_record_order_gas_is_within_budget(w: World) -> None:
    # Ids as the platform makes them: the order id a UUID left-padded to bytes32 (16 zero
    # bytes of calldata), the enterprise id and the content hash keccak hashes.
    gas = {side: w.market.record_order(w.enterprise, platform_id(f"gas {side}"),
                                       w.enterprise_id, OPEN_DAY, side,
                                       h(f"gas {side} v1")).gas_used
           for side in ("sell", "buy")}
    assert max(gas.values()) <= GAS_BUDGET_RECORD_ORDER, gas


def test_record_order_batch_gas_per_item_is_within_budget(w: World) -> None:
    # Amendments of buy orders with keccak ids, stricter than the platform's UUID ids: the
    # most non-zero calldata bytes an item can have.
    items = [(h(f"gas order {i}"), "amend", "buy", h(f"gas content {i}")) for i in range(100)]
    receipt = w.market.record_order_batch(w.enterprise, NEW_BATCH, w.enterprise_id, OPEN_DAY,
                                          items)
    per_item = receipt.gas_used / len(items)
    assert per_item <= GAS_BUDGET_BATCH_ITEM, (receipt.gas_used, per_item)


def test_publish_settlement_gas(w: World) -> None:
    # Hashes as the platform makes them (keccak: no zero bytes to save calldata gas).
    gas = {kind: w.market.publish_settlement(w.clearing, NEW_DAY, n, kind, *anchors(kind),
                                             5_000).gas_used
           for n, kind in enumerate(("initial", "final", "rerun"), start=1)}
    gas["monthly"] = w.market.publish_settlement(
        w.clearing, MONTH, 1, "monthly", ZERO32, *anchors("monthly")[1:], 300).gas_used
    # The first run of a period also starts its run count (a zero-to-non-zero write).
    assert gas["final"] == gas["rerun"] < gas["initial"] - 15_000, gas
    assert max(gas.values()) <= GAS_CEILING_PUBLISH_SETTLEMENT, gas
    print(f"publishSettlement gas: {gas}")


# =========================================================================== adapter

def test_nonce_counter_serves_several_sends_in_a_row(w: World) -> None:
    eth = w.chain.w3.eth
    start = eth.get_transaction_count(w.enterprise.address)
    receipts = [w.market.amend_order(w.enterprise, STANDING_ORDER, h(f"v{i}"))
                for i in range(2, 7)]
    assert [eth.get_transaction(r.tx_hash)["nonce"] for r in receipts] == list(
        range(start, start + 5))
    assert len({r.block_number for r in receipts}) == 5
    assert w.market.order(STANDING_ORDER).version == 6  # type: ignore[union-attr]


def test_nonce_counter_resyncs_after_a_send_it_did_not_see(w: World) -> None:
    # A second connection (another worker process, say) sends from the same key, so this
    # connection's counter is stale; the node's "nonce too low" makes it re-sync once.
    w.chain.fund(w.deployer, w.newcomer.address, 1)
    ChainConnection(w.chain.w3).fund(w.deployer, w.newcomer.address, 1)

    receipt = w.chain.fund(w.deployer, w.newcomer.address, 1)

    assert receipt.status == 1
    assert w.chain.w3.eth.get_transaction(receipt.tx_hash)["nonce"] == (
        w.chain.w3.eth.get_transaction_count(w.deployer.address) - 1)


@pytest.mark.parametrize("late", [False, True])
def test_a_mined_failure_is_translated_too(
        w: World, gate: int, monkeypatch: pytest.MonkeyPatch, late: bool) -> None:
    # Skip the estimate, as when a competing transaction (or the gate) comes between the
    # estimate and the mining: the failure is mined, and its reason recovered by a replay.
    if late:
        w.chain.set_next_block_timestamp(gate)
    monkeypatch.setattr(w.chain, "_estimate_gas", lambda *args, **kwargs: 200_000)
    block = w.chain.block_number()

    with pytest.raises(ChainRevertError) as caught:
        w.market.record_order(w.enterprise, GATE_ORDER, w.enterprise_id, GATE_DAY, "buy",
                              h("again"))

    expected = "CapacityMarketGateClosed" if late else "CapacityMarketOrderExists"
    assert caught.value.error_name == expected
    assert "transaction 0x" in str(caught.value)
    assert w.chain.block_number() == block + 1  # it was mined, with status 0


def test_unfunded_sender_gets_a_chain_error(w: World) -> None:
    with pytest.raises(ChainError, match="funded"):
        w.market.register_enterprise(Account.create(), NEW_ENTERPRISE, Account.create().address)


def test_verify_detects_another_chain_id(w: World) -> None:
    chain_id = w.chain.chain_id()
    with pytest.raises(ChainResetError) as caught:
        w.market.verify(chain_id + 1)
    assert f"expected chain id {chain_id + 1}" in str(caught.value)
    assert f"reports chain id {chain_id}" in str(caught.value)


def test_verify_detects_an_address_without_code(w: World) -> None:
    gone = CapacityMarket(w.chain, Account.create().address, w.market.artefact)
    with pytest.raises(ChainResetError, match="no code at that address"):
        gone.verify(w.chain.chain_id())
    with pytest.raises(ChainResetError, match="no code there"):
        gone.day(OPEN_DAY)


def test_verify_detects_other_code_at_the_address(w: World) -> None:
    other_build = dict(w.market.artefact)
    other_build["deployedBytecode"] = "0x6000" + other_build["deployedBytecode"][2:]
    with pytest.raises(ChainResetError, match="not this build"):
        CapacityMarket(w.chain, w.market.address, other_build).verify(w.chain.chain_id())


def test_snapshot_revert_forgets_the_chain_after_it(w: World) -> None:
    def record() -> None:
        w.market.record_order(w.enterprise, NEW_ORDER, w.enterprise_id, OPEN_DAY, "sell", h("c"))

    snapshot = w.chain.snapshot()
    record()
    w.chain.revert_to(snapshot)
    assert w.market.order(NEW_ORDER) is None
    record()  # the nonce counter was reset along with the chain
    assert w.market.order(NEW_ORDER) is not None


def test_revert_error_survives_pickling() -> None:
    error = ChainRevertError("CapacityMarketOrderExists", {"orderId": "0x01"}, "msg")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.error_name, copy.error_args, str(copy)) == (
        error.error_name, error.error_args, "msg")


def test_every_contract_error_has_a_readable_message() -> None:
    for entry in load_artefact("CapacityMarket")["abi"]:
        if entry["type"] != "error":
            continue
        fields = {field for _, field, _, _ in string.Formatter().parse(
            REVERT_MESSAGES[entry["name"]]) if field}
        assert fields <= {arg["name"] for arg in entry["inputs"]}, entry["name"]


def test_decode_revert_handles_string_reasons_and_unknown_data() -> None:
    reason = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (4).to_bytes(32, "big") \
        + b"nope".ljust(32, b"\x00")
    assert decode_revert(reason, []).error_args == {"reason": "nope"}
    unknown = decode_revert("0xdeadbeef", load_artefact("CapacityMarket")["abi"])
    assert unknown.error_name == "" and "0xdeadbeef" in str(unknown)


def test_missing_role_reads_as_its_name(w: World) -> None:
    error = refused(w, lambda: w.market.open_day(w.newcomer, NEW_DAY, w.closed_gate + 60))
    assert "does not hold role MARKET_OPERATOR_ROLE" in str(error)


def test_connect_picks_the_backend() -> None:
    assert isinstance(connect("eth-tester"), EthTesterChain)
    with pytest.raises(ValueError, match="http"):
        connect("ws://127.0.0.1:8546")
    with pytest.raises(ValueError):
        connect("postgres://nope")


def test_unreachable_node_raises_chain_unavailable_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainUnavailableError, match=url):
        connect(url)


def test_missing_artefact_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="contracts/compile.py"):
        load_artefact("CapacityMarket", tmp_path)
