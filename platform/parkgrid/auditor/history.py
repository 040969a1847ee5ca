"""A market day's history rebuilt from the contract's events alone.

Needs only a chain connection and the contract's address: no database. No log read spans
the whole chain (quadratic on eth-tester, slow on any long chain):

- orders: the day's window, from the block that opened it (found by asking the contract's
  state at past blocks, halving the range each time) to the last block before its gate
  (found from block times the same way). The contract refuses orders outside that window.
  A node without past state (anvil restarted from a state file) is read from `from_block`,
  the contract's deployment block, instead;
- a batch's items: the blocks of the day's batch events;
- trades, publications, voids and settlement runs: exactly the blocks the contract's own
  getters name for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date

from eth_abi import decode
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import EthereumTesterProvider

from ..canonical import bytes32_to_uuid
from ..chain import CapacityMarket, ChainError, RunRecord, SettlementEvent, TradeEvent
from ..chain.market import ACTIONS, SIDES
from ..services import calendar

# A node may cap how many blocks one eth_getLogs spans; reads are cut into such chunks.
LOG_CHUNK = 5_000
_ORDER_EVENTS = ("OrderRecorded", "OrderAmended", "OrderCancelled", "OrderBatchRecorded")


@dataclass(frozen=True)
class OrderAction:
    """One action of an order as an event records it."""

    kind: str  # "new" | "amend" | "cancel"
    version: int  # the version it creates (a cancel: the version it cancels)
    content_hash: bytes | None  # None for a cancel
    block_number: int
    log_index: int
    tx_hash: str
    batch_id: bytes | None = None  # set when the action came in a batch


@dataclass
class ChainOrder:
    order_id: str
    enterprise_key: bytes
    side: str
    actions: list[OrderAction] = field(default_factory=list)

    @property
    def version(self) -> int:
        return sum(1 for a in self.actions if a.kind != "cancel")

    @property
    def cancelled(self) -> bool:
        return any(a.kind == "cancel" for a in self.actions)

    @property
    def content_hash(self) -> bytes | None:
        """The hash of the latest content (a cancel keeps the content it cancelled)."""
        content = [a for a in self.actions if a.kind != "cancel"]
        return content[-1].content_hash if content else None

    @property
    def first_block(self) -> int:
        return self.actions[0].block_number


@dataclass(frozen=True)
class ChainRun(RunRecord):
    """A clearing run as the contract keeps it, with its void reason and trade events."""

    void_reason: str | None = None
    trades: tuple[TradeEvent, ...] = ()


@dataclass
class ChainDay:
    """What the chain says about one delivery day."""

    day: date
    gate_closure: int | None  # Unix seconds; None when the day was never opened on chain
    opened_block: int | None
    opened_by: str | None
    window: tuple[int, int] | None  # the blocks read for the day's orders
    orders: dict[str, ChainOrder]
    void_items: list[str]  # batch items the order rules make void, with why
    runs: list[ChainRun]
    settlements: list[SettlementEvent]

    @property
    def day_number(self) -> int:
        return calendar.day_number(self.day)

    def book(self) -> list[ChainOrder]:
        """The orders at gate closure: every order's latest content, cancelled ones left out."""
        return [o for _id, o in sorted(self.orders.items()) if not o.cancelled and o.version]

    def document(self) -> dict:
        """The history as plain data (hex strings), for reports and the API."""
        def hx(value: bytes | None) -> str | None:
            return None if value is None else "0x" + bytes(value).hex()

        return {
            "day": self.day.isoformat(),
            "gate_closure": self.gate_closure,
            "opened_block": self.opened_block,
            "opened_by": self.opened_by,
            "window": list(self.window) if self.window else None,
            "orders": [{
                "order_id": o.order_id, "enterprise_key": hx(o.enterprise_key),
                "side": o.side, "version": o.version, "cancelled": o.cancelled,
                "content_hash": hx(o.content_hash),
                "actions": [{"kind": a.kind, "version": a.version,
                             "content_hash": hx(a.content_hash), "block": a.block_number,
                             "log_index": a.log_index, "tx_hash": a.tx_hash,
                             "batch_id": hx(a.batch_id)} for a in o.actions],
            } for _id, o in sorted(self.orders.items())],
            "void_items": list(self.void_items),
            "clearing_runs": [{
                "run_number": r.run_number, "published": r.published, "voided": r.voided,
                "result_root": hx(r.result_root), "trade_count": r.trade_count,
                "published_block": r.published_block, "voided_block": r.voided_block,
                "void_reason": r.void_reason,
                "trades": [{"order_id": bytes32_to_uuid(t.order_id), "quantity_0_1kvah":
                            t.quantity, "amount_fen": t.amount_fen,
                            "detail_hash": hx(t.detail_hash), "block": t.block_number}
                           for t in r.trades],
            } for r in self.runs],
            "settlement_runs": [{
                "run_number": s.run_number, "kind": s.kind, "metering_root": hx(s.metering_root),
                "rule_hash": hx(s.rule_hash), "statements_root": hx(s.statements_root),
                "result_hash": hx(s.result_hash), "line_count": s.line_count,
                "publisher": s.publisher, "block": s.block_number, "tx_hash": s.tx_hash,
            } for s in self.settlements],
        }


class EventReader:
    """Raw log reads of one contract, decoded by its ABI (no per-log web3 objects: a day
    holds tens of thousands of events)."""

    def __init__(self, market: CapacityMarket) -> None:
        self.market = market
        self.chain = market.chain
        self.events = {}
        for item in market.artefact["abi"]:
            if item.get("type") == "event":
                self.events[item["name"]] = (event_abi_to_log_topic(item), item)
        self.by_topic = {topic: abi for topic, abi in self.events.values()}

    def topic(self, name: str) -> bytes:
        return self.events[name][0]

    def logs(self, names: Iterable[str], ranges: Iterable[tuple[int, int]],
             topics: list | None = None) -> list[dict]:
        """The decoded events of the named kinds in the block ranges (inclusive), in chain
        order; `topics` filters the indexed arguments after the event's own topic."""
        first = ["0x" + self.topic(name).hex() for name in names]
        found = []
        for lo, hi in ranges:
            for start in range(lo, hi + 1, LOG_CHUNK):
                query = {"address": self.market.address, "fromBlock": start,
                         "toBlock": min(hi, start + LOG_CHUNK - 1),
                         "topics": [first, *(topics or [])]}
                found.extend(self._get_logs(query))
        out = [self._decode(log) for log in found]
        out.sort(key=lambda e: (e["block"], e["log_index"]))
        return out

    def _get_logs(self, query: dict) -> list:
        provider = self.chain.w3.provider
        with self.chain.guard():
            if isinstance(provider, EthereumTesterProvider):  # in-process: no JSON to skip
                return list(self.chain.w3.eth.get_logs(query))
            # The raw JSON-RPC answer: web3's per-field formatters cost more than the read
            # itself on a day's tens of thousands of logs.
            answer = provider.make_request("eth_getLogs", [{
                **query, "fromBlock": hex(query["fromBlock"]),
                "toBlock": hex(query["toBlock"])}])
        if "error" in answer:
            raise ChainError(f"eth_getLogs refused: {answer['error']}")
        return answer["result"]

    def _decode(self, log) -> dict:
        topics = [_bytes(t) for t in log["topics"]]
        abi = self.by_topic[topics[0]]
        args = {}
        indexed = [i for i in abi["inputs"] if i["indexed"]]
        for item, topic in zip(indexed, topics[1:], strict=True):
            args[item["name"]] = decode([item["type"]], topic)[0]
        plain = [i for i in abi["inputs"] if not i["indexed"]]
        values = decode([i["type"] for i in plain], _bytes(log["data"]))
        args.update({item["name"]: value for item, value in zip(plain, values, strict=True)})
        return {"event": abi["name"], "args": args, "block": _int(log["blockNumber"]),
                "log_index": _int(log["logIndex"]),
                "tx_hash": "0x" + _bytes(log["transactionHash"]).hex()}


def _bytes(value) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _int(value) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def read_day(market: CapacityMarket, day: date, *, from_block: int = 0,
             to_block: int | None = None) -> ChainDay:
    """Rebuild `day` from the chain: its gate, every order action, each clearing run with its
    trades, root and void, and its settlement runs."""
    reader = EventReader(market)
    chain = market.chain
    head = chain.block_number() if to_block is None else to_block
    number = calendar.day_number(day)
    record = market.day(number)
    orders: dict[str, ChainOrder] = {}
    void_items: list[str] = []
    window = opened_block = opened_by = None
    runs: list[ChainRun] = []
    if record is not None:
        hi = _last_block_before(chain, record.gate_closure, from_block, head)
        lo = _opening_block(market, number, from_block, hi)
        opened = reader.logs(["DayOpened"], [(lo, lo)], [_uint(number)]) if lo is not None \
            else []
        if not opened:  # no past state on this node: read the whole span it may be in
            lo = from_block
            opened = reader.logs(["DayOpened"], [(lo, hi)], [_uint(number)])
        if opened:
            opened_block, opened_by = opened[0]["block"], to_checksum_address(
                opened[0]["args"]["operator"])
        window = (lo, hi)
        _read_orders(reader, number, window, orders, void_items)
        runs = _read_runs(market, reader, number, record.current_run)
    return ChainDay(day=day, gate_closure=None if record is None else record.gate_closure,
                    opened_block=opened_block, opened_by=opened_by, window=window,
                    orders=orders, void_items=void_items, runs=runs,
                    settlements=market.settlement_events(number))


def _uint(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _last_block_before(chain, timestamp: int, lo: int, hi: int) -> int:
    """The last block in lo..hi whose time is before `timestamp` (lo when none is)."""
    def time_of(n: int) -> int:
        with chain.guard():
            return int(chain.w3.eth.get_block(n)["timestamp"])

    if time_of(hi) < timestamp:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if time_of(mid) < timestamp:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _opening_block(market: CapacityMarket, number: int, lo: int, hi: int) -> int | None:
    """The block whose state first holds the day as open, from the contract's state at past
    blocks; None when the node cannot answer for past blocks."""
    def is_open(n: int) -> bool:
        return market.chain.call(market.contract.functions.day(number), block=n)[0] != 0

    try:
        if not is_open(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if is_open(mid):
                hi = mid
            else:
                lo = mid + 1
    except Exception:  # noqa: BLE001 - any refusal of a past block means no past state here
        return None
    return lo


def _read_orders(reader: EventReader, number: int, window: tuple[int, int],
                 orders: dict[str, ChainOrder], void_items: list[str]) -> None:
    day_topic = _uint(number)
    events = reader.logs(["OrderRecorded"], [window], [None, day_topic])
    events += reader.logs(_ORDER_EVENTS[1:], [window], [None, None, day_topic])
    heads = {bytes(e["args"]["batchId"]): e for e in events
             if e["event"] == "OrderBatchRecorded"}
    items: dict[bytes, list[dict]] = {}
    for block in sorted({e["block"] for e in heads.values()}):
        for item in reader.logs(["OrderActionBatched"], [(block, block)]):
            items.setdefault(bytes(item["args"]["batchId"]), []).append(item)
    events += [i for batch_id in heads for i in items.get(batch_id, [])]
    events.sort(key=lambda e: (e["block"], e["log_index"]))
    for event in events:
        args = event["args"]
        kind = event["event"]
        if kind == "OrderBatchRecorded":
            continue
        order_id = bytes32_to_uuid(args["orderId"])
        found = orders.get(order_id)
        if kind == "OrderRecorded":
            if found is not None:  # batched before: the contract cannot see that
                void_items.append(f"order {order_id} recorded again in block "
                                  f"{event['block']}: void")
                continue
            found = orders.setdefault(order_id, ChainOrder(order_id, bytes(args["enterpriseId"]),
                                                           SIDES[args["side"]]))
            found.actions.append(_action("new", 1, args["contentHash"], event))
        elif kind in ("OrderAmended", "OrderCancelled"):
            if found is None:  # the contract refuses this; a node serving it is broken
                void_items.append(f"{kind} of unknown order {order_id} in block "
                                  f"{event['block']}")
                continue
            if kind == "OrderAmended":
                found.actions.append(_action("amend", args["version"], args["contentHash"],
                                             event))
            else:
                found.actions.append(_action("cancel", args["version"], None, event))
        else:  # a batch item: the order rules are applied here, in chain order
            head = heads[bytes(args["batchId"])]["args"]
            action, side = ACTIONS[args["action"]], SIDES[args["side"]]
            problem = None
            if found is None and action != "new":
                problem = "acts on an order never recorded"
            elif found is not None and action == "new":
                problem = "records an order twice"
            elif found is not None and found.cancelled:
                problem = "acts on a cancelled order"
            elif found is not None and (found.side != side
                                        or found.enterprise_key != bytes(head["enterpriseId"])):
                problem = "changes the order's side or enterprise"
            if problem:
                void_items.append(f"batch 0x{bytes(args['batchId']).hex()} item for order "
                                  f"{order_id} {problem}: void")
                continue
            if found is None:
                found = orders.setdefault(order_id, ChainOrder(
                    order_id, bytes(head["enterpriseId"]), side))
            version = found.version + (0 if action == "cancel" else 1)
            found.actions.append(_action(action, version,
                                         None if action == "cancel" else args["contentHash"],
                                         event, bytes(args["batchId"])))


def _action(kind: str, version: int, content_hash, event: dict,
            batch_id: bytes | None = None) -> OrderAction:
    return OrderAction(kind, int(version), None if content_hash is None else bytes(content_hash),
                       event["block"], event["log_index"], event["tx_hash"], batch_id)


def _read_runs(market: CapacityMarket, reader: EventReader, number: int,
               current_run: int) -> list[ChainRun]:
    runs = []
    for run_number in range(1, current_run + 1):
        record = market.clearing_run(number, run_number)
        blocks = market.chain.call(market.contract.functions.runTradeBlocks(number, run_number))
        trades = [TradeEvent(bytes(e["args"]["orderId"]), int(e["args"]["quantity"]),
                             int(e["args"]["amountFen"]), bytes(e["args"]["detailHash"]),
                             e["block"], e["log_index"])
                  for e in reader.logs(["TradeRecorded"], _ranges(int(b) for b in blocks),
                                       [_uint(number), _uint(run_number)])]
        reason = None
        if record.voided:
            for event in reader.logs(["ClearingVoided"],
                                     [(record.voided_block, record.voided_block)],
                                     [_uint(number)]):
                if event["args"]["runNumber"] == run_number:
                    reason = event["args"]["reason"]
        runs.append(ChainRun(**{f.name: getattr(record, f.name) for f in fields(record)},
                             void_reason=reason, trades=tuple(trades)))
    return runs


def _ranges(blocks: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive blocks merged into inclusive ranges."""
    out: list[list[int]] = []
    for block in sorted(set(blocks)):
        if out and block == out[-1][1] + 1:
            out[-1][1] = block
        else:
            out.append([block, block])
    return [(lo, hi) for lo, hi in out]
