"""Benchmark of the chain layer: listing throughput and gas, and an auditor verifying a full
trading day from the chain alone.

Run from the repository root: `python bench/chain.py [--quick] [--orders N] [--seed S]`.
Progress goes to stderr; the last stdout line is one JSON object (see docs BENCHMARKS.md).

Figures:
* `listings_per_s_eth_tester`, `gas_per_listing`: single listings (`recordOrder`, each its
  own transaction) on the in-process chain; `listings_per_s_eth_tester_batched`: the same
  chain taking listings in batches of 96;
* `listings_per_s_anvil`, `gas_per_batch_item`: listings in batches of 96 (`recordOrderBatch`)
  on an anvil node, signed locally and sent raw, as the platform's outbox sends them;
* `audit_day_s`: one full trading day on anvil — `--orders` listings and as many bids (5,000
  each by default) from 100 enterprises over 24 hourly periods (24 hourly clearings in one
  run), its trades and root, a settlement run (about 5,000 statement lines) — verified by
  `parkgrid.auditor.audit_extract` with a fresh connection, the contract address and the
  published extract only: history rebuilt from events, every order matched to its document,
  the clearing recomputed, the settlement recomputed line by line, every line proved.

The day is written as the platform writes it (batches per enterprise, trades in chunks of
400, roots from the same functions). `ok` needs: the day verifies clean with every order,
trade and line counted, and a copy of the extract with one statement amount changed is
reported naming that line.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import sys
import time
import uuid
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from eth_account import Account as EthAccount
from eth_utils import keccak

ROOT = Path(__file__).resolve().parents[1]
# This folder holds settlement.py (the settlement benchmark): keep it from shadowing the
# `settlement` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from parkgrid.auditor import audit_extract  # noqa: E402
from parkgrid.auditor.extract import lines_csv, pack_extract  # noqa: E402
from parkgrid.canonical import (  # noqa: E402
    canonical_json,
    content_hash,
    merkle_root,
    uuid_to_bytes32,
)
from parkgrid.chain import (  # noqa: E402
    ANVIL_DEFAULT_KEY,
    AnvilNode,
    CapacityMarket,
    EthTesterChain,
    connect,
    enterprise_key,
)
from parkgrid.services import clearing  # noqa: E402
from parkgrid.services.settlement import statement_leaves  # noqa: E402
from settlement.day import (  # noqa: E402
    Account,
    DayInputs,
    extract_bytes,
    metering_leaves,
    rule_bytes,
    settle_day,
)
from settlement.metering import MeterDay  # noqa: E402
from settlement.presets import preset  # noqa: E402
from settlement.run import Trade  # noqa: E402

ZONE = "Asia/Shanghai"
BATCH = 96
PERIODS = 24


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def h(label: str) -> bytes:
    return keccak(text=label)


def open_market(chain, admin, enterprises: list[tuple[str, object]], day: int, gate: int):
    market, _receipt = CapacityMarket.deploy(chain, admin)
    market.grant_role(admin, "CLEARING_ROLE", admin.address)
    for code, account in enterprises:
        market.register_enterprise(admin, enterprise_key(code), account.address)
    market.open_day(admin, day, gate)
    return market


# ------------------------------------------------------------------------ throughput and gas

def single_listings(count: int) -> tuple[float, int, float]:
    chain = EthTesterChain()
    admin = chain.funded_account(0)
    seller = chain.funded_account(1)
    market = open_market(chain, admin, [("E0001", seller)], 20300101,
                         chain.latest_timestamp() + 86_400)
    gas = []
    start = time.perf_counter()
    for i in range(count):
        receipt = market.record_order(seller, h(f"single-{i}"), enterprise_key("E0001"),
                                      20300101, "sell", h(f"content-{i}"))
        gas.append(receipt.gas_used)
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    for at in range(0, count * 4, BATCH):
        market.record_order_batch(seller, h(f"batch-{at}"), enterprise_key("E0001"), 20300101,
                                  [(h(f"batched-{at + i}"), "new", "sell", h(f"c-{at + i}"))
                                   for i in range(BATCH)])
    batched = (count * 4 // BATCH + (count * 4 % BATCH > 0)) * BATCH
    return count / elapsed, int(np.median(gas)), batched / (time.perf_counter() - start)


def funded(chain, funder, count: int, rng: random.Random):
    accounts = [EthAccount.from_key(rng.randbytes(32)) for _ in range(count)]
    for account in accounts:
        chain.fund(funder, account.address, 10**19)
    return accounts


# ------------------------------------------------------------------------ a full day

def orders_of_day(rng: random.Random, codes: list[str], per_side: int, day: date):
    """(enterprise code, canonical document) of each listing and bid."""
    out = []
    for side in ("sell", "buy"):
        for i in range(per_side):
            code = codes[rng.randrange(len(codes))]
            first = rng.randrange(PERIODS - 2)
            periods = [[p, f"{rng.randint(10, 300)}.0"] for p in range(first, first + rng.choice(
                (1, 1, 2, 3)))]
            base = 0.05 if side == "sell" else 0.06
            price = Decimal(str(round(base + rng.uniform(-0.02, 0.02), 4))).quantize(
                Decimal("0.0001"))
            document = {
                "type": "order", "order": str(_uuid(rng)), "version": 1, "side": side,
                "status": "open", "enterprise": code, "delivery_day": day.isoformat(),
                "price": format(price, "f"), "all_or_none": False, "min_fraction": None,
                "periods": periods}
            out.append((code, document, i))
    return out


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(bytes=rng.randbytes(16), version=4)


def network_input(codes: list[str], transformers: int, rng: random.Random) -> dict:
    assets, feeders = [], []
    for t in range(transformers):
        limit = 4000 + 500 * rng.randrange(4)
        assets.append({"code": f"T{t:02d}", "kind": "transformer", "limit_kva": f"{limit}",
                       "base_load": [f"{int(limit * rng.uniform(0.5, 0.8))}"
                                     for _ in range(PERIODS)], "parent": f"S{t // 5}"})
        for f in range(3):
            code = f"T{t:02d}F{f}"
            feeders.append(code)
            assets.append({"code": code, "kind": "feeder", "limit_kva": "2000",
                           "base_load": [f"{rng.randint(600, 1200)}" for _ in range(PERIODS)],
                           "parent": f"T{t:02d}"})
    feeder_of = {code: feeders[i % len(feeders)] for i, code in enumerate(codes)}
    return {"type": "clearing-input", "park": "BENCH", "periods": PERIODS,
            "period_minutes": 60, "pricing": "zonal", "tie_rule": "pro_rata", "scope": "park",
            "groups": {code: "park" for code in codes}, "assets": assets,
            "enterprise_feeder": dict(sorted(feeder_of.items()))}


def write_day(node_url: str, per_side: int, enterprises: int, rng: random.Random,
              day: date) -> tuple[bytes, dict, CapacityMarket]:
    chain = connect(node_url)
    admin = EthAccount.from_key(ANVIL_DEFAULT_KEY)
    codes = [f"E{i:04d}" for i in range(1, enterprises + 1)]
    accounts = dict(zip(codes, funded(chain, admin, enterprises, rng), strict=True))
    zone = ZoneInfo(ZONE)
    gate = int(datetime.combine(day - timedelta(days=1), datetime.min.time(), zone)
               .replace(hour=12).timestamp())
    number = int(day.strftime("%Y%m%d"))
    deployment_block = chain.block_number() + 1
    market = open_market(chain, admin, list(accounts.items()), number, gate)
    figures: dict = {}

    documents = orders_of_day(rng, codes, per_side, day)
    by_enterprise: dict[str, list[dict]] = {}
    for code, document, _i in documents:
        by_enterprise.setdefault(code, []).append(document)
    log(f"writing {len(documents)} orders in batches of {BATCH}")
    first_block: dict[str, int] = {}
    gas, items, start = 0, 0, time.perf_counter()
    for code, docs in sorted(by_enterprise.items()):
        for at in range(0, len(docs), BATCH):
            chunk = docs[at:at + BATCH]
            receipt = market.record_order_batch(
                accounts[code], h(f"batch-{code}-{at}"), enterprise_key(code), number,
                [(uuid_to_bytes32(d["order"]), "new", d["side"],
                  bytes.fromhex(content_hash(d)[2:])) for d in chunk])
            gas += receipt.gas_used
            items += len(chunk)
            for d in chunk:
                first_block[d["order"]] = receipt.block_number
    elapsed = time.perf_counter() - start
    figures["listings_per_s_anvil"] = round(items / elapsed, 1)
    figures["gas_per_batch_item"] = round(gas / items)
    log(f"  {items / elapsed:.0f} listings/s, {gas / items:.0f} gas per item")

    log("clearing the day (the platform's clearing functions)")
    inputs = network_input(codes, max(2, enterprises // 10), rng)
    book = [clearing.book_order(d, first_block[d["order"]]) for _c, d, _i in documents]
    instance = clearing.instance_from_input(inputs, book)
    result = clearing.clear_day(instance, "park", inputs["groups"], time_limit_s=60.0)
    result_file = result.canonical_bytes()
    sides = {d["order"]: d["side"] for _c, d, _i in documents}
    lines = clearing.trade_lines(60, result, {k: sides[k] for k in result.accepted})
    root = merkle_root(clearing.result_leaves(result_file, lines, canonical_json(inputs)))
    chain.set_next_block_timestamp(gate + 1)
    market.record_trades(admin, number, 1, [market.trade_item(
        uuid_to_bytes32(x.order_public_id), x.quantity_tenths_kvah, x.amount_fen, x.leaf())
        for x in lines])
    market.publish_clearing(admin, number, 1, root, len(lines))
    figures["trades"] = len(lines)
    log(f"  {len(lines)} trades recorded and published")

    log("settling the day")
    owners = {d["order"]: (d["side"], code) for code, d, _i in documents}
    settled = settlement_inputs(codes, result, owners, rng, day)
    settled_result = settle_day(settled)
    full = list(settled_result.lines)
    settled_file = settled_result.canonical_bytes()
    leaves = statement_leaves(settled_file, full, [])
    market.publish_settlement(
        admin, number, 1, "initial",
        merkle_root([keccak(x) for x in metering_leaves(settled.meter)]),
        keccak(rule_bytes(settled.rule)), merkle_root(leaves), keccak(settled_file), len(full))
    figures["settlement_lines"] = len(full)
    log(f"  {len(full)} statement lines anchored")
    files = {
        "orders.json": json.dumps([d for _c, d, _i in documents]).encode(),
        "clearing/run-1/input.json": canonical_json(inputs),
        "clearing/run-1/result.json": result_file,
        "settlement/run-1/inputs.json": extract_bytes(settled),
        "settlement/run-1/result.json": settled_file,
        "settlement/run-1/lines.csv": lines_csv(
            (i, "full", x.account, x.kind, x.period, x.reference, x.fen)
            for i, x in enumerate(full, start=1)),
    }
    extract = pack_extract(park="BENCH", day=day, timezone=ZONE, period_minutes=60,
                           contract={"chain_id": chain.chain_id(), "address": market.address,
                                     "deployment_block": deployment_block}, files=files)
    figures["orders"] = len(documents)
    return extract, figures, market


def settlement_inputs(codes, result, owners, rng: random.Random, day: date) -> DayInputs:
    """Each enterprise's 15-minute demand around its contract, and its trades of the day."""
    trades, prices = [], {}
    for _key, group in result.groups:
        for order_id, periods in group.accepted.items():
            for period, qty in periods.items():
                if Decimal(qty) <= 0:
                    continue
                price = Decimal(group.order_prices[order_id][period])
                trades.append((order_id, int(period), Decimal(qty), price))
                prices[int(period)] = max(prices.get(int(period), Decimal(0)), price)
    accounts = [Account(code, Decimal(2000), (f"{code}-M1",)) for code in codes]
    return_trades = [Trade(owners[order_id][1], order_id, owners[order_id][0], period, qty,
                           price) for order_id, period, qty, price in trades]
    points = tuple(sorted(f"{code}-M1" for code in codes))
    watts = np.array([[int(rng.uniform(900_000, 2_100_000)) for _ in range(96)]
                      for _ in points], np.int64)
    quality = np.zeros((len(points), 96), np.uint8)
    return DayInputs(park="BENCH", day=day, zone=ZONE, period_minutes=60,
                     accounts=tuple(accounts), meter=MeterDay(day, ZONE, points, watts, quality),
                     trades=tuple(return_trades),
                     prices={p: prices.get(p, Decimal("0.05")) for p in range(PERIODS)},
                     rule=preset("sichuan-2018"))


def tamper_line(extract: bytes) -> tuple[bytes, int]:
    """The extract with the first capacity line's amount changed by one fen."""
    source = zipfile.ZipFile(io.BytesIO(extract))
    out = io.BytesIO()
    position = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "settlement/run-1/lines.csv":
                rows = data.decode().splitlines()
                for i, row in enumerate(rows[1:], start=1):
                    cells = row.split(",")
                    if cells[3] == "capacity":
                        cells[-1] = str(int(cells[-1]) + 1)
                        rows[i], position = ",".join(cells), int(cells[0])
                        break
                data = ("\n".join(rows) + "\n").encode()
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue(), position


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", type=int, default=None,
                        help="listings (and as many bids) of the day (default 5000)")
    parser.add_argument("--enterprises", type=int, default=None)
    parser.add_argument("--singles", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    per_side = args.orders or (500 if args.quick else 5000)
    enterprises = args.enterprises or (20 if args.quick else 100)
    singles = args.singles or (100 if args.quick else 500)
    rng = random.Random(args.seed)
    figures: dict = {"bench": "chain", "quick": args.quick, "seed": args.seed}

    log(f"{singles} single listings on eth-tester")
    rate, gas, batched = single_listings(singles)
    figures["listings_per_s_eth_tester"] = round(rate, 1)
    figures["listings_per_s_eth_tester_batched"] = round(batched, 1)
    figures["gas_per_listing"] = gas

    day = date(2030, 6, 18)
    with AnvilNode() as node:
        extract, day_figures, market = write_day(node.url, per_side, enterprises, rng, day)
        figures.update(day_figures)
        log("auditing the day from the chain and the extract alone")
        auditor_market = CapacityMarket(connect(node.url), market.address)
        start = time.perf_counter()
        report = audit_extract(auditor_market, extract)
        figures["audit_day_s"] = round(time.perf_counter() - start, 3)
        counts = report["counts"]
        figures["audit_clean"] = report["clean"]
        figures["audit_findings"] = len(report["findings"])
        figures["audit_counts"] = counts
        tampered, position = tamper_line(extract)
        bad = audit_extract(auditor_market, tampered)
        named = any(f"line {position} " in f["detail"] for f in bad["findings"])
        figures["tamper_named"] = named
    figures["rss_mb"] = rss_mb()
    checks = [
        report["clean"],
        counts.get("orders_on_chain") == figures["orders"],
        counts.get("order_documents_matched") == figures["orders"],
        counts.get("trades_matched") == figures["trades"],
        counts.get("clearings_identical") == 1,
        counts.get("statement_lines_proved") == figures["settlement_lines"],
        counts.get("settlements_recomputed") == 1,
        named,
    ]
    figures["ok"] = all(checks)
    figures["targets_met"] = bool(
        figures["listings_per_s_anvil"] >= 250 and figures["listings_per_s_eth_tester"] >= 50
        and figures["gas_per_listing"] <= 75_000 and figures["gas_per_batch_item"] <= 5_000
        and figures["audit_day_s"] <= 10)
    if not report["clean"]:
        log(json.dumps(report["findings"][:10], indent=1))
    print(json.dumps({"bench": "chain", "ok": figures.pop("ok"), **figures}))


if __name__ == "__main__":
    main()
