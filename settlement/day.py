"""One park-day's settlement: deviation assessment of every enterprise in every period and
the day's statement lines, as one deterministic result with canonical bytes.

Inputs are a validated and estimated `MeterDay`, the enterprises (accounts) with their
contracted capacity and metering points, the published trades, the clearing prices and the
park's deviation rule. An enterprise's demand in a 15-minute interval is the sum of its
points' values; its metered demand in a period is the largest of these (`deviation`). A
final run refuses while any interval of an enterprise's point is missing; an initial run
settles what it has: a period whose intervals are all missing is not assessed, otherwise
the largest demand there is counts.

Everything is computed in exact integers over whole arrays (demand in W, capacity in VA,
money as integers over one denominator), so a park of 10,000 points settles in well under a
second; the results are the Decimal values and integer fen of the rules as written.

Canonical bytes (`DayResult.canonical_bytes`, `line_bytes`, `rule_bytes`,
`metering_leaves`) are JSON with sorted keys, no spaces, UTF-8, decimals as strings written
exactly without trailing zeros ("0.05", "1200", "0"): what `canonical` makes of the readable
documents (`DayResult.document`, `inputs_document`), written directly for speed.
`inputs_digest` is the SHA-256 of the canonical inputs, in which the metering is the SHA-256
of its leaves joined by "\\n".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal
from functools import cached_property
from json.encoder import encode_basestring as _json_string

import numpy as np

from settlement.deviation import (
    Band,
    DeviationRule,
    Exemption,
    PeriodAssessment,
    excess_beyond_band,
    penalty_price,
)
from settlement.errors import IncompleteMeteringError, SettlementInputError
from settlement.metering import MISSING, QUALITY_ORDER, MeterDay
from settlement.money import decimal_places, scaled_int
from settlement.run import OPERATOR, Line, Trade, line_key, settle_exact, totals

QUARTER_HOUR_MINUTES = 15
_EXACT = Context(prec=200)  # Decimal results here are exact; this only widens the context


@dataclass(frozen=True)
class Account:
    """An enterprise: its contracted capacity and its metering points (demand = their sum)."""

    code: str
    contracted_kva: Decimal
    points: tuple[str, ...]


@dataclass(frozen=True)
class DayInputs:
    """Everything one park-day's settlement depends on."""

    park: str
    day: date
    zone: str  # IANA name, e.g. "Asia/Shanghai"
    period_minutes: int  # 60 usually; a multiple of 15 that divides the day
    accounts: tuple[Account, ...]
    meter: MeterDay  # validated and estimated
    trades: tuple[Trade, ...]  # from the published clearing
    prices: Mapping[int, Decimal]  # period -> clearing price (yuan/kVA/h) for penalties
    rule: DeviationRule
    exemptions: Mapping[str, tuple[Exemption, ...]] = field(default_factory=dict)

    def canonical_bytes(self) -> bytes:
        """The canonical inputs file (`inputs_document`); its SHA-256 is the run's
        `inputs_digest`."""
        return canonical(inputs_document(self))


@dataclass(frozen=True)
class AccountPeriod:
    """One enterprise in one period: its assessment (None when every interval was missing,
    so it was not assessed) and how many point-intervals of each quality it rests on."""

    account: str
    period: int
    assessment: PeriodAssessment | None
    quality: tuple[int, int, int, int]  # counts in QUALITY_ORDER

    def document(self) -> dict:
        a = self.assessment
        return {
            "account": self.account,
            "period": self.period,
            "quality": {q.value: n for q, n in zip(QUALITY_ORDER, self.quality, strict=True)},
            "assessment": None if a is None else {
                "allowed_kva": dec_text(a.allowed_kva),
                "metered_kva": dec_text(a.metered_kva),
                "deviation_kva": dec_text(a.deviation_kva),
                "excess_kva": dec_text(a.excess_kva),
                "penalty_price": dec_text(a.penalty_price),
                "charge_yuan": dec_text(a.charge_yuan),
                "exempt_reason": a.exempt_reason,
            },
        }


@dataclass(frozen=True, eq=False)
class DayAssessment:
    """The assessment step of a day's settlement, as arrays by (account, period); the
    money follows in `settle_assessed`."""

    inputs: DayInputs
    final: bool
    codes: tuple[str, ...]  # accounts, sorted
    assessed: np.ndarray  # bool: some interval had a value
    allowed_va: np.ndarray  # contracted + bought − sold, VA
    metered_va: np.ndarray  # largest interval demand, VA (W)
    excess: np.ndarray  # beyond the band, VA × 10**band_places
    band_places: int
    quality: np.ndarray  # (account, period, code): point-intervals of each quality
    prices: tuple[Decimal, ...]  # penalty price of each period
    # Deviation charges in fen as integers over 10**charge_exponent; exemptions' reasons.
    charges: Mapping[tuple[str, int], int]
    charge_exponent: int
    exempt: Mapping[tuple[str, int], str]
    contracted_va: Mapping[str, int]
    trade_va: tuple[int, ...]  # of inputs.trades, in their order

    @cached_property
    def assessments(self) -> tuple[AccountPeriod, ...]:
        """By account, then period, as Decimal values."""
        out = []
        excess_places = 3 + self.band_places
        charge_places = self.charge_exponent + 2
        rows = zip(self.assessed.tolist(), self.allowed_va.tolist(), self.metered_va.tolist(),
                   self.excess.tolist(), self.quality.tolist(), strict=True)
        for code, (assessed, allowed, metered, excess, quality) in zip(self.codes, rows,
                                                                       strict=True):
            for p, price in enumerate(self.prices):
                result = None
                if assessed[p]:
                    result = PeriodAssessment(
                        p, _decimal(allowed[p], 3), _decimal(metered[p], 3),
                        _decimal(metered[p] - allowed[p], 3),
                        _decimal(excess[p], excess_places), price,
                        _decimal(self.charges.get((code, p), 0), charge_places),
                        self.exempt.get((code, p)))
                out.append(AccountPeriod(code, p, result, tuple(quality[p])))
        return tuple(out)

    def canonical_texts(self) -> list[str]:
        """Each AccountPeriod's canonical JSON, in order, written from the arrays."""
        out = []
        excess_places = 3 + self.band_places
        charge_places = self.charge_exponent + 2
        prices = [f'"penalty_price":"{dec_text(p)}"}}' for p in self.prices]
        charges, exempt = self.charges, self.exempt
        rows = zip(self.assessed.tolist(), self.allowed_va.tolist(), self.metered_va.tolist(),
                   self.excess.tolist(), self.quality.tolist(), strict=True)
        for code, (assessed, allowed, metered, excess, quality) in zip(self.codes, rows,
                                                                       strict=True):
            head = f'{{"account":{_json_string(code)},"assessment":'
            for p, price in enumerate(prices):
                a, e, s, m = quality[p]
                tail = (f',"period":{p},"quality":{{"actual":{a},"estimated":{e},'
                        f'"missing":{m},"substituted":{s}}}}}')
                if not assessed[p]:
                    out.append(f"{head}null{tail}")
                    continue
                reason = exempt.get((code, p))
                out.append(
                    f'{head}{{"allowed_kva":"{_milli(allowed[p])}",'
                    f'"charge_yuan":"{scaled_text(charges.get((code, p), 0), charge_places)}",'
                    f'"deviation_kva":"{_milli(metered[p] - allowed[p])}",'
                    f'"excess_kva":"{scaled_text(excess[p], excess_places)}",'
                    f'"exempt_reason":{"null" if reason is None else _json_string(reason)},'
                    f'"metered_kva":"{_milli(metered[p])}",{price}{tail}')
        return out


@dataclass(frozen=True, eq=False)
class DayResult:
    """A park-day's settlement run: assessments and zero-sum statement lines. Two results
    are equal when their result files are."""

    inputs_digest: str  # SHA-256 hex of the canonical inputs
    lines: tuple[Line, ...]  # statement order, summing to zero fen
    park: str
    day: date
    final: bool
    rule_name: str
    rule_version: int
    assessment: DayAssessment = field(repr=False)

    @property
    def assessments(self) -> tuple[AccountPeriod, ...]:
        """Every account in every period, by account then period."""
        return self.assessment.assessments

    def document(self) -> dict:
        """The result file as a readable document (`canonical` of it is the file)."""
        return {
            "park": self.park,
            "day": self.day.isoformat(),
            "final": self.final,
            "rule": {"name": self.rule_name, "version": self.rule_version},
            "inputs_digest": self.inputs_digest,
            "assessments": [a.document() for a in self.assessments],
            "lines": [line_document(line) for line in self.lines],
        }

    @cached_property
    def _line_texts(self) -> list[str]:
        return [line_text(line) for line in self.lines]

    @cached_property
    def _bytes(self) -> bytes:
        rule = canonical({"name": self.rule_name, "version": self.rule_version}).decode()
        return "".join([
            '{"assessments":[', ",".join(self.assessment.canonical_texts()),
            f'],"day":"{self.day.isoformat()}","final":{"true" if self.final else "false"},',
            f'"inputs_digest":{_json_string(self.inputs_digest)},"lines":[',
            ",".join(self._line_texts), f'],"park":{_json_string(self.park)},"rule":{rule}}}',
        ]).encode()

    def canonical_bytes(self) -> bytes:
        """The run's result file: the same bytes for the same inputs, in any process."""
        return self._bytes

    def statement_leaves(self) -> list[bytes]:
        """One canonical record per statement line, in line order (Merkle leaves)."""
        return [text.encode() for text in self._line_texts]

    @property
    def residual_fen(self) -> int:
        """The sum of all money of the run: 0."""
        return sum(line.fen for line in self.lines)

    def totals(self) -> dict[str, int]:
        return totals(self.lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DayResult):
            return NotImplemented
        return self.canonical_bytes() == other.canonical_bytes()

    __hash__ = None  # type: ignore[assignment]


# ----------------------------------------------------------------------------- canonical

def canonical(value) -> bytes:
    """Sorted keys, no spaces, UTF-8; decimals must already be strings (`dec_text`)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def dec_text(value: Decimal) -> str:
    """A Decimal written exactly, without exponent or trailing zeros: "0.05", "1200", "0"."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


_FRACTION = ("",) + tuple(f".{i:03d}".rstrip("0") for i in range(1, 1000))


def _milli(number: int) -> str:
    if number < 0:
        whole, rest = divmod(-number, 1000)
        return f"-{whole}{_FRACTION[rest]}"
    whole, rest = divmod(number, 1000)
    return f"{whole}{_FRACTION[rest]}"


def scaled_text(number: int, places: int) -> str:
    """number / 10**places written as `dec_text` writes it."""
    if places == 3:
        return _milli(number)
    if number == 0:
        return "0"
    sign, digits = ("-" if number < 0 else ""), str(abs(number))
    if places <= 0:
        return sign + digits + "0" * -places
    digits = digits.rjust(places + 1, "0")
    whole, fraction = digits[:-places], digits[-places:].rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def line_document(line: Line) -> dict:
    return {"account": line.account, "kind": line.kind, "period": line.period,
            "reference": line.reference, "fen": line.fen}


def line_text(line: Line) -> str:
    period = "null" if line.period is None else line.period
    return (f'{{"account":{_json_string(line.account)},"fen":{line.fen},'
            f'"kind":{_json_string(line.kind)},"period":{period},'
            f'"reference":{_json_string(line.reference)}}}')


def line_bytes(line: Line) -> bytes:
    """The canonical bytes of one statement line."""
    return line_text(line).encode()


def rule_document(rule: DeviationRule) -> dict:
    def band(b):
        return {"upper": dec_text(b.upper), "lower": dec_text(b.lower)}

    return {
        "name": rule.name, "version": rule.version, "band": band(rule.band),
        "price_factor": dec_text(rule.price_factor), "fixed_price": dec_text(rule.fixed_price),
        "seasonal": [[month, band(b)] for month, b in sorted(rule.seasonal)],
        "charge_over": rule.charge_over, "charge_under": rule.charge_under,
        "minimum_charge": dec_text(rule.minimum_charge), "source": rule.source,
    }


def rule_bytes(rule: DeviationRule) -> bytes:
    """The canonical bytes of a rule version (what its on-chain hash covers)."""
    return canonical(rule_document(rule))


def _digit_rows(values: np.ndarray) -> list[bytes]:
    """Each row of a non-negative integer array as comma-separated decimal numbers."""
    rows, columns = values.shape
    if not rows or not columns:
        return [b""] * rows
    width = len(str(int(values.max())))
    digits = np.empty((rows, columns, width + 1), np.uint8)
    rest = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        digits[:, :, k] = rest % 10 + 48
        rest //= 10
    digits[:, :, width] = ord(",")
    length = np.ones(values.shape, np.int64)
    for k in range(1, width):
        length += values >= 10 ** k
    keep = np.arange(width + 1) >= (width - length)[:, :, None]
    text = digits[keep].tobytes()
    row_length = (length + 1).sum(axis=1)
    ends = np.cumsum(row_length).tolist()
    return [text[end - size:end - 1] for end, size in zip(ends, row_length.tolist(),
                                                          strict=True)]


def metering_leaves(meter: MeterDay) -> list[bytes]:
    """One canonical record per point, in point order: the point, the day, its zone and every
    interval's value in W and quality code (an index into QUALITY_ORDER: 0 actual,
    1 estimated, 2 substituted, 3 missing)."""
    head = f'{{"day":"{meter.day.isoformat()}","point":'.encode()
    tail = f'],"zone":{_json_string(meter.zone)}}}'.encode()
    if meter.watts.size and meter.watts.min() < 0:  # not from validation; written plainly
        watts = [",".join(map(str, row)).encode() for row in meter.watts.tolist()]
    else:
        watts = _digit_rows(meter.watts)
    quality = _digit_rows(meter.quality)
    return [b"".join((head, _json_string(point).encode(), b',"quality":[', q, b'],"watts":[',
                      w, tail))
            for point, q, w in zip(meter.points, quality, watts, strict=True)]


def _trade_key(trade: Trade) -> tuple:
    return (trade.enterprise, trade.period, trade.order_id, trade.side, Decimal(trade.kva),
            Decimal(trade.price))


def inputs_document(inputs: DayInputs) -> dict:
    """The canonical form of a day's inputs (what `inputs_digest` hashes). Trades are sorted
    by (enterprise, period, order id, side, kVA, price), exemptions by (account, period,
    reason, evidence)."""
    leaves = metering_leaves(inputs.meter)
    return {
        "park": inputs.park,
        "day": inputs.day.isoformat(),
        "zone": inputs.zone,
        "period_minutes": inputs.period_minutes,
        "accounts": sorted(({"code": a.code, "contracted_kva": dec_text(a.contracted_kva),
                             "points": sorted(a.points)} for a in inputs.accounts),
                           key=lambda a: a["code"]),
        "metering": hashlib.sha256(b"\n".join(leaves)).hexdigest(),
        "trades": [{"enterprise": t.enterprise, "order_id": t.order_id, "side": t.side,
                    "period": t.period, "kva": dec_text(Decimal(t.kva)),
                    "price": dec_text(Decimal(t.price))}
                   for t in sorted(inputs.trades, key=_trade_key)],
        "prices": [[p, dec_text(Decimal(inputs.prices[p]))] for p in sorted(inputs.prices)],
        "rule": rule_document(inputs.rule),
        "exemptions": [{"account": code, "period": e.period, "reason": e.reason,
                        "evidence": e.evidence}
                       for code, e in sorted(((code, e) for code, items in
                                              inputs.exemptions.items() for e in items),
                                             key=lambda x: (x[0], x[1].period, x[1].reason,
                                                            x[1].evidence))],
    }


# ----------------------------------------------------------------------------- settlement

def _decimal(number: int, places: int) -> Decimal:
    return Decimal(number).scaleb(-places, _EXACT)


def _amount(value, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise SettlementInputError(f"{what} must be a Decimal, not {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise SettlementInputError(f"{what} {value} is not a finite number")
    return value


def _kva_units(value, what: str) -> int:
    """kVA as integer VA; capacity has at most three decimals."""
    try:
        return scaled_int(_amount(value, what), 3)
    except ValueError as exc:
        raise SettlementInputError(f"{what}: {exc}") from None


def _check(inputs: DayInputs) -> tuple[int, list[int]]:
    """Refuse inconsistent inputs; the number of periods and each trade's VA."""
    minutes = inputs.period_minutes
    if (not isinstance(minutes, int) or minutes <= 0 or minutes % QUARTER_HOUR_MINUTES
            or 1440 % minutes):
        raise SettlementInputError(f"period_minutes {minutes!r} must be a multiple of 15 "
                                   "that divides the day")
    meter = inputs.meter
    if meter.day != inputs.day or meter.zone != inputs.zone:
        raise SettlementInputError(f"metering is for {meter.day} in {meter.zone}, not "
                                   f"{inputs.day} in {inputs.zone}")
    per_period = minutes // QUARTER_HOUR_MINUTES
    periods = -(-meter.watts.shape[1] // per_period)
    codes, owners = set(), {}
    for account in inputs.accounts:
        if not account.code or account.code == OPERATOR or account.code in codes:
            raise SettlementInputError(f"account code {account.code!r} is empty, reserved "
                                       "or given twice")
        codes.add(account.code)
        if _kva_units(account.contracted_kva, f"{account.code} contracted kVA") < 0:
            raise SettlementInputError(f"{account.code}: contracted capacity is negative")
        for point in account.points:
            if point in owners:
                raise SettlementInputError(f"point {point} belongs to {owners[point]} and "
                                           f"{account.code}")
            owners[point] = account.code
    trade_va = []
    for trade in inputs.trades:
        what = f"trade {trade.order_id}"
        if trade.enterprise not in codes:
            raise SettlementInputError(f"{what}: unknown enterprise {trade.enterprise}")
        if trade.side not in ("buy", "sell"):
            raise SettlementInputError(f"{what}: side must be 'buy' or 'sell'")
        if not isinstance(trade.period, int) or not 0 <= trade.period < periods:
            raise SettlementInputError(f"{what}: period {trade.period} is not of the day")
        trade_va.append(_kva_units(trade.kva, what))
        if trade_va[-1] <= 0:
            raise SettlementInputError(f"{what}: capacity must be positive")
        _amount(trade.price, f"{what} price")
    for period, price in inputs.prices.items():
        if not isinstance(period, int) or not 0 <= period < periods:
            raise SettlementInputError(f"clearing price for period {period!r}, which is not "
                                       "of the day")
        _amount(price, f"clearing price of period {period}")
    for period in range(periods):
        price = inputs.prices.get(period)
        if penalty_price(inputs.rule, None if price is None else Decimal(price)) < 0:
            raise SettlementInputError(f"the penalty price of period {period} is negative")
    for code, items in inputs.exemptions.items():
        if code not in codes:
            raise SettlementInputError(f"exemption for unknown account {code}")
        seen = set()
        for exemption in items:
            if not 0 <= exemption.period < periods or exemption.period in seen:
                raise SettlementInputError(f"{code}: exemption for period {exemption.period} "
                                           "is outside the day or given twice")
            seen.add(exemption.period)
    return periods, trade_va


def settle_day(inputs: DayInputs, *, final: bool = False) -> DayResult:
    """Assess and settle one park-day; the result depends on the inputs only, never on the
    order of accounts, points, trades or exemptions."""
    return settle_assessed(assess_day(inputs, final=final))


def assess_day(inputs: DayInputs, *, final: bool = False) -> DayAssessment:
    """Every account in every period: metered demand, allowed demand, excess and charge."""
    periods, trade_va = _check(inputs)
    meter, rule = inputs.meter, inputs.rule
    count = meter.watts.shape[1]
    per_period = inputs.period_minutes // QUARTER_HOUR_MINUTES
    accounts = sorted(inputs.accounts, key=lambda a: a.code)
    codes = tuple(a.code for a in accounts)
    position = {p: r for r, p in enumerate(meter.points)}

    # Memberships (account, point row), by account; a point the meter lacks is all missing.
    member_account, member_row = [], []
    missing: list[tuple[str, int]] = []
    for number, account in enumerate(accounts):
        for point in sorted(account.points):
            member_account.append(number)
            member_row.append(position.get(point, -1))
            if point not in position:
                missing.extend((point, i) for i in range(count))
    member_account = np.array(member_account, np.int64)
    member_row = np.array(member_row, np.int64)
    present = member_row >= 0
    watts = np.zeros((len(member_row), count), np.int64)
    flags = np.full((len(member_row), count), MISSING, np.uint8)
    watts[present] = meter.watts[member_row[present]]
    flags[present] = meter.quality[member_row[present]]
    if final:
        rows, cols = np.nonzero(flags[present] == MISSING)
        points_present = [meter.points[r] for r in member_row[present].tolist()]
        missing.extend((points_present[r], c) for r, c in zip(rows.tolist(), cols.tolist(),
                                                             strict=True))
        if missing:
            raise IncompleteMeteringError(tuple(sorted(missing)))

    # Per account and interval: demand (sum of its points) and the quality counts.
    width = periods * per_period
    demand = np.zeros((len(accounts), width), np.int64)
    counts = np.zeros((4, len(accounts), width), np.int64)
    if len(member_row):
        starts = np.flatnonzero(np.r_[True, np.diff(member_account) != 0])
        owners = member_account[starts]
        demand[owners, :count] = np.add.reduceat(watts, starts, axis=0)
        for code in range(4):
            counts[code, owners, :count] = np.add.reduceat((flags == code).astype(np.int64),
                                                           starts, axis=0)
    has_value = (counts[0] + counts[1] + counts[2]) > 0
    shaped = (len(accounts), periods, per_period)
    metered = np.where(has_value, demand, 0).reshape(shaped).max(axis=2)
    assessed = has_value.reshape(shaped).any(axis=2)
    quality = counts.reshape((4, *shaped)).sum(axis=3).transpose(1, 2, 0)

    # Allowed demand and capacity bought, in VA.
    contracted = np.array([_kva_units(a.contracted_kva, a.code) for a in accounts], np.int64)
    bought = np.zeros((len(accounts), periods), np.int64)
    sold = np.zeros((len(accounts), periods), np.int64)
    index = {c: i for i, c in enumerate(codes)}
    for trade, va in zip(inputs.trades, trade_va, strict=True):
        target = bought if trade.side == "buy" else sold
        target[index[trade.enterprise], trade.period] += va
    allowed = contracted[:, None] + bought - sold
    excess, band_places = excess_beyond_band(rule, inputs.day.month, allowed, metered, bought)
    excess = np.where(assessed, excess, 0)

    # Charges: excess (VA × 10**band_places) × price × hours, in fen over 10**exponent.
    hours_100 = inputs.period_minutes * 100 // 60  # hours × 100, exact for quarter-hours
    prices = tuple(penalty_price(rule, None if p not in inputs.prices
                                 else Decimal(inputs.prices[p])) for p in range(periods))
    price_places = max(decimal_places(p) for p in prices)
    price_units = [scaled_int(p, price_places) for p in prices]
    charge_exponent = 3 + band_places + price_places
    minimum_places = decimal_places(rule.minimum_charge)
    minimum = scaled_int(rule.minimum_charge, minimum_places) * 10 ** (charge_exponent + 2)
    exempt = {(code, e.period): e.reason
              for code, items in inputs.exemptions.items() for e in items}
    charges: dict[tuple[str, int], int] = {}
    for a, p in zip(*(x.tolist() for x in np.nonzero(excess)), strict=True):
        amount = int(excess[a, p]) * price_units[p] * hours_100
        if (codes[a], p) not in exempt and amount * 10 ** minimum_places >= minimum:
            charges[(codes[a], p)] = amount
    return DayAssessment(inputs, final, codes, assessed, allowed, metered, excess, band_places,
                         quality, prices, charges, charge_exponent, exempt,
                         dict(zip(codes, contracted.tolist(), strict=True)), tuple(trade_va))


def settle_assessed(assessment: DayAssessment) -> DayResult:
    """The money of an assessed day: capacity payments, congestion rent, deviation charges
    and the penalty pool, as zero-sum statement lines; and the run's result file."""
    inputs = assessment.inputs
    hours_100 = inputs.period_minutes * 100 // 60
    trade_places = max((decimal_places(Decimal(t.price)) for t in inputs.trades), default=0)
    exponent = max(assessment.charge_exponent, 3 + trade_places)
    capacity = []
    for t, va in zip(inputs.trades, assessment.trade_va, strict=True):
        places = decimal_places(Decimal(t.price))  # kVA × price × hours × 100 fen
        number = (va * scaled_int(Decimal(t.price), places) * hours_100
                  * 10 ** (exponent - 3 - places))
        capacity.append((t.enterprise, t.order_id, t.period,
                         number if t.side == "buy" else -number))
    scale = 10 ** (exponent - assessment.charge_exponent)
    lines = settle_exact(capacity,
                         [(code, p, n * scale) for (code, p), n in assessment.charges.items()],
                         assessment.contracted_va, 10 ** exponent)
    digest = hashlib.sha256(inputs.canonical_bytes()).hexdigest()
    result = DayResult(digest, tuple(lines), inputs.park, inputs.day, assessment.final,
                       inputs.rule.name, inputs.rule.version, assessment)
    result.canonical_bytes()  # the result file is part of the run
    return result


# ----------------------------------------------------------------------------- re-runs

def differences(previous: Sequence[Line], current: Sequence[Line]) -> list[Line]:
    """What a re-run changes: current − previous per (account, kind, period, reference),
    zero deltas dropped; previous totals plus these give the current totals."""
    delta: dict[tuple, int] = {}
    for sign, lines in ((-1, previous), (1, current)):
        for line in lines:
            key = line_key(line)
            delta[key] = delta.get(key, 0) + sign * line.fen
    return [Line(k[0], k[1], None if k[2] == -1 else k[2], k[3], fen)
            for k, fen in sorted(delta.items()) if fen]


def roll_up(days: Mapping[date, Sequence[Line]]) -> list[Line]:
    """A month's statement: each account's lines of one kind summed over the days, with no
    period and the month ("YYYY-MM") as reference; zero-sum when the days are."""
    months = {(d.year, d.month) for d in days}
    if len(months) > 1:
        raise SettlementInputError(f"days of {len(months)} months cannot roll up into one")
    if not months:
        return []
    year, month = months.pop()
    reference = f"{year:04d}-{month:02d}"
    sums: dict[tuple[str, str], int] = {}
    for lines in days.values():
        for line in lines:
            key = (line.account, line.kind)
            sums[key] = sums.get(key, 0) + line.fen
    return [Line(account, kind, None, reference, fen)
            for (account, kind), fen in sorted(sums.items()) if fen]


__all__ = [
    "Account", "AccountPeriod", "DayAssessment", "DayInputs", "DayResult",
    "IncompleteMeteringError", "assess_day", "canonical", "dec_text", "differences",
    "inputs_document", "line_bytes", "metering_leaves", "roll_up", "rule_bytes",
    "scaled_text", "settle_assessed", "settle_day",
]


# ----------------------------------------------------------------------------- extracts

def extract_bytes(inputs: DayInputs) -> bytes:
    """Everything needed to settle the day again, as one canonical file: the inputs document
    and every point's metering record (the metering leaves). `inputs_from_extract` reads it
    back, so a third party can recompute each statement with this package."""
    return canonical({"inputs": inputs_document(inputs),
                      "meter": [json.loads(leaf) for leaf in metering_leaves(inputs.meter)]})


def rule_from_document(doc: Mapping) -> DeviationRule:
    def band(b):
        return Band(Decimal(b["upper"]), Decimal(b["lower"]))

    return DeviationRule(
        name=doc["name"], version=doc["version"], band=band(doc["band"]),
        price_factor=Decimal(doc["price_factor"]), fixed_price=Decimal(doc["fixed_price"]),
        seasonal=tuple((month, band(b)) for month, b in doc["seasonal"]),
        charge_over=doc["charge_over"], charge_under=doc["charge_under"],
        minimum_charge=Decimal(doc["minimum_charge"]), source=doc["source"])


def inputs_from_extract(data: bytes) -> DayInputs:
    """The inputs an extract holds; refuses an extract whose metering records do not match
    the digest in its inputs document."""
    extract = json.loads(data)
    doc, records = extract["inputs"], extract["meter"]
    day = date.fromisoformat(doc["day"])
    points = tuple(record["point"] for record in records)
    meter = MeterDay(day, doc["zone"], points,
                     np.array([r["watts"] for r in records], np.int64).reshape(len(points), -1),
                     np.array([r["quality"] for r in records], np.uint8).reshape(len(points), -1))
    if hashlib.sha256(b"\n".join(metering_leaves(meter))).hexdigest() != doc["metering"]:
        raise SettlementInputError("the extract's metering records do not match its inputs")
    exemptions: dict[str, list[Exemption]] = {}
    for item in doc["exemptions"]:
        exemptions.setdefault(item["account"], []).append(
            Exemption(item["period"], item["reason"], item["evidence"]))
    return DayInputs(
        park=doc["park"], day=day, zone=doc["zone"], period_minutes=doc["period_minutes"],
        accounts=tuple(Account(a["code"], Decimal(a["contracted_kva"]), tuple(a["points"]))
                       for a in doc["accounts"]),
        meter=meter,
        trades=tuple(Trade(t["enterprise"], t["order_id"], t["side"], t["period"],
                           Decimal(t["kva"]), Decimal(t["price"])) for t in doc["trades"]),
        prices={p: Decimal(v) for p, v in doc["prices"]},
        rule=rule_from_document(doc["rule"]),
        exemptions={k: tuple(v) for k, v in exemptions.items()})
