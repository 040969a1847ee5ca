"""The documented CSV format of interval readings, read as a stream.

    point,start,kw
    MP-E001-1,2026-11-24T00:00:00+08:00,812.500

One header line exactly as above, then one reading per line: the metering point code, the
interval's start as an ISO 8601 time with its UTC offset, and the mean demand in kW with at
most three decimals. UTF-8 (a byte-order mark is allowed). Any malformed line refuses the
whole file with its line number and the reason; nothing of a refused file is used.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation

from settlement.errors import MeteringInputError
from settlement.metering import Reading

HEADER = ("point", "start", "kw")


class CsvFormatError(MeteringInputError):
    """A line of a readings file is malformed; `line` is its 1-based number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def _text_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    number = 0
    for chunk in chunks:
        try:
            pending += decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise CsvFormatError(number + pending.count("\n") + 1,
                                 f"not UTF-8 text ({exc.reason})") from exc
        *complete, pending = pending.split("\n")
        for line in complete:
            number += 1
            yield number, line.rstrip("\r")
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise CsvFormatError(number + 1, f"not UTF-8 text ({exc.reason})") from exc
    if pending:
        number += 1
        yield number, pending.rstrip("\r")


def read_readings(chunks: Iterable[bytes]) -> Iterator[Reading]:
    """Yield the readings of a CSV file given as byte chunks (e.g. an open file's blocks).

    Raises CsvFormatError at the first malformed line; a caller stores nothing of the file
    unless the whole stream was read without an error.
    """
    lines = _text_lines(chunks)
    first = next(lines, None)
    if first is None:
        raise CsvFormatError(1, "the file is empty")
    header = tuple(next(csv.reader([first[1]])))
    if header != HEADER:
        raise CsvFormatError(1, f"the header must be {','.join(HEADER)}, got "
                                f"{','.join(header) or 'nothing'}")
    for number, text in lines:
        if not text.strip():
            continue
        fields = next(csv.reader([text]))
        if len(fields) != len(HEADER):
            raise CsvFormatError(number, f"{len(fields)} fields instead of {len(HEADER)} "
                                         "(a truncated or merged line?)")
        point, start_text, kw_text = (f.strip() for f in fields)
        if not point:
            raise CsvFormatError(number, "the metering point is empty")
        try:
            start = datetime.fromisoformat(start_text)
        except ValueError:
            raise CsvFormatError(number, f"{start_text!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            raise CsvFormatError(number, f"{start_text!r} has no UTC offset")
        try:
            kw = Decimal(kw_text)
        except InvalidOperation:
            raise CsvFormatError(number, f"{kw_text!r} is not a number") from None
        try:
            yield Reading(point, start, kw)
        except MeteringInputError as exc:
            raise CsvFormatError(number, str(exc)) from exc
