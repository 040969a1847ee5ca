"""AEMO NEM12 interval meter data files (MDFF), read as a stream into a `ReadingBatch`.

A NEM12 file is comma-separated records, each led by its record indicator:

    100  header: VersionHeader NEM12, DateTime, FromParticipant, ToParticipant (first, once)
    200  data stream details: NMI, NMIConfiguration, RegisterID, NMISuffix,
         MDMDataStreamIdentifier, MeterSerialNumber, UOM, IntervalLength,
         NextScheduledReadDate
    300  one day of one stream: IntervalDate, 1440/IntervalLength values, QualityMethod,
         ReasonCode, ReasonDescription, UpdateDateTime, MSATSLoadDateTime
    400  quality of intervals StartInterval..EndInterval of a day whose QualityMethod is V
    500  B2B details of the preceding 300/400 records (ignored here)
    900  end (last, once)

The metering point is the NMI. Only energy streams (suffix E…) are read; other streams
(B export, Q/K reactive, …) are checked and counted as skipped. Energy per interval
becomes mean demand (energy × 60 / IntervalLength), demand units are taken as they are;
5-minute data is summed into quarter hours, 30-minute data cannot be split and is refused.
Interval k of a day starts at local midnight of IntervalDate in the park's zone plus
k × IntervalLength. A malformed file is refused as a whole with its line number and the
reason; nothing of it is returned.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from math import gcd
from zoneinfo import ZoneInfo

import numpy as np

from settlement.batch import QUALITY_CODE, ReadingBatch
from settlement.csv_format import text_lines
from settlement.errors import FileFormatError
from settlement.metering import Quality

# Fields per record, the indicator included; a 300 record has 7 plus its interval values.
FIELD_COUNT = {"100": 5, "200": 10, "400": 6, "500": 5, "900": 1}
INTERVAL_LENGTHS = (5, 15, 30)
QUARTERS = 96  # a NEM12 day is always 1440 minutes
_OFFSETS = np.arange(QUARTERS, dtype=np.int64) * 15 * 60

# Energy units in Wh, demand units in W; MDFF files write them in either case (KWH, kWh).
ENERGY_WH = {"wh": 1, "kwh": 1000, "mwh": 1000000}
DEMAND_W = {"w": 1, "kw": 1000, "mw": 1000000}

# First character of QualityMethod; N (null) has no value, V is given per interval by 400s.
QUALITY_FLAGS = {"A": Quality.ACTUAL, "E": Quality.ESTIMATED, "F": Quality.SUBSTITUTED,
                 "S": Quality.SUBSTITUTED, "N": None}
_NULL = 255  # quality code of a null interval while a day is being read

_QUALITY_METHOD = re.compile(r"[AEFNS](?:\d\d)?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?(?:,-?\d+(?:\.\d+)?)*")
_DIGITS = re.compile(r"\d+")
_UNIFORM: dict[int, re.Pattern[str]] = {}  # values with exactly n decimals, by n
_INT64 = 2 ** 63


class Nem12FormatError(FileFormatError):
    """A record of a NEM12 file is malformed or out of order; `line` is its 1-based number."""


def sniff(first_bytes: bytes) -> str:
    """"nem12" when the data starts with a 100 record naming NEM12, else "csv"."""
    text = first_bytes.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    fields = text.split(b"\n", 1)[0].rstrip(b"\r").split(b",")
    if len(fields) >= 2 and fields[0].strip() == b"100" and fields[1].strip() == b"NEM12":
        return "nem12"
    return "csv"


def read_nem12(chunks: Iterable[bytes], *, zone: str | ZoneInfo = "Asia/Shanghai",
               ) -> ReadingBatch:
    """The readings of a NEM12 file given as byte chunks; raises Nem12FormatError."""
    return read_nem12_with_summary(chunks, zone=zone)[0]


def read_nem12_with_summary(chunks: Iterable[bytes], *,
                            zone: str | ZoneInfo = "Asia/Shanghai",
                            ) -> tuple[ReadingBatch, dict]:
    """The readings of a NEM12 file and a summary of what was read and skipped.

    Summary keys: `nmis` (metering points read), `days` (300 records read), `readings`,
    `null_intervals` (quarter hours left without a value by quality N), `skipped_streams`
    (200 records of non-energy streams by suffix) and `skipped_days` (their 300 records).
    """
    reader = _Reader(zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone))
    last = 0
    for number, text in text_lines(chunks, Nem12FormatError):
        last = number
        if text.strip():
            reader.record(number, text)
    reader.finish(last)
    return reader.batch(), reader.summary()


def _date(text: str, what: str, line: int) -> date:
    if len(text) == 8 and _DIGITS.fullmatch(text):
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    raise Nem12FormatError(line, f"{what} {text!r} is not a date (YYYYMMDD)")


def _optional_datetime(text: str, what: str, line: int, digits: int) -> None:
    """Check a DateTime(12) or DateTime(14) field when it is given."""
    if not text:
        return
    if len(text) == digits and _DIGITS.fullmatch(text):
        try:
            datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                     int(text[10:12]), int(text[12:14] or 0))
            return
        except ValueError:
            pass
    layout = "YYYYMMDDhhmm" + ("ss" if digits == 14 else "")
    raise Nem12FormatError(line, f"{what} {text!r} is not a date and time ({layout})")


def _reason_code(text: str, line: int) -> None:
    if text and not _DIGITS.fullmatch(text):
        raise Nem12FormatError(line, f"ReasonCode {text!r} is not a number")


def _scaled(values: list[str], joined: str, line: int) -> tuple[list[int], int]:
    """Decimal texts as integers in units of 10**-scale, one scale for all of them."""
    first = values[0]
    scale = len(first) - first.index(".") - 1 if "." in first else 0
    uniform = _UNIFORM.get(scale)
    if uniform is None:
        number = rf"-?\d+\.\d{{{scale}}}" if scale else r"-?\d+"
        uniform = _UNIFORM[scale] = re.compile(rf"{number}(?:,{number})*")
    if uniform.fullmatch(joined):  # the usual case: every value with the same decimals
        return list(map(int, joined.replace(".", "").split(","))), scale
    if not _NUMBERS.fullmatch(joined):
        bad = next(t for t in values if not _NUMBER.fullmatch(t))
        raise Nem12FormatError(line, f"interval value {bad!r} is not a number")
    scale = max((len(v) - v.index(".") - 1 for v in values if "." in v), default=0)
    out = []
    for v in values:
        whole, _, fraction = v.partition(".")
        out.append(int(whole + fraction.ljust(scale, "0")))
    return out, scale


@dataclass
class _Stream:
    """The 200 record in force: which stream the following days belong to."""

    line: int
    nmi: str
    suffix: str
    uom: str
    length: int  # minutes per interval
    used: bool
    point: int = -1
    numerator: int = 0  # W = quarter sum of values × numerator / denominator
    denominator: int = 1

    @property
    def count(self) -> int:
        return 1440 // self.length


@dataclass
class _Day:
    """A 300 record whose QualityMethod is V, waiting for its 400 records."""

    line: int
    start: int  # UTC epoch seconds of the day's first interval
    texts: list[str]
    scaled: list[int]
    scale: int
    codes: bytearray = field(default_factory=bytearray)  # per interval, 0 = not yet given
    events: int = 0


class _Reader:
    """Record-order state machine; collects the readings of the energy streams."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.header = False
        self.ended: int | None = None
        self.previous: str | None = None
        self.stream: _Stream | None = None
        self.day: _Day | None = None
        self.day_quality: str = ""  # QualityMethod of the last 300 record
        self.energy_stream: dict[str, tuple[str, int]] = {}  # NMI -> (suffix, line)
        self.points: dict[str, int] = {}
        self.midnights: dict[date, int] = {}
        # Per day read: (point, line, starts, watts, quality codes).
        self.parts: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.days = 0
        self.null_intervals = 0
        self.skipped_streams: dict[str, int] = {}
        self.skipped_days = 0

    # -- records -------------------------------------------------------------------------

    def record(self, line: int, text: str) -> None:
        fields = next(csv.reader([text])) if '"' in text else text.split(",")
        kind = fields[0].strip()
        if self.ended is not None:
            raise Nem12FormatError(line, f"nothing may follow the 900 end record on line "
                                         f"{self.ended}")
        if not self.header and kind != "100":
            raise Nem12FormatError(line, "the file must start with a 100 header record, "
                                         f"not {kind!r}")
        if kind not in FIELD_COUNT and kind != "300":
            raise Nem12FormatError(line, f"unknown record indicator {kind!r}")
        if kind != "400" and self.day is not None:
            self._close_day()
        if kind == "100":
            self._header(line, fields)
        elif kind == "200":
            self._details(line, fields)
        elif kind == "300":
            self._interval_data(line, fields)
        elif kind == "400":
            self._event(line, fields)
        elif kind == "500":
            if self.previous not in ("300", "400", "500"):
                raise Nem12FormatError(line, "a 500 record must follow a 300 or 400 record")
            self._count(line, fields, kind)
        else:
            self._no_empty_stream(line)
            self._count(line, fields, kind)
            self.ended = line
        self.previous = kind

    def finish(self, last: int) -> None:
        if not self.header:
            raise Nem12FormatError(1, "the file is empty")
        if self.ended is None:
            raise Nem12FormatError(last + 1, "the file ends without a 900 end record")

    def _count(self, line: int, fields: list[str], kind: str) -> None:
        if len(fields) != FIELD_COUNT[kind]:
            raise Nem12FormatError(line, f"{len(fields)} fields instead of "
                                         f"{FIELD_COUNT[kind]} in a {kind} record")

    def _no_empty_stream(self, line: int) -> None:
        if self.previous == "200" and self.stream is not None:
            raise Nem12FormatError(line, f"the 200 record on line {self.stream.line} has no "
                                         "300 records")

    def _header(self, line: int, fields: list[str]) -> None:
        if self.header:
            raise Nem12FormatError(line, "a second 100 header record")
        self._count(line, fields, "100")
        version = fields[1].strip()
        if version != "NEM12":
            raise Nem12FormatError(line, f"version header {version!r}: not a NEM12 file")
        _optional_datetime(fields[2].strip(), "DateTime", line, 12)
        self.header = True

    def _details(self, line: int, fields: list[str]) -> None:
        self._no_empty_stream(line)
        self._count(line, fields, "200")
        nmi, suffix, uom = fields[1].strip(), fields[4].strip(), fields[7].strip()
        length_text, next_read = fields[8].strip(), fields[9].strip()
        if not nmi:
            raise Nem12FormatError(line, "the NMI is empty")
        if not suffix:
            raise Nem12FormatError(line, "the NMISuffix is empty")
        if not _DIGITS.fullmatch(length_text):
            raise Nem12FormatError(line, f"IntervalLength {length_text!r} is not a number")
        length = int(length_text)
        if length not in INTERVAL_LENGTHS:
            raise Nem12FormatError(line, f"IntervalLength {length} is not 5, 15 or 30 minutes")
        if next_read:
            _date(next_read, "NextScheduledReadDate", line)
        stream = _Stream(line, nmi, suffix, uom, length, used=suffix.startswith("E"))
        if not stream.used:
            self.skipped_streams[suffix] = self.skipped_streams.get(suffix, 0) + 1
        else:
            self._energy_stream(stream)
        self.stream = stream

    def _energy_stream(self, stream: _Stream) -> None:
        line, unit = stream.line, stream.uom.lower()
        known = self.energy_stream.setdefault(stream.nmi, (stream.suffix, line))
        if known[0] != stream.suffix:
            raise Nem12FormatError(line, f"NMI {stream.nmi} has two energy streams, "
                                         f"{known[0]} (line {known[1]}) and {stream.suffix}: "
                                         "ambiguous")
        if stream.length == 30:
            raise Nem12FormatError(line, "30-minute intervals cannot be split into the "
                                         "quarter hours settlement uses")
        per_quarter = 15 // stream.length
        if unit in ENERGY_WH:
            # Energy over the quarter hour × 4 is its mean demand.
            stream.numerator = ENERGY_WH[unit] * 4
        elif unit in DEMAND_W:
            stream.numerator, stream.denominator = DEMAND_W[unit], per_quarter
        else:
            raise Nem12FormatError(line, f"unit {stream.uom!r} of stream {stream.suffix} is "
                                         "not energy (Wh, kWh, MWh) or demand (W, kW, MW)")
        stream.point = self.points.setdefault(stream.nmi, len(self.points))

    def _interval_data(self, line: int, fields: list[str]) -> None:
        stream = self.stream
        if stream is None:
            raise Nem12FormatError(line, "a 300 record must follow a 200 record")
        count = stream.count
        if len(fields) != count + 7:
            raise Nem12FormatError(line, f"{len(fields)} fields: a 300 record of "
                                         f"{stream.length}-minute data has {count + 7} "
                                         f"({count} interval values)")
        day = _date(fields[1].strip(), "IntervalDate", line)
        texts = fields[2:2 + count]
        method, reason, _, updated, loaded = (f.strip() for f in fields[2 + count:])
        scaled, scale = _scaled(texts, ",".join(texts), line)
        if method != "V" and not _QUALITY_METHOD.fullmatch(method):
            raise Nem12FormatError(line, f"QualityMethod {method!r} is not A, E, F, N, S "
                                         "(with an optional method number) or V")
        _reason_code(reason, line)
        _optional_datetime(updated, "UpdateDateTime", line, 14)
        _optional_datetime(loaded, "MSATSLoadDateTime", line, 14)
        self.day_quality = method
        if not stream.used:
            self.skipped_days += 1
            if method == "V":
                self.day = _Day(line, 0, texts, scaled, scale, bytearray(count))
            return
        self.days += 1
        start = self._midnight(day)
        if method == "V":
            self.day = _Day(line, start, texts, scaled, scale, bytearray(count))
            return
        flag = QUALITY_FLAGS[method[0]]
        self._emit(line, start, texts, scaled, scale,
                   _NULL if flag is None else QUALITY_CODE[flag] + 1)

    def _event(self, line: int, fields: list[str]) -> None:
        day = self.day
        if day is None or self.previous not in ("300", "400"):
            after = (f"a 300 record with QualityMethod {self.day_quality}"
                     if self.previous == "300" else f"a {self.previous} record")
            raise Nem12FormatError(line, "a 400 record must follow a 300 record with "
                                         f"QualityMethod V (or another 400), not {after}")
        self._count(line, fields, "400")
        first_text, last_text, method, reason = (f.strip() for f in fields[1:5])
        for name, text in (("StartInterval", first_text), ("EndInterval", last_text)):
            if not _DIGITS.fullmatch(text):
                raise Nem12FormatError(line, f"{name} {text!r} is not a number")
        first, last, count = int(first_text), int(last_text), len(day.codes)
        if not 1 <= first <= last <= count:
            raise Nem12FormatError(line, f"intervals {first}–{last} are not a range within "
                                         f"1–{count}")
        if not _QUALITY_METHOD.fullmatch(method):
            raise Nem12FormatError(line, f"QualityMethod {method!r} of a 400 record is not "
                                         "A, E, F, N or S (with an optional method number)")
        _reason_code(reason, line)
        if any(day.codes[first - 1:last]):
            raise Nem12FormatError(line, f"intervals {first}–{last} overlap an earlier 400 "
                                         "record of the same day")
        flag = QUALITY_FLAGS[method[0]]
        code = _NULL if flag is None else QUALITY_CODE[flag] + 1
        day.codes[first - 1:last] = bytes([code]) * (last - first + 1)
        day.events += 1

    def _close_day(self) -> None:
        day, self.day = self.day, None
        assert day is not None
        if not day.events:
            raise Nem12FormatError(day.line, "QualityMethod V needs 400 records giving the "
                                             "quality of every interval; there are none")
        if 0 in day.codes:
            gap = day.codes.index(0)
            end = gap
            while end + 1 < len(day.codes) and day.codes[end + 1] == 0:
                end += 1
            raise Nem12FormatError(day.line, f"intervals {gap + 1}–{end + 1} of this V day "
                                             "are not covered by any 400 record")
        if self.stream is not None and self.stream.used:
            self._emit(day.line, day.start, day.texts, day.scaled, day.scale, day.codes)

    # -- readings ------------------------------------------------------------------------

    def _midnight(self, day: date) -> int:
        start = self.midnights.get(day)
        if start is None:
            start = int(datetime.combine(day, time(0), tzinfo=self.zone).timestamp())
            self.midnights[day] = start
        return start

    def _emit(self, line: int, start: int, texts: list[str], scaled: list[int], scale: int,
              codes: int | bytearray) -> None:
        """Add one day's quarter hours.

        `codes` is quality code + 1 (or _NULL) for the whole day, or one per interval.
        """
        stream = self.stream
        assert stream is not None
        per_quarter = 15 // stream.length
        numerator, denominator = stream.numerator, stream.denominator * 10 ** scale
        common = gcd(numerator, denominator)
        numerator, denominator = numerator // common, denominator // common
        keep: np.ndarray | None = None
        if isinstance(codes, int):
            if codes == _NULL:
                self.null_intervals += QUARTERS
                return
            quality = np.full(QUARTERS, codes - 1, np.uint8)
        else:
            grid = np.frombuffer(bytes(codes), np.uint8).reshape(QUARTERS, per_quarter)
            keep = ~(grid == _NULL).any(axis=1)
            # A quarter hour's quality is the worst of its intervals (code order).
            quality = grid.max(axis=1) - 1
        limit = _INT64 // (per_quarter * numerator)
        if -limit < min(scaled) and max(scaled) < limit and denominator < _INT64:
            watts = np.array(scaled, np.int64)
            if per_quarter > 1:
                watts = watts.reshape(QUARTERS, per_quarter).sum(axis=1)
            if numerator != 1:
                watts *= numerator
            exact = True
            if denominator != 1:
                watts, rest = np.divmod(watts, denominator)
                exact = not (rest if keep is None else rest[keep]).any()
            if exact:
                self._add(stream.point, line, start, keep, watts, quality)
                return
        # Exact integers beyond int64, or a value finer than a watt to point at.
        values = []
        for quarter in range(QUARTERS):
            first = quarter * per_quarter
            value, rest = divmod(sum(scaled[first:first + per_quarter]) * numerator,
                                 denominator)
            used = keep is None or keep[quarter]
            if used and rest:
                shown = ", ".join(texts[first:first + per_quarter])
                where = (f"interval {first + 1}" if per_quarter == 1
                         else f"intervals {first + 1}–{first + per_quarter}")
                raise Nem12FormatError(line, f"{where} ({shown} {stream.uom}) has more "
                                             "precision than a watt")
            if used and not -_INT64 <= value < _INT64:
                raise Nem12FormatError(line, f"interval {first + 1} is out of range")
            values.append(value if used else 0)
        self._add(stream.point, line, start, keep, np.array(values, np.int64), quality)

    def _add(self, point: int, line: int, start: int, keep: np.ndarray | None,
             watts: np.ndarray, quality: np.ndarray) -> None:
        if keep is None:
            self.parts.append((point, line, start + _OFFSETS, watts, quality))
            return
        self.parts.append((point, line, start + _OFFSETS[keep], watts[keep], quality[keep]))
        self.null_intervals += QUARTERS - int(keep.sum())

    def batch(self) -> ReadingBatch:
        sizes = [len(part[2]) for part in self.parts]
        if not sizes:
            return ReadingBatch(tuple(self.points), np.zeros(0, np.int32),
                                np.zeros(0, np.int64), np.zeros(0, np.int64),
                                np.zeros(0, np.uint8), np.zeros(0, np.int32))
        return ReadingBatch(
            tuple(self.points),
            np.repeat(np.array([part[0] for part in self.parts], np.int32), sizes),
            np.concatenate([part[2] for part in self.parts]),
            np.concatenate([part[3] for part in self.parts]),
            np.concatenate([part[4] for part in self.parts]).astype(np.uint8),
            np.repeat(np.array([part[1] for part in self.parts], np.int32), sizes))

    def summary(self) -> dict:
        return {"nmis": len(self.points), "days": self.days,
                "readings": sum(len(part[2]) for part in self.parts),
                "null_intervals": self.null_intervals,
                "skipped_streams": dict(sorted(self.skipped_streams.items())),
                "skipped_days": self.skipped_days}
