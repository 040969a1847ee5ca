"""The documented CSV format of interval readings, read as a stream.

    point,start,kw
    MP-E001-1,2026-11-24T00:00:00+08:00,812.500

One header line exactly as above, then one reading per line: the metering point code, the
interval's start as an ISO 8601 time with its UTC offset, and the mean demand in kW with at
most three decimals. UTF-8 (a byte-order mark is allowed). Any malformed line refuses the
whole file with its line number and the reason; nothing of a refused file is used.

`read_readings` yields `Reading` objects; `read_batch` reads the same format with the same
errors straight into columns (`ReadingBatch`), for files of a whole park-day: a start time
is parsed once per distinct text (a day has 96), and plain kW values without a Decimal.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import numpy as np

from settlement.batch import ReadingBatch
from settlement.errors import FileFormatError, MeteringInputError
from settlement.metering import Reading, to_kw

HEADER = ("point", "start", "kw")


class CsvFormatError(FileFormatError):
    """A line of a readings CSV file is malformed."""


def _text_blocks(chunks: Iterable[bytes], error: type[FileFormatError] = CsvFormatError
                 ) -> Iterator[tuple[int, list[str]]]:
    """The file's lines in blocks: (number of the block's first line, its lines).

    Bytes that are not UTF-8 raise `error` on the line where they are."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    number = 0
    for chunk in chunks:
        try:
            pending += decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _not_utf8(exc, number, pending, error) from exc
        *complete, pending = pending.split("\n")
        if complete:
            yield number + 1, complete
            number += len(complete)
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, number, pending, error) from exc
    if pending:
        yield number + 1, [pending]


def _not_utf8(exc: UnicodeDecodeError, number: int, pending: str,
              error: type[FileFormatError]) -> FileFormatError:
    """The error on the line where the bad bytes are, however the file was chunked."""
    valid = exc.object[:exc.start].decode("utf-8", errors="replace")
    return error(number + (pending + valid).count("\n") + 1, f"not UTF-8 text ({exc.reason})")


def text_lines(chunks: Iterable[bytes], error: type[FileFormatError] = CsvFormatError
               ) -> Iterator[tuple[int, str]]:
    """(1-based number, text) of each line of a UTF-8 file given as byte chunks."""
    for first, block in _text_blocks(chunks, error):
        for offset, line in enumerate(block):
            yield first + offset, line.rstrip("\r")


def _check_header(lines: Iterator[tuple[int, str]]) -> None:
    first = next(lines, None)
    if first is None:
        raise CsvFormatError(1, "the file is empty")
    header = tuple(next(csv.reader([first[1]])))
    if header != HEADER:
        raise CsvFormatError(1, f"the header must be {','.join(HEADER)}, got "
                                f"{','.join(header) or 'nothing'}")


def _fields(number: int, text: str) -> tuple[str, str, str]:
    fields = next(csv.reader([text])) if '"' in text else text.split(",")
    if len(fields) != len(HEADER):
        raise CsvFormatError(number, f"{len(fields)} fields instead of {len(HEADER)} "
                                     "(a truncated or merged line?)")
    point, start_text, kw_text = (f.strip() for f in fields)
    if not point:
        raise CsvFormatError(number, "the metering point is empty")
    return point, start_text, kw_text


def _start(number: int, text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise CsvFormatError(number, f"{text!r} is not an ISO 8601 time") from None
    if start.tzinfo is None:
        raise CsvFormatError(number, f"{text!r} has no UTC offset")
    return start


def _kw(number: int, text: str) -> Decimal:
    try:
        kw = Decimal(text)
    except InvalidOperation:
        raise CsvFormatError(number, f"{text!r} is not a number") from None
    try:
        return to_kw(kw)
    except MeteringInputError as exc:
        raise CsvFormatError(number, str(exc)) from exc


def read_readings(chunks: Iterable[bytes]) -> Iterator[Reading]:
    """Yield the readings of a CSV file given as byte chunks (e.g. an open file's blocks).

    Raises CsvFormatError at the first malformed line; a caller stores nothing of the file
    unless the whole stream was read without an error.
    """
    lines = text_lines(chunks)
    _check_header(lines)
    for number, text in lines:
        if not text.strip():
            continue
        point, start_text, kw_text = _fields(number, text)
        start = _start(number, start_text)
        kw = _kw(number, kw_text)
        try:
            yield Reading(point, start, kw)
        except MeteringInputError as exc:
            raise CsvFormatError(number, str(exc)) from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _plain_watts(text: str) -> int | None:
    """Watts of a plain "123" or "-123.456" kW text, or None for anything else."""
    whole, dot, fraction = text.partition(".")
    digits = whole[1:] if whole[:1] == "-" else whole
    if not (digits.isascii() and digits.isdigit()):
        return None
    if dot and not (0 < len(fraction) <= 3 and fraction.isascii() and fraction.isdigit()):
        return None
    watts = int(digits) * 1000 + (int(fraction.ljust(3, "0")) if dot else 0)
    return -watts if whole[:1] == "-" else watts


def _fast_block(first: int, block: list[str], index: dict[str, int],
                starts: dict[str, int]) -> tuple[np.ndarray, ...] | None:
    """A block of plain lines parsed column-wise; None when anything in it is unusual (quotes,
    blank lines, odd numbers, new bad times), so the line-by-line parser handles the block
    and raises the first error exactly as `read_readings` does."""
    text = "\n".join(block)
    if "\r" in text:  # CRLF line ends; any other carriage return goes the slow way
        block = [line[:-1] if line.endswith("\r") else line for line in block]
        text = "\n".join(block)
    if '"' in text or "\r" in text:
        return None
    if sum(1 for line in block if line.count(",") == 2) != len(block):
        return None
    fields = [f.strip() for f in text.replace("\n", ",").split(",")]
    points, start_texts, kw_texts = fields[0::3], fields[1::3], fields[2::3]
    if "" in points:
        return None
    for new in set(start_texts).difference(starts):
        try:
            starts[new] = (_start(0, new) - _EPOCH) // _SECOND
        except CsvFormatError:
            return None
    kw = np.array(kw_texts)
    whole, dot, fraction = np.strings.partition(kw, ".")
    negative = np.strings.startswith(whole, "-")
    digits = np.where(negative, np.strings.slice(whole, 1, None), whole)
    has_dot = dot != ""
    plain = (np.strings.isdecimal(digits) & ((~has_dot) | (
        np.strings.isdecimal(fraction) & (np.strings.str_len(fraction) <= 3))))
    if not plain.all() or not "".join(kw_texts).isascii():
        return None
    watts = digits.astype(np.int64) * 1000 + np.where(
        has_dot, np.strings.ljust(fraction, 3, "0"), "0").astype(np.int64)
    watts = np.where(negative, -watts, watts)
    point_index = np.array([index.setdefault(p, len(index)) for p in points], np.int32)
    epochs = np.array([starts[t] for t in start_texts], np.int64)
    return point_index, epochs, watts, np.arange(first, first + len(block), dtype=np.int32)


def read_batch(chunks: Iterable[bytes]) -> ReadingBatch:
    """Read a whole CSV file (byte chunks) into columns; same format and errors as
    `read_readings`, and nothing is returned from a refused file."""
    blocks = _text_blocks(chunks)
    header_block = next(blocks, None)
    if header_block is None:
        raise CsvFormatError(1, "the file is empty")
    first, header_lines = header_block
    _check_header(iter([(first, header_lines[0].rstrip("\r"))]))
    index: dict[str, int] = {}
    starts: dict[str, int] = {}
    point_index, start_col, watts_col, line_col = [], [], [], []
    columns: list[tuple[np.ndarray, ...]] = []

    def parse(number: int, lines: list[str]) -> None:
        fast = _fast_block(number, lines, index, starts) if lines else None
        if fast is not None:
            columns.append(fast)
            return
        for offset, raw in enumerate(lines):
            text = raw.rstrip("\r")
            if not text.strip():
                continue
            line = number + offset
            point, start_text, kw_text = _fields(line, text)
            epoch = starts.get(start_text)
            if epoch is None:
                epoch = starts[start_text] = (_start(line, start_text) - _EPOCH) // _SECOND
            watts = _plain_watts(kw_text)
            if watts is None:
                watts = int(_kw(line, kw_text) * 1000)
            point_index.append(index.setdefault(point, len(index)))
            start_col.append(epoch)
            watts_col.append(watts)
            line_col.append(line)

    def flush() -> None:
        if point_index:
            columns.append((np.array(point_index, np.int32), np.array(start_col, np.int64),
                            np.array(watts_col, np.int64), np.array(line_col, np.int32)))
            for column in (point_index, start_col, watts_col, line_col):
                column.clear()

    parse(first + 1, header_lines[1:])
    flush()
    for number, lines in blocks:
        parse(number, lines)
        flush()
    if not columns:
        return ReadingBatch.empty()
    point_index_, start_, watts_, line_ = (np.concatenate(c) for c in zip(*columns,
                                                                          strict=True))
    return ReadingBatch(tuple(index), point_index_, start_, watts_,
                        np.zeros(len(point_index_), np.uint8), line_)
