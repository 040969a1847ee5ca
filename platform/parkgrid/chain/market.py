"""Client of the CapacityMarket contract: enterprise accounts, market days, orders, clearing
and settlement anchors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from .artefacts import load_artefact
from .connection import ChainConnection, Receipt
from .errors import ChainResetError

__all__ = [
    "ROLE_NAMES", "SETTLEMENT_KINDS", "BatchRecord", "CapacityMarket", "DayRecord",
    "OrderRecord", "RunRecord", "SettlementEvent", "SettlementRunRecord", "TradeEvent",
    "enterprise_key", "role_id",
]

ROLE_NAMES = ("DEFAULT_ADMIN_ROLE", "REGISTRAR_ROLE", "MARKET_OPERATOR_ROLE", "CLEARING_ROLE")
SIDES = ("sell", "buy")  # the contract's 0 and 1
ACTIONS = ("new", "amend", "cancel")  # the contract's 0, 1 and 2
# Trades per recordTrades transaction: about 5,700 gas each (measured), so ~2.3M gas per
# transaction, well inside a block's gas.
TRADES_PER_TX = 400
# Settlement run kinds and the contract's codes: the first three settle a delivery day
# (period id YYYYMMDD), "monthly" rolls up a month (period id YYYYMM00).
SETTLEMENT_KINDS = {"initial": 1, "final": 2, "rerun": 3, "monthly": 4}
_SETTLEMENT_KIND_NAMES = {code: name for name, code in SETTLEMENT_KINDS.items()}

_ZERO32 = b"\x00" * 32


def enterprise_key(code: str) -> bytes:
    """Return the bytes32 id of the enterprise with platform code `code` on chain."""
    # A namespaced hash: ids never collide with other bytes32 ids and reveal no database key.
    return keccak(text="parkgrid:enterprise:" + code)


def role_id(role_name: str) -> bytes:
    """Return the bytes32 id of a CapacityMarket role (AccessControl's convention)."""
    if role_name not in ROLE_NAMES:
        raise ValueError(f"unknown role {role_name!r}; known roles: {', '.join(ROLE_NAMES)}")
    return _ZERO32 if role_name == "DEFAULT_ADMIN_ROLE" else keccak(text=role_name)


@dataclass(frozen=True)
class OrderRecord:
    """What the chain holds about one order, plus the transaction of its latest action."""

    order_id: bytes
    enterprise_id: bytes
    delivery_day: int
    side: str
    version: int
    cancelled: bool
    content_hash: bytes
    block_number: int
    tx_hash: str | None
    account: str | None

    @property
    def actions(self) -> int:
        """How many actions of the order the chain holds: the record and its amendments
        count in `version`; a cancellation sets a flag instead of a version."""
        return self.version + (1 if self.cancelled else 0)


@dataclass(frozen=True)
class BatchRecord:
    """A batch of order actions as its events tell it: who sent it, and its items in order."""

    batch_id: bytes
    enterprise_id: bytes
    delivery_day: int
    account: str
    tx_hash: str
    block_number: int
    # (order id, "new" | "amend" | "cancel", "sell" | "buy", content hash), in chain order.
    items: tuple[tuple[bytes, str, str, bytes], ...]


@dataclass(frozen=True)
class DayRecord:
    """A market day on chain: its gate and the state of its current clearing run."""

    delivery_day: int
    gate_closure: int
    current_run: int
    published: bool
    result_root: bytes
    trade_count: int


@dataclass(frozen=True)
class RunRecord:
    """One clearing run of a day on chain."""

    delivery_day: int
    run_number: int
    published: bool
    voided: bool
    result_root: bytes
    trade_count: int
    published_block: int
    voided_block: int


@dataclass(frozen=True)
class SettlementRunRecord:
    """One published settlement run of a delivery day (YYYYMMDD) or a month (YYYYMM00)."""

    period_id: int
    run_number: int
    kind: str  # a key of SETTLEMENT_KINDS
    metering_root: bytes  # zero only for a monthly run
    rule_hash: bytes
    statements_root: bytes
    result_hash: bytes
    line_count: int
    block_number: int
    publisher: str


@dataclass(frozen=True)
class SettlementEvent:
    """One SettlementPublished event."""

    period_id: int
    run_number: int
    kind: str
    metering_root: bytes
    rule_hash: bytes
    statements_root: bytes
    result_hash: bytes
    line_count: int
    publisher: str
    block_number: int
    log_index: int
    tx_hash: str


@dataclass(frozen=True)
class TradeEvent:
    """One TradeRecorded event."""

    order_id: bytes
    quantity: int
    amount_fen: int
    detail_hash: bytes
    block_number: int
    log_index: int


class CapacityMarket:
    """Typed calls to one deployed CapacityMarket; reverts arrive as ChainRevertError."""

    NAME = "CapacityMarket"

    def __init__(self, chain: ChainConnection, address: str,
                 artefact: dict[str, Any] | None = None) -> None:
        self.chain = chain
        self.artefact = artefact if artefact is not None else load_artefact(self.NAME)
        self.address = to_checksum_address(address)
        self.contract = chain.w3.eth.contract(address=self.address, abi=self.artefact["abi"])

    @classmethod
    def deploy(cls, chain: ChainConnection, admin: LocalAccount,
               artefact: dict[str, Any] | None = None) -> tuple[CapacityMarket, Receipt]:
        """Deploy a new market with `admin` as operator, also made registrar and market operator.

        Returns the client and the deployment receipt.
        """
        artefact = artefact if artefact is not None else load_artefact(cls.NAME)
        address, receipt = chain.deploy(admin, artefact)
        market = cls(chain, address, artefact)
        market.grant_role(admin, "REGISTRAR_ROLE", admin.address)
        market.grant_role(admin, "MARKET_OPERATOR_ROLE", admin.address)
        return market, receipt

    def verify(self, expected_chain_id: int) -> None:
        """Check that the node still holds this market; raise ChainResetError if not."""
        found = self.chain.chain_id()
        if found != expected_chain_id:
            raise ChainResetError(
                f"expected chain id {expected_chain_id}, where {self.NAME} was deployed at "
                f"{self.address}, but the node reports chain id {found}: the chain URL points "
                "at another chain, or the chain was reset. Point the platform at the original "
                "chain, or redeploy the contract and record the new address."
            )
        code = self.chain.code_at(self.address)
        if not code:
            raise ChainResetError(
                f"expected the {self.NAME} contract at {self.address} on chain {found}, but "
                "there is no code at that address: the chain was reset (e.g. anvil restarted "
                "without its --state file). Restart the node with its state file, or redeploy "
                "the contract and record the new address."
            )
        expected_code = bytes.fromhex(self.artefact["deployedBytecode"].removeprefix("0x"))
        if _strip_metadata(code) != _strip_metadata(expected_code):
            raise ChainResetError(
                f"expected the {self.NAME} contract at {self.address} on chain {found}, but "
                "the code there is not this build of it: the chain was reset and the address "
                "reused, or the contract source changed since it was deployed. Redeploy the "
                "contract and record the new address."
            )

    # -- writes ----------------------------------------------------------------------------

    def register_enterprise(self, registrar: LocalAccount, enterprise_id: bytes,
                            account_address: str) -> Receipt:
        """Bind `account_address` to `enterprise_id` (registrar signs)."""
        _require_bytes32("enterprise_id", enterprise_id)
        call = self.contract.functions.registerEnterprise(
            enterprise_id, to_checksum_address(account_address))
        return self.chain.send(registrar, call)

    def open_day(self, operator: LocalAccount, delivery_day: int, gate_closure: int) -> Receipt:
        """Open `delivery_day` (YYYYMMDD) for orders until `gate_closure` (Unix seconds)."""
        _require_uint("delivery_day", delivery_day, 32)
        _require_uint("gate_closure", gate_closure, 64)
        return self.chain.send(operator, self.contract.functions.openDay(delivery_day,
                                                                          gate_closure))

    def record_order(self, account: LocalAccount, order_id: bytes, enterprise_id: bytes,
                     delivery_day: int, side: str, content_hash: bytes) -> Receipt:
        """Record a new order, signed by the enterprise's own account."""
        _require_bytes32("order_id", order_id)
        _require_bytes32("enterprise_id", enterprise_id)
        _require_bytes32("content_hash", content_hash)
        _require_uint("delivery_day", delivery_day, 32)
        call = self.contract.functions.recordOrder(order_id, enterprise_id, delivery_day,
                                                   _side_code(side), content_hash)
        return self.chain.send(account, call)

    def amend_order(self, account: LocalAccount, order_id: bytes,
                    content_hash: bytes) -> Receipt:
        """Replace an order's content hash (its version goes up by one)."""
        _require_bytes32("order_id", order_id)
        _require_bytes32("content_hash", content_hash)
        return self.chain.send(account, self.contract.functions.amendOrder(order_id,
                                                                            content_hash))

    def cancel_order(self, account: LocalAccount, order_id: bytes) -> Receipt:
        """Cancel an order; it cannot change afterwards."""
        _require_bytes32("order_id", order_id)
        return self.chain.send(account, self.contract.functions.cancelOrder(order_id))

    def record_order_batch(self, account: LocalAccount, batch_id: bytes, enterprise_id: bytes,
                           delivery_day: int,
                           actions: list[tuple[bytes, str, str, bytes | None]]) -> Receipt:
        """Record many order actions of one enterprise and day in one transaction (events only).

        Each action is (order id, "new" | "amend" | "cancel", "sell" | "buy", content hash);
        a cancellation may give None for the hash.
        """
        _require_bytes32("batch_id", batch_id)
        _require_bytes32("enterprise_id", enterprise_id)
        _require_uint("delivery_day", delivery_day, 32)
        items = []
        for order_id, action, side, content_hash in actions:
            _require_bytes32("order_id", order_id)
            if action not in ACTIONS:
                raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
            if content_hash is not None:
                _require_bytes32("content_hash", content_hash)
            items.append((order_id, ACTIONS.index(action), _side_code(side),
                          content_hash or _ZERO32))
        call = self.contract.functions.recordOrderBatch(batch_id, enterprise_id, delivery_day,
                                                        items)
        return self.chain.send(account, call)

    @staticmethod
    def trade_item(order_id: bytes, quantity: int, amount_fen: int,
                   detail_hash: bytes) -> tuple[bytes, int, int, bytes]:
        """One trade for record_trades: quantity in 0.1 kVA·h, money in fen (+ pays)."""
        _require_bytes32("order_id", order_id)
        _require_bytes32("detail_hash", detail_hash)
        _require_uint("quantity", quantity, 64)
        if not -(2**63) <= amount_fen < 2**63:
            raise ValueError(f"amount_fen does not fit in int64: {amount_fen}")
        return (order_id, quantity, amount_fen, detail_hash)

    def record_trades(self, signer: LocalAccount, delivery_day: int, run_number: int,
                      trades: list[tuple[bytes, int, int, bytes]]) -> list[Receipt]:
        """Record a run's trades, in chunks small enough for one block each."""
        return [self.chain.send(signer, self.contract.functions.recordTrades(
                    delivery_day, run_number, trades[start:start + TRADES_PER_TX]))
                for start in range(0, len(trades), TRADES_PER_TX)]

    def publish_clearing(self, signer: LocalAccount, delivery_day: int, run_number: int,
                         result_root: bytes, trade_count: int) -> Receipt:
        """Publish a run's result root, committing to its number of recorded trades."""
        _require_bytes32("result_root", result_root)
        return self.chain.send(signer, self.contract.functions.publishClearing(
            delivery_day, run_number, result_root, trade_count))

    def void_clearing(self, signer: LocalAccount, delivery_day: int, run_number: int,
                      reason: str) -> Receipt:
        """Void published run `run_number` of the day with a reason; the next run opens.

        The chain refuses it (CapacityMarketWrongRun) unless `run_number` is the day's current
        run, so a delayed or retried void never voids a later run.
        """
        _require_uint("delivery_day", delivery_day, 32)
        _require_uint("run_number", run_number, 32)
        return self.chain.send(signer, self.contract.functions.voidClearing(
            delivery_day, run_number, reason))

    def publish_settlement(self, signer: LocalAccount, period_id: int, run_number: int,
                           kind: str, metering_root: bytes, rule_hash: bytes,
                           statements_root: bytes, result_hash: bytes,
                           line_count: int) -> Receipt:
        """Anchor settlement run `run_number` of a day (YYYYMMDD) or month (YYYYMM00), once.

        `kind` is a key of SETTLEMENT_KINDS. Runs are numbered 1, 2, ... per period: the chain
        refuses any other number with CapacityMarketWrongSettlementRun, whose `expectedRun`
        above `run_number` means this run is already published (a retry); compare
        settlement_run() with what was sent.
        """
        _require_uint("period_id", period_id, 32)
        _require_uint("run_number", run_number, 32)
        _require_uint("line_count", line_count, 32)
        if kind not in SETTLEMENT_KINDS:
            raise ValueError(f"kind must be one of {tuple(SETTLEMENT_KINDS)}, got {kind!r}")
        for name, value in (("metering_root", metering_root), ("rule_hash", rule_hash),
                            ("statements_root", statements_root),
                            ("result_hash", result_hash)):
            _require_bytes32(name, value)
        return self.chain.send(signer, self.contract.functions.publishSettlement(
            period_id, run_number, SETTLEMENT_KINDS[kind], metering_root, rule_hash,
            statements_root, result_hash, line_count))

    def grant_role(self, admin: LocalAccount, role_name: str, address: str) -> Receipt:
        """Grant `role_name` (e.g. "REGISTRAR_ROLE") to `address` (admin signs)."""
        call = self.contract.functions.grantRole(role_id(role_name), to_checksum_address(address))
        return self.chain.send(admin, call)

    # -- reads -----------------------------------------------------------------------------

    def day(self, delivery_day: int) -> DayRecord | None:
        """Return the market day, or None when it was never opened."""
        gate, run, published, root, count = self.chain.call(
            self.contract.functions.day(delivery_day))
        if gate == 0:
            return None
        return DayRecord(delivery_day, int(gate), int(run), bool(published), bytes(root),
                         int(count))

    def clearing_run(self, delivery_day: int, run_number: int) -> RunRecord:
        """Return one clearing run of a day (all zero when never used)."""
        published, voided, root, count, published_block, voided_block = self.chain.call(
            self.contract.functions.clearingRun(delivery_day, run_number))
        return RunRecord(delivery_day, run_number, bool(published), bool(voided), bytes(root),
                         int(count), int(published_block), int(voided_block))

    def trade_events(self, delivery_day: int, run_number: int) -> list[TradeEvent]:
        """Read a run's TradeRecorded events from exactly the blocks the contract lists."""
        blocks = self.chain.call(self.contract.functions.runTradeBlocks(delivery_day,
                                                                        run_number))
        found: list[TradeEvent] = []
        for block in blocks:
            with self.chain.guard():
                events = self.contract.events.TradeRecorded.get_logs(
                    argument_filters={"deliveryDay": delivery_day, "runNumber": run_number},
                    from_block=int(block), to_block=int(block))
            found.extend(TradeEvent(bytes(e["args"]["orderId"]), int(e["args"]["quantity"]),
                                    int(e["args"]["amountFen"]), bytes(e["args"]["detailHash"]),
                                    int(e["blockNumber"]), int(e["logIndex"]))
                         for e in events)
        return sorted(found, key=lambda e: (e.block_number, e.log_index))

    def settlement_run_count(self, period_id: int) -> int:
        """Return how many settlement runs of the day or month are published."""
        _require_uint("period_id", period_id, 32)
        return int(self.chain.call(self.contract.functions.settlementRunCount(period_id)))

    def settlement_run(self, period_id: int, run_number: int) -> SettlementRunRecord | None:
        """Return a published settlement run of the day or month, or None."""
        _require_uint("period_id", period_id, 32)
        _require_uint("run_number", run_number, 32)
        (kind, metering_root, rule_hash, statements_root, result_hash, line_count,
         block_number, publisher) = self.chain.call(
            self.contract.functions.settlementRun(period_id, run_number))
        if block_number == 0:
            return None
        return SettlementRunRecord(
            period_id=period_id,
            run_number=run_number,
            kind=_SETTLEMENT_KIND_NAMES[int(kind)],
            metering_root=bytes(metering_root),
            rule_hash=bytes(rule_hash),
            statements_root=bytes(statements_root),
            result_hash=bytes(result_hash),
            line_count=int(line_count),
            block_number=int(block_number),
            publisher=to_checksum_address(publisher),
        )

    def settlement_events(self, period_id: int) -> list[SettlementEvent]:
        """Read the SettlementPublished events of a day or month, in run order, from exactly
        the blocks its stored runs name."""
        runs = [self.settlement_run(period_id, number)
                for number in range(1, self.settlement_run_count(period_id) + 1)]
        found: list[SettlementEvent] = []
        for block in sorted({run.block_number for run in runs if run is not None}):
            with self.chain.guard():
                events = self.contract.events.SettlementPublished.get_logs(
                    argument_filters={"periodId": period_id}, from_block=block, to_block=block)
            found.extend(SettlementEvent(
                period_id=period_id,
                run_number=int(e["args"]["runNumber"]),
                kind=_SETTLEMENT_KIND_NAMES[int(e["args"]["kind"])],
                metering_root=bytes(e["args"]["meteringRoot"]),
                rule_hash=bytes(e["args"]["ruleHash"]),
                statements_root=bytes(e["args"]["statementsRoot"]),
                result_hash=bytes(e["args"]["resultHash"]),
                line_count=int(e["args"]["lineCount"]),
                publisher=to_checksum_address(e["args"]["publisher"]),
                block_number=int(e["blockNumber"]),
                log_index=int(e["logIndex"]),
                tx_hash="0x" + bytes(e["transactionHash"]).hex(),
            ) for e in events if int(e["args"]["periodId"]) == period_id)
        found.sort(key=lambda e: (e.block_number, e.log_index))
        # A node that lost or pruned the blocks' logs shows fewer events than stored runs.
        if [e.run_number for e in found] != list(range(1, len(runs) + 1)):
            raise ChainResetError(f"period {period_id} holds {len(runs)} settlement runs on "
                                  f"chain but their blocks show events of runs "
                                  f"{[e.run_number for e in found]}")
        return found

    def order(self, order_id: bytes) -> OrderRecord | None:
        """Return the order recorded with record_order, or None when it never was."""
        _require_bytes32("order_id", order_id)
        (enterprise_id, delivery_day, side, version, cancelled, content_hash,
         block_number) = self.chain.call(self.contract.functions.order(order_id))
        if block_number == 0:
            return None
        tx_hash, account = self._latest_action_tx(order_id, int(block_number))
        return OrderRecord(
            order_id=bytes(order_id),
            enterprise_id=bytes(enterprise_id),
            delivery_day=int(delivery_day),
            side=SIDES[int(side)],
            version=int(version),
            cancelled=bool(cancelled),
            content_hash=bytes(content_hash),
            block_number=int(block_number),
            tx_hash=tx_hash,
            account=account,
        )

    def batch(self, batch_id: bytes) -> BatchRecord | None:
        """Return a recorded batch with its items (read from its one block), or None."""
        _require_bytes32("batch_id", batch_id)
        block_number, count = self.chain.call(self.contract.functions.batch(batch_id))
        if block_number == 0:
            return None
        block = int(block_number)
        with self.chain.guard():
            heads = self.contract.events.OrderBatchRecorded.get_logs(
                argument_filters={"batchId": batch_id}, from_block=block, to_block=block)
            items = self.contract.events.OrderActionBatched.get_logs(
                argument_filters={"batchId": batch_id}, from_block=block, to_block=block)
        heads = [e for e in heads if bytes(e["args"]["batchId"]) == bytes(batch_id)]
        items = sorted((e for e in items if bytes(e["args"]["batchId"]) == bytes(batch_id)),
                       key=lambda e: e["logIndex"])
        # A node that lost or pruned the block's logs shows no summary: say so, not ValueError.
        if len(heads) != 1 or len(items) != int(count):
            raise ChainResetError(f"batch 0x{bytes(batch_id).hex()} holds {count} items on "
                                  f"chain but block {block} shows {len(heads)} summary and "
                                  f"{len(items)} item events")
        head = heads[0]
        return BatchRecord(
            batch_id=bytes(batch_id),
            enterprise_id=bytes(head["args"]["enterpriseId"]),
            delivery_day=int(head["args"]["deliveryDay"]),
            account=to_checksum_address(head["args"]["account"]),
            tx_hash="0x" + bytes(head["transactionHash"]).hex(),
            block_number=block,
            items=tuple((bytes(e["args"]["orderId"]), ACTIONS[int(e["args"]["action"])],
                         SIDES[int(e["args"]["side"])], bytes(e["args"]["contentHash"]))
                        for e in items),
        )

    def has_role(self, role_name: str, address: str) -> bool:
        """Return whether `address` holds `role_name`."""
        return bool(self.chain.call(
            self.contract.functions.hasRole(role_id(role_name), to_checksum_address(address))))

    def enterprise_of(self, address: str) -> bytes | None:
        """Return the enterprise id `address` is bound to, or None."""
        value = bytes(self.chain.call(
            self.contract.functions.enterpriseOf(to_checksum_address(address))))
        return None if value == _ZERO32 else value

    def account_of(self, enterprise_id: bytes) -> str | None:
        """Return the current account of `enterprise_id`, or None."""
        _require_bytes32("enterprise_id", enterprise_id)
        value = self.chain.call(self.contract.functions.accountOf(enterprise_id))
        return None if int(value, 16) == 0 else to_checksum_address(value)

    def _latest_action_tx(self, order_id: bytes,
                          block_number: int) -> tuple[str | None, str | None]:
        # Only the one block the getter names: a full-range log scan is quadratic on
        # eth-tester and slow on any long chain. A node pruned of old logs answers nothing,
        # and the record stays valid without them.
        found: tuple[str | None, str | None] = (None, None)
        for event_type in (self.contract.events.OrderRecorded, self.contract.events.OrderAmended,
                           self.contract.events.OrderCancelled):
            with self.chain.guard():
                events = event_type.get_logs(argument_filters={"orderId": order_id},
                                             from_block=block_number, to_block=block_number)
            for event in events:
                if bytes(event["args"]["orderId"]) == bytes(order_id):
                    tx_hash = "0x" + bytes(event["transactionHash"]).hex()
                    with self.chain.guard():
                        sender = self.chain.w3.eth.get_transaction(event["transactionHash"])
                    found = (tx_hash, to_checksum_address(sender["from"]))
        return found


def _side_code(side: str) -> int:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return SIDES.index(side)


def _require_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be an unsigned {bits}-bit integer, got {value!r}")


def _require_bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {value!r}")


def _strip_metadata(code: bytes) -> bytes:
    # solc appends CBOR metadata (with a source hash) whose length is in the last two bytes;
    # it changes with comments and paths, so it is left out of the comparison.
    if len(code) < 2:
        return code
    length = int.from_bytes(code[-2:], "big") + 2
    return code[:-length] if length <= len(code) else code
