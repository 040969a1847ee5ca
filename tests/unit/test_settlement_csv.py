"""The readings CSV format: good files stream in, malformed ones are refused by line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from settlement.csv_format import CsvFormatError, read_readings

GOOD = ("point,start,kw\r\n"
        "MP-1,2026-11-24T00:00:00+08:00,812.5\r\n"
        "MP-1,2026-11-24T00:15:00+08:00,800\r\n")


def chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
def test_a_good_file_reads_the_same_in_any_chunking(size):
    data = ("\ufeff" + GOOD).encode()
    readings = list(read_readings(chunks(data, size)))
    assert [(r.point, r.start.isoformat(), r.kw) for r in readings] == [
        ("MP-1", "2026-11-24T00:00:00+08:00", Decimal("812.500")),
        ("MP-1", "2026-11-24T00:15:00+08:00", Decimal("800.000"))]


@pytest.mark.parametrize(("data", "line", "reason"), [
    (b"", 1, "empty"),
    (b"meter,time,value\n", 1, "header must be point,start,kw"),
    (GOOD.encode() + b"MP-1,2026-11-24T00:30:00+08:00\n", 4, "2 fields instead of 3"),
    (GOOD.encode() + b"MP-1,2026-11-24T00:30:00+08:00,12,5\n", 4, "4 fields"),
    (GOOD.encode() + b"MP-1,yesterday,12\n", 4, "not an ISO 8601 time"),
    (GOOD.encode() + b"MP-1,2026-11-24T00:30:00,12\n", 4, "no UTC offset"),
    (GOOD.encode() + b"MP-1,2026-11-24T00:30:00+08:00,twelve\n", 4, "not a number"),
    (GOOD.encode() + b"MP-1,2026-11-24T00:30:00+08:00,1.2345\n", 4, "more than three decimals"),
    (GOOD.encode() + b",2026-11-24T00:30:00+08:00,1\n", 4, "point is empty"),
    (GOOD.encode() + "MP-1,2026-11-24T00:30:00+08:00,1\n".encode("utf-16"), 4, "UTF-8"),
])
def test_malformed_files_are_refused_with_the_line_and_the_reason(data, line, reason):
    with pytest.raises(CsvFormatError, match=reason) as refused:
        list(read_readings(chunks(data, 5)))
    assert refused.value.line == line and str(refused.value).startswith(f"line {line}:")
