"""A straightforward row-by-row reference of the settlement rules, kept for the benchmark.

It implements what `settlement` implements — validation, estimation, deviation assessment
and the day's money — the plain way: one reading, one interval, one enterprise-period at a
time, values as Decimal kW in dicts, money as exact fractions. It shares only data types
with the fast core (readings rows, rules, trades, accounts), never its computations, and
writes the result file itself, so byte-identical results from the two are a real check.
It is not tuned in any way: this is the obvious way to write the rules down.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

# The repository root first: this folder's settlement.py must not hide the package.
_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

from settlement.deviation import DeviationRule, Exemption  # noqa: E402
from settlement.errors import IncompleteMeteringError, MeteringInputError  # noqa: E402
from settlement.estimation import Outage  # noqa: E402
from settlement.metering import (  # noqa: E402
    QUALITY_ORDER,
    MeterDay,
    MeteringRules,
    Problem,
    Quality,
)
from settlement.run import OPERATOR, Trade  # noqa: E402

INTERVAL = timedelta(minutes=15)
KW = Decimal("0.001")
PRECISION = 120  # every Decimal operation here is exact at this precision


@dataclass
class RefDay:
    """A validated (and possibly estimated) day: one dict entry per point and interval."""

    day: date
    zone: ZoneInfo
    points: list[str]
    starts: list[datetime]  # local start of each interval
    values: dict[tuple[str, int], Decimal | None]
    quality: dict[tuple[str, int], Quality]
    notes: dict[tuple[str, int], str]
    problems: list[Problem]


def rows_of(batch) -> Iterable[tuple[str, int, int, int, int]]:
    """The rows of a ReadingBatch: (point, start epoch seconds, watts, quality code, line)."""
    for p, s, w, q, n in zip(batch.point_index.tolist(), batch.start.tolist(),
                             batch.watts.tolist(), batch.quality.tolist(),
                             batch.line.tolist(), strict=True):
        yield batch.points[p], s, w, q, n


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime, int]:
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end, (end - start) // INTERVAL


def _kw(watts: int) -> Decimal:
    return (Decimal(watts) / 1000).quantize(KW)


# ----------------------------------------------------------------------------- validation

def validate(rows: Iterable[tuple[str, int, int, int, int]], *, points: Iterable[str],
             day: date, zone: str, rules: MeteringRules | None = None) -> RefDay:
    rules = rules or MeteringRules()
    tz = ZoneInfo(zone)
    start, end, count = _day_bounds(day, tz)
    known = set(points)
    problems = []
    by_slot = defaultdict(list)
    for point, epoch, watts, quality, line in rows:
        moment = datetime.fromtimestamp(epoch, UTC)
        kw = _kw(watts)
        at = moment.astimezone(tz).isoformat()
        if start <= moment < end:
            index = (moment - start) // INTERVAL
            on_grid = (moment - start) % INTERVAL == timedelta(0)
        else:
            index, on_grid = None, False
        if point not in known:
            problems.append(Problem(point, index, "unknown-point",
                                    f"{kw} kW at {at} rejected: unknown point", line))
        elif index is None:
            problems.append(Problem(point, None, "outside-day",
                                    f"{kw} kW at {at} rejected: not on {day}", line))
        elif not on_grid:
            problems.append(Problem(point, index, "off-grid",
                                    f"{kw} kW at {at} rejected: not on the 15-minute grid",
                                    line))
        else:
            by_slot[(point, index)].append((kw, quality, line))

    accepted = {}
    for (point, index), entries in by_slot.items():
        values = [kw for kw, _, _ in entries]
        first_line = min(line for _, _, line in entries)
        distinct = sorted(set(values))
        if len(distinct) > 1:
            shown = ", ".join(str(v) for v in distinct)
            problems.append(Problem(point, index, "conflicting-duplicate",
                                    f"{len(values)} readings with different values ({shown} kW)"
                                    " rejected, not merged", first_line))
            continue
        value = distinct[0]
        quality = min(q for _, q, _ in entries)
        if len(values) > 1:
            problems.append(Problem(point, index, "duplicate",
                                    f"{len(values)} identical readings of {value} kW; one kept",
                                    first_line))
        if value < 0:
            problems.append(Problem(point, index, "negative", f"{value} kW rejected",
                                    first_line))
        elif value > rules.max_kw:
            problems.append(Problem(point, index, "over-maximum",
                                    f"{value} kW above the maximum {rules.max_kw} kW "
                                    "(rollover or overflow) rejected", first_line))
        elif value > rules.spike_kw:
            problems.append(Problem(point, index, "spike",
                                    f"{value} kW above the absolute limit {rules.spike_kw} kW "
                                    "rejected", first_line))
        else:
            accepted[(point, index)] = (value, quality, first_line)

    step = rules.max_step_kw
    spikes = []
    for (point, index), (value, _, line) in accepted.items():
        before, after = accepted.get((point, index - 1)), accepted.get((point, index + 1))
        if before is None or after is None:
            continue
        b, a = before[0], after[0]
        if (value - b > step and value - a > step) or (b - value > step and a - value > step):
            spikes.append((point, index, value, b, a, line))
    for point, index, value, b, a, line in spikes:
        problems.append(Problem(point, index, "spike",
                                f"{value} kW jumps more than {step} kW from both "
                                f"neighbours ({b}, {a} kW) rejected", line))
        del accepted[(point, index)]

    values, qualities, notes = {}, {}, {}
    for point in sorted(known):
        for index in range(count):
            key = (point, index)
            if key in accepted:
                value, quality, _ = accepted[key]
                values[key], qualities[key] = value, QUALITY_ORDER[quality]
                if quality:
                    notes[key] = f"{QUALITY_ORDER[quality].value} by the sender"
            else:
                values[key], qualities[key] = None, Quality.MISSING
                notes[key] = "no valid reading"
                if key not in by_slot:
                    problems.append(Problem(point, index, "missing", "no reading"))
    starts = [(start + i * INTERVAL).astimezone(tz) for i in range(count)]
    return RefDay(day, tz, sorted(known), starts, values, qualities, notes,
                  sorted(problems, key=Problem.sort_key))


# ----------------------------------------------------------------------------- estimation

def _covers(outage: Outage, point: str, start: datetime, end: datetime) -> bool:
    return ((outage.point is None or outage.point == point)
            and outage.start < end and start < outage.end)


def _round(kw: Decimal) -> Decimal:
    return kw.quantize(KW, rounding=ROUND_HALF_EVEN)


def _time_of_day(moment: datetime, zone: ZoneInfo) -> tuple[int, int, int]:
    local = moment.astimezone(zone)
    return local.hour, local.minute, local.fold


class _History:
    """Read access to a stored history day, one value at a time."""

    def __init__(self, stored: MeterDay) -> None:
        self.day = stored.day
        self.stored = stored
        self.zone = ZoneInfo(stored.zone)
        self.start, self.end, count = _day_bounds(stored.day, self.zone)
        self.rows = {p: r for r, p in enumerate(stored.points)}
        self.index = {_time_of_day(self.start + i * INTERVAL, self.zone): i
                      for i in range(count)}

    def actual(self, point: str, time_of_day: tuple[int, int, int]) -> Decimal | None:
        row, index = self.rows.get(point), self.index.get(time_of_day)
        if row is None or index is None or int(self.stored.quality[row, index]) != 0:
            return None
        return _kw(int(self.stored.watts[row, index]))


def _like_days(day: RefDay, history: Sequence[MeterDay],
               rules: MeteringRules) -> list[_History]:
    seen = set()
    chosen = []
    for stored in history:
        if stored.zone != day.zone.key:
            raise MeteringInputError(f"history day {stored.day} is in {stored.zone}, "
                                     f"not {day.zone.key}")
        if stored.day in seen:
            raise MeteringInputError(f"history holds {stored.day} twice")
        seen.add(stored.day)
        if not day.day - timedelta(weeks=rules.like_day_weeks) <= stored.day < day.day:
            continue
        if rules.like_days == "same-weekday" and stored.day.weekday() != day.day.weekday():
            continue
        chosen.append(_History(stored))
    return sorted(chosen, key=lambda h: h.day)


def estimate(day: RefDay, *, history: Sequence[MeterDay] = (), outages: Iterable[Outage] = (),
             rules: MeteringRules | None = None) -> RefDay:
    rules = rules or MeteringRules()
    outages = sorted(outages, key=lambda o: (o.start, o.end, o.point or "", o.reason))
    like = _like_days(day, history, rules)
    values, quality, notes = dict(day.values), dict(day.quality), dict(day.notes)
    count = len(day.starts)
    with localcontext(prec=PRECISION):
        for point in day.points:
            blocked = [next((o for o in outages
                             if _covers(o, point, s, s + INTERVAL)), None) for s in day.starts]
            for i, outage in enumerate(blocked):
                if outage is not None and quality[(point, i)] is Quality.MISSING:
                    notes[(point, i)] = f"outage ({outage.reason or 'marked'}): not estimated"
            # Interpolation of short gaps between actual neighbours.
            i = 0
            while i < count:
                if quality[(point, i)] is not Quality.MISSING or blocked[i] is not None:
                    i += 1
                    continue
                first = i
                while (i < count and quality[(point, i)] is Quality.MISSING
                       and blocked[i] is None):
                    i += 1
                left, right, width = first - 1, i, i - first
                if (width > rules.max_gap_intervals or left < 0 or right >= count
                        or quality[(point, left)] is not Quality.ACTUAL
                        or quality[(point, right)] is not Quality.ACTUAL):
                    continue
                low, high = values[(point, left)], values[(point, right)]
                for k in range(1, width + 1):
                    values[(point, left + k)] = _round(low + (high - low) * k / (width + 1))
                    quality[(point, left + k)] = Quality.ESTIMATED
                    notes[(point, left + k)] = (
                        f"interpolated between {day.starts[left]:%H:%M} ({low} kW) and "
                        f"{day.starts[right]:%H:%M} ({high} kW)")
            # Like days for what is left.
            usable = [h for h in like if not any(_covers(o, point, h.start, h.end)
                                                 for o in outages)]
            for i in range(count):
                if quality[(point, i)] is not Quality.MISSING or blocked[i] is not None:
                    continue
                tod = _time_of_day(day.starts[i], day.zone)
                found = [(h.day, h.actual(point, tod)) for h in usable]
                found = [(d, kw) for d, kw in found if kw is not None]
                if not found:
                    notes[(point, i)] = (f"no valid reading and no like-day data "
                                         f"({rules.like_days}, {rules.like_day_weeks} weeks)")
                    continue
                mean = sum((kw for _, kw in found), Decimal(0)) / len(found)
                values[(point, i)] = _round(mean)
                quality[(point, i)] = Quality.ESTIMATED
                notes[(point, i)] = (f"like-day mean ({rules.like_days}) of {len(found)} "
                                     f"day(s): {', '.join(d.isoformat() for d, _ in found)}")
    return RefDay(day.day, day.zone, day.points, day.starts, values, quality, notes,
                  day.problems)


# ----------------------------------------------------------------------------- settlement

def _text(value: Decimal) -> str:
    with localcontext(prec=PRECISION):
        text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def leaves(day: RefDay) -> list[bytes]:
    out = []
    for point in day.points:
        keys = [(point, i) for i in range(len(day.starts))]
        out.append(_canonical({
            "point": point, "day": day.day.isoformat(), "zone": day.zone.key,
            "watts": [0 if day.values[k] is None else int(day.values[k] * 1000) for k in keys],
            "quality": [QUALITY_ORDER.index(day.quality[k]) for k in keys],
        }))
    return out


def _rule_document(rule: DeviationRule) -> dict:
    def band(b):
        return {"upper": _text(b.upper), "lower": _text(b.lower)}

    return {"name": rule.name, "version": rule.version, "band": band(rule.band),
            "price_factor": _text(rule.price_factor), "fixed_price": _text(rule.fixed_price),
            "seasonal": [[m, band(b)] for m, b in sorted(rule.seasonal)],
            "charge_over": rule.charge_over, "charge_under": rule.charge_under,
            "minimum_charge": _text(rule.minimum_charge), "source": rule.source}


def _assess(rule: DeviationRule, month: int, allowed: Decimal, metered: Decimal,
            bought: Decimal, clearing_price: Decimal | None, hours: Decimal,
            exemption: Exemption | None) -> dict:
    deviation = metered - allowed
    band = rule.band_for(month)
    excess = Decimal(0)
    if deviation > 0 and rule.charge_over:
        excess = max(Decimal(0), deviation - band.upper * allowed)
    elif deviation < 0 and rule.charge_under:
        excess = min(bought, max(Decimal(0), -deviation - band.lower * allowed))
    price = (rule.price_factor * clearing_price if clearing_price is not None
             else rule.fixed_price)
    charge = excess * price * hours
    if exemption is not None or charge < rule.minimum_charge:
        charge = Decimal(0)
    return {"allowed_kva": allowed, "metered_kva": metered, "deviation_kva": deviation,
            "excess_kva": excess, "penalty_price": price, "charge_yuan": charge,
            "exempt_reason": None if exemption is None else exemption.reason}


def settle(day: RefDay, *, park: str, period_minutes: int, accounts: Sequence,
           trades: Sequence[Trade], prices: Mapping[int, Decimal], rule: DeviationRule,
           exemptions: Mapping[str, Sequence[Exemption]] | None = None,
           final: bool = False) -> bytes:
    """The result file of one park-day, written out here."""
    exemptions = exemptions or {}
    count = len(day.starts)
    per_period = period_minutes // 15
    periods = math.ceil(count / per_period)
    accounts = sorted(accounts, key=lambda a: a.code)
    if final:
        missing = sorted((p, i) for a in accounts for p in a.points for i in range(count)
                         if day.quality.get((p, i), Quality.MISSING) is Quality.MISSING)
        if missing:
            raise IncompleteMeteringError(tuple(missing))

    with localcontext(prec=PRECISION):
        hours = Decimal(period_minutes) / 60
        assessments, charges = [], []
        for account in accounts:
            for period in range(periods):
                counts = dict.fromkeys(QUALITY_ORDER, 0)
                demand = []
                for i in range(period * per_period, min((period + 1) * per_period, count)):
                    present = []
                    for point in account.points:
                        counts[day.quality.get((point, i), Quality.MISSING)] += 1
                        if day.values.get((point, i)) is not None:
                            present.append(day.values[(point, i)])
                    if present:
                        demand.append(sum(present, Decimal(0)))
                record = {"account": account.code, "period": period,
                          "quality": {q.value: n for q, n in counts.items()},
                          "assessment": None}
                if demand:
                    bought = sum((t.kva for t in trades if t.enterprise == account.code
                                  and t.period == period and t.side == "buy"), Decimal(0))
                    sold = sum((t.kva for t in trades if t.enterprise == account.code
                                and t.period == period and t.side == "sell"), Decimal(0))
                    exemption = next((e for e in exemptions.get(account.code, ())
                                      if e.period == period), None)
                    result = _assess(rule, day.day.month, account.contracted_kva + bought - sold,
                                     max(demand), bought, prices.get(period), hours, exemption)
                    if result["charge_yuan"] > 0:
                        charges.append((account.code, period, result["charge_yuan"]))
                    record["assessment"] = {k: v if k == "exempt_reason" else _text(v)
                                            for k, v in result.items()}
                assessments.append(record)

    # Money: exact fractions of a fen, rounded together by largest remainder.
    exact: dict[tuple, Fraction] = defaultdict(Fraction)
    rent = Fraction(0)
    for t in trades:
        value = Fraction(t.kva) * Fraction(t.price) * Fraction(period_minutes, 60) * 100
        sign = 1 if t.side == "buy" else -1
        exact[(t.enterprise, "capacity", t.period, t.order_id)] += sign * value
        rent += sign * value
    if rent:
        exact[(OPERATOR, "congestion-rent", -1, "")] -= rent
    pool = Fraction(0)
    for code, period, yuan in charges:
        exact[(code, "deviation", period, "")] += Fraction(yuan) * 100
        pool += Fraction(yuan) * 100
    if pool:
        charged = {code for code, _, _ in charges}
        shares = {a.code: Fraction(a.contracted_kva) for a in accounts
                  if a.code not in charged and a.contracted_kva > 0}
        whole = sum(shares.values())
        if not whole:
            exact[(OPERATOR, "penalty-pool", -1, "")] -= pool
        for code, kva in shares.items():
            exact[(code, "penalty-pool", -1, "")] -= pool * kva / whole
    keys = sorted(exact)
    rounded = {k: math.floor(exact[k]) for k in keys}
    missing = round(sum(exact.values())) - sum(rounded.values())  # round() is half-even
    by_remainder = sorted(range(len(keys)),
                          key=lambda i: (-(exact[keys[i]] - rounded[keys[i]]), i))
    for i in by_remainder[:missing]:
        rounded[keys[i]] += 1
    lines = [{"account": k[0], "kind": k[1], "period": None if k[2] == -1 else k[2],
              "reference": k[3], "fen": rounded[k]}
             for k in keys if rounded[k] or exact[k]]

    inputs = {
        "park": park, "day": day.day.isoformat(), "zone": day.zone.key,
        "period_minutes": period_minutes,
        "accounts": [{"code": a.code, "contracted_kva": _text(a.contracted_kva),
                      "points": sorted(a.points)} for a in accounts],
        "metering": hashlib.sha256(b"\n".join(leaves(day))).hexdigest(),
        "trades": [{"enterprise": t.enterprise, "order_id": t.order_id, "side": t.side,
                    "period": t.period, "kva": _text(t.kva), "price": _text(t.price)}
                   for t in sorted(trades, key=lambda t: (t.enterprise, t.period, t.order_id,
                                                          t.side, t.kva, t.price))],
        "prices": [[p, _text(prices[p])] for p in sorted(prices)],
        "rule": _rule_document(rule),
        "exemptions": [{"account": code, "period": e.period, "reason": e.reason,
                        "evidence": e.evidence}
                       for code, e in sorted(((code, e) for code, items in exemptions.items()
                                              for e in items),
                                             key=lambda x: (x[0], x[1].period, x[1].reason,
                                                            x[1].evidence))],
    }
    return _canonical({
        "park": park, "day": day.day.isoformat(), "final": final,
        "rule": {"name": rule.name, "version": rule.version},
        "inputs_digest": hashlib.sha256(_canonical(inputs)).hexdigest(),
        "assessments": assessments, "lines": lines,
    })


def run(rows: Iterable[tuple[str, int, int, int, int]], *, points: Iterable[str], day: date,
        zone: str, history: Sequence[MeterDay] = (), outages: Iterable[Outage] = (),
        rules: MeteringRules | None = None, **settlement) -> tuple[bytes, RefDay]:
    """Validate, estimate and settle one park-day; the result file and the estimated day."""
    outages = list(outages)
    validated = validate(rows, points=points, day=day, zone=zone, rules=rules)
    estimated = estimate(validated, history=history, outages=outages, rules=rules)
    return settle(estimated, **settlement), estimated
