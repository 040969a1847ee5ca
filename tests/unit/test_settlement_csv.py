"""The readings CSV format: good files stream in, malformed ones are refused by line; the
columnar reader reads exactly what the streaming one reads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.csv_format import CsvFormatError, read_batch, read_readings

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
    for size in (5, 4096):
        with pytest.raises(CsvFormatError, match=reason) as columnar:
            read_batch(chunks(data, size))
        assert str(columnar.value) == str(refused.value)


def rows_of_readings(data: bytes):
    return [(r.point, int(r.start.timestamp()), int(r.kw * 1000))
            for r in read_readings(chunks(data, 4096))]


def rows_of_batch(batch):
    return [(batch.points[p], s, w) for p, s, w in zip(batch.point_index.tolist(),
                                                       batch.start.tolist(),
                                                       batch.watts.tolist(), strict=True)]


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_the_columnar_reader_reads_the_same_readings_with_their_lines(size):
    data = ("\ufeff" + GOOD + "\n  \n" + '"MP, 2",2026-11-24T00:30:00+08:00,-0.5\r\n'
            + "MP-1,2026-11-24T00:45:00+00:00, 1E+2 \n" + "电表-3,2026-11-24T01:00:00+08:00,7.25")
    batch = read_batch(chunks(data.encode(), size))
    assert rows_of_batch(batch) == rows_of_readings(data.encode())
    assert batch.line.tolist() == [2, 3, 6, 7, 8]
    assert batch.quality.tolist() == [0] * 5
    assert len(read_batch([b"point,start,kw\n"])) == 0


kw_text = st.one_of(
    st.integers(-10**9, 10**9).map(lambda n: str(Decimal(n).scaleb(-3))),
    st.integers(0, 10**6).map(str),
    st.sampled_from(["1.5", "-0", "0.10", "+3", "2.", ".5", "1e2", " 4 "]))
line_text = st.tuples(st.sampled_from(["MP-1", "MP-2", "点-3", '"MP,4"', " MP-5 "]),
                      st.integers(0, 95), st.sampled_from(["+08:00", "Z", "+05:45"]), kw_text)


@settings(max_examples=60, deadline=None)
@given(st.lists(line_text, max_size=60), st.sampled_from(["\n", "\r\n"]),
       st.integers(1, 300))
def test_the_columnar_reader_agrees_with_the_streaming_one(lines, newline, size):
    body = [f"{p},{datetime(2026, 11, 24, i // 4, 15 * (i % 4), tzinfo=UTC).isoformat()[:19]}"
            f"{zone},{kw}" for p, i, zone, kw in lines]
    data = newline.join(["point,start,kw", *body]).encode()
    batch = read_batch(chunks(data, size))
    assert rows_of_batch(batch) == rows_of_readings(data)
    assert batch.line.tolist() == list(range(2, len(lines) + 2))
