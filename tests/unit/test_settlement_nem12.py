"""NEM12 files: records in order read into a batch, broken files refused by line and reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.batch import QUALITY_CODE
from settlement.errors import MeteringInputError
from settlement.metering import Quality
from settlement.nem12 import Nem12FormatError, read_nem12, read_nem12_with_summary, sniff

HEADER = "100,NEM12,202611250930,MDP1,PARKGRID"
DAY = date(2026, 11, 24)
# Local midnight of DAY in Asia/Shanghai (UTC+8).
MIDNIGHT = datetime(2026, 11, 23, 16, tzinfo=UTC)
ACTUAL, ESTIMATED, SUBSTITUTED = (QUALITY_CODE[q] for q in
                                  (Quality.ACTUAL, Quality.ESTIMATED, Quality.SUBSTITUTED))


def r200(nmi: str, suffix: str = "E1", uom: str = "kWh", length: int = 15) -> str:
    return f"200,{nmi},E1B1,1,{suffix},N1,METER-{nmi},{uom},{length},"


def r300(day: date, values: list[str], method: str = "A", reason: str = "") -> str:
    return (f"300,{day:%Y%m%d},{','.join(values)},{method},{reason},,20261125093000,"
            "20261125100000")


def r400(first: int, last: int, method: str, reason: str = "") -> str:
    return f"400,{first},{last},{method},{reason},"


def nem12_file(*records: str, header: str = HEADER, end: str = "900") -> bytes:
    lines = [header, *records] + ([end] if end else [])
    return ("\r\n".join(lines) + "\r\n").encode()


def chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def rows(batch):
    """(point, minutes after MIDNIGHT, W, quality code, line) per reading."""
    return [(batch.points[p], (s - int(MIDNIGHT.timestamp())) // 60, w, q, n)
            for p, s, w, q, n in zip(batch.point_index.tolist(), batch.start.tolist(),
                                     batch.watts.tolist(), batch.quality.tolist(),
                                     batch.line.tolist(), strict=True)]


# A realistic file: two NMIs, a V day with 400 records and a 500 record, a B1 (export)
# stream that is skipped, and 5-minute data summed into quarter hours.
DAY1 = [f"{100 + i}.125" for i in range(96)]  # kWh per quarter: W = 4000 × value
DAY2 = [f"{50 + i}.5" for i in range(96)]
FIVE = [f"{q}.00{j}" for q in range(96) for j in (1, 2, 3)]  # sums 3q + 0.006 kWh
SAMPLE = nem12_file(
    r200("NMI0000001"),                                       # line 2
    r300(DAY, DAY1),                                          # line 3
    r300(DAY + timedelta(days=1), DAY2, "V"),                 # line 4
    r400(1, 40, "A"),
    r400(41, 48, "S53", "1"),
    r400(49, 52, "N", "79"),                                  # four quarters without value
    r400(53, 96, "E52"),
    "500,O,S01234,20261125100000,",
    r200("NMI0000001", "B1"),                                 # line 10, skipped
    r300(DAY, ["1.000"] * 96),
    r200("NMI0000002", uom="KWH", length=5),                  # line 12
    r300(DAY, FIVE, "F14", "0"),                              # line 13
)


def expected_sample():
    day2 = 24 * 60
    return ([("NMI0000001", 15 * i, (100 + i) * 4000 + 500, ACTUAL, 3) for i in range(96)]
            + [("NMI0000001", day2 + 15 * i, (50 + i) * 4000 + 2000,
                ACTUAL if i < 40 else SUBSTITUTED if i < 48 else ESTIMATED, 4)
               for i in range(96) if not 48 <= i < 52]
            + [("NMI0000002", 15 * q, 12000 * q + 24, SUBSTITUTED, 13) for q in range(96)])


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_a_realistic_file_reads_the_same_in_any_chunking(size):
    batch, summary = read_nem12_with_summary(chunks(b"\xef\xbb\xbf" + SAMPLE, size))
    assert batch.points == ("NMI0000001", "NMI0000002")
    assert rows(batch) == expected_sample()
    assert summary == {"nmis": 2, "days": 3, "readings": 96 + 92 + 96, "null_intervals": 4,
                       "skipped_streams": {"B1": 1}, "skipped_days": 1}
    assert len(read_nem12([SAMPLE])) == len(batch)


def test_times_are_utc_epoch_seconds_of_local_midnight_plus_the_interval():
    batch = read_nem12([SAMPLE])
    first = datetime.fromtimestamp(int(batch.start[0]), UTC)
    assert first == datetime(2026, 11, 24, tzinfo=UTC) - timedelta(hours=8)
    brisbane = read_nem12([SAMPLE], zone="Australia/Brisbane")
    assert int(brisbane.start[0]) == int(batch.start[0]) - 2 * 3600
    first_reading = next(batch.readings())
    assert (first_reading.point, first_reading.start, first_reading.kw,
            first_reading.quality) == ("NMI0000001", first, Decimal("400.500"), Quality.ACTUAL)


def test_a_day_runs_96_quarter_hours_from_local_midnight_even_across_a_clock_change():
    # Sydney moves its clocks forward on 2026-10-04; a NEM12 day is still 96 quarter hours.
    data = nem12_file(r200("N1"), r300(date(2026, 10, 4), A96))
    batch = read_nem12([data], zone="Australia/Sydney")
    assert datetime.fromtimestamp(int(batch.start[0]), UTC) == datetime(2026, 10, 3, 14,
                                                                         tzinfo=UTC)
    assert int(batch.start[-1] - batch.start[0]) == 95 * 15 * 60


@pytest.mark.parametrize(("uom", "length", "values", "watts"), [
    ("kW", 15, ["812.5"], 812500),
    ("MW", 15, ["0.8125"], 812500),
    ("W", 15, ["812500"], 812500),
    ("Wh", 15, ["203125"], 812500),
    ("MWh", 15, ["0.203125"], 812500),
    ("kWh", 15, ["-0.25"], -1000),                    # negatives pass; validation flags them
    ("kW", 5, ["800", "812.5", "825"], 812500),       # mean of three demands
    ("Wh", 5, ["1", "2", "3"], 24),                   # 6 Wh in a quarter hour = 24 W
])
def test_units_become_mean_watts_exactly(uom, length, values, watts):
    per_day = values * (1440 // length // len(values))
    batch = read_nem12([nem12_file(r200("N1", uom=uom, length=length), r300(DAY, per_day))])
    assert set(batch.watts.tolist()) == {watts}
    assert len(batch) == 96


def test_quality_methods_map_to_quality_flags_and_five_minutes_take_the_worst():
    values = ["1"] * 288
    batch, summary = read_nem12_with_summary([nem12_file(
        r200("N1", length=5),
        r300(DAY, values, "V"),
        r400(1, 3, "A"), r400(4, 5, "A"), r400(6, 6, "E52"),     # quarter 1: estimated
        r400(7, 9, "F14", "1"), r400(10, 12, "S53", "1"),       # substituted both
        r400(13, 14, "A"), r400(15, 15, "N"),                   # quarter 4: null
        r400(16, 288, "A"),
        r300(DAY + timedelta(days=1), values, "N"),
    )])
    quality = batch.quality.tolist()
    assert quality[:4] == [ACTUAL, ESTIMATED, SUBSTITUTED, SUBSTITUTED]
    assert quality[4:] == [ACTUAL] * 91
    assert (int(batch.start[4]) - int(batch.start[0])) // 60 == 75   # 60–75 min is missing
    assert summary["null_intervals"] == 1 + 96
    assert summary["days"] == 2 and summary["readings"] == 95


def test_an_empty_file_with_header_and_end_is_an_empty_batch():
    batch, summary = read_nem12_with_summary([nem12_file()])
    assert len(batch) == 0 and summary["nmis"] == 0


def test_sniff_tells_nem12_from_csv():
    assert sniff(SAMPLE[:40]) == "nem12"
    assert sniff(b"\xef\xbb\xbf\r\n100,NEM12,2026") == "nem12"
    assert sniff(b"100,NEM12") == "nem12"
    assert sniff(b"100,NEM13,202611250930,MDP1,RET1\n") == "csv"
    assert sniff(b"point,start,kw\nMP-1,2026-11-24T00:00:00+08:00,1\n") == "csv"
    assert sniff(b"") == "csv"


A96 = ["1.5"] * 96
GOOD_STREAM = (r200("N1"), r300(DAY, A96))


@pytest.mark.parametrize(("data", "line", "reason"), [
    (b"", 1, "empty"),
    (b"\r\n\r\n", 1, "empty"),
    (b"point,start,kw\n", 1, "must start with a 100 header"),
    (nem12_file(header="100,NEM13,202611250930,MDP1,RET1"), 1, "not a NEM12 file"),
    (nem12_file(header="100,NEM12,202611250930,MDP1"), 1, "4 fields instead of 5"),
    (nem12_file(header="100,NEM12,20261125,MDP1,RET1"), 1, "not a date and time"),
    (nem12_file(HEADER, *GOOD_STREAM), 2, "second 100 header"),
    (nem12_file(r300(DAY, A96)), 2, "must follow a 200"),
    (nem12_file(r200("N1"), r200("N2"), r300(DAY, A96)), 3, "line 2 has no 300 records"),
    (nem12_file(r200("N1")), 3, "line 2 has no 300 records"),
    (nem12_file(*GOOD_STREAM, end=""), 4, "ends without a 900"),
    (nem12_file(*GOOD_STREAM, "900", r200("N2")), 5, "nothing may follow the 900"),
    (nem12_file(*GOOD_STREAM, "900", "900"), 5, "nothing may follow the 900 end record on"
                                                " line 4"),
    (nem12_file(*GOOD_STREAM, end="900,1"), 4, "2 fields instead of 1"),
    (nem12_file(*GOOD_STREAM, "250,N1,E1"), 4, "unknown record indicator '250'"),
    (nem12_file(r200("N1"), "500,O,S1,20261125100000,"), 3, "must follow a 300 or 400"),
    (nem12_file(*GOOD_STREAM, "500,O,S1,20261125100000"), 4, "4 fields instead of 5"),
    # 200 records.
    (nem12_file(r200("N1")[:-1]), 2, "9 fields instead of 10"),
    (nem12_file(r200("", "E1"), r300(DAY, A96)), 2, "NMI is empty"),
    (nem12_file(r200("N1", length="15a"), r300(DAY, A96)), 2, "IntervalLength '15a' is not"),
    (nem12_file(r200("N1", length=10)), 2, "not 5, 15 or 30 minutes"),
    (nem12_file(r200("N1", length=30), r300(DAY, A96[:48])), 2, "cannot be split"),
    (nem12_file(r200("N1", uom="kVArh"), r300(DAY, A96)), 2, "not energy"),
    (nem12_file(r200("N1") + ",", r300(DAY, A96)), 2, "11 fields instead of 10"),
    (nem12_file(r200("N1") + "20261", r300(DAY, A96)), 2,
     "NextScheduledReadDate '20261' is not a date"),
    (nem12_file(r200("N1") + "20261131", r300(DAY, A96)), 2,
     "NextScheduledReadDate '20261131' is not a date"),
    (nem12_file(*GOOD_STREAM, r200("N1", "E2"), r300(DAY, A96)), 4,
     "two energy streams, E1 (line 2) and E2: ambiguous"),
    # 300 records.
    (nem12_file(r200("N1"), r300(DAY, A96[:95])), 3, "a 300 record of 15-minute data has "
                                                     "103 (96 interval values)"),
    (nem12_file(r200("N1", length=5), r300(DAY, A96)), 3, "288 interval values"),
    (nem12_file(r200("N1"), r300(DAY, [*A96[:10], "1.2x", *A96[11:]])), 3,
     "interval value '1.2x' is not a number"),
    (nem12_file(r200("N1"), r300(DAY, [*A96[:95], ""])), 3, "'' is not a number"),
    (nem12_file(r200("N1"), r300(DAY, [*A96[:95], "NaN"])), 3, "'NaN' is not a number"),
    (nem12_file(r200("N1"), r300(date(2026, 11, 30), A96).replace("20261130", "20261131")),
     3, "IntervalDate '20261131' is not a date"),
    (nem12_file(r200("N1"), r300(DAY, A96).replace("20261124", "2026-11-24")), 3,
     "not a date"),
    (nem12_file(r200("N1"), r300(DAY, A96, "X")), 3, "QualityMethod 'X'"),
    (nem12_file(r200("N1"), r300(DAY, A96, "A", "x1")), 3, "ReasonCode 'x1' is not a number"),
    (nem12_file(r200("N1"), r300(DAY, A96).replace("20261125093000", "2026112509300")), 3,
     "UpdateDateTime '2026112509300' is not a date and time"),
    (nem12_file(r200("N1"), r300(DAY, ["0.0001"] * 96)), 3,
     "interval 1 (0.0001 kWh) has more precision than a watt"),
    (nem12_file(r200("N1"), r300(DAY, ["9" * 20, *A96[1:]])), 3, "interval 1 is out of range"),
    (nem12_file(r200("N1", uom="kW", length=5), r300(DAY, ["1", "1", "2"] * 96)), 3,
     "intervals 1–3 (1, 1, 2 kW) has more precision than a watt"),
    # 400 records.
    (nem12_file(*GOOD_STREAM, r400(1, 96, "A")), 4,
     "must follow a 300 record with QualityMethod V (or another 400), not a 300 record with"
     " QualityMethod A"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 96, "A"), "500,O,S1,2026,",
                r400(1, 96, "A")), 6, "not a 500 record"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V")), 3, "there are none"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), "500,O,S1,20261125100000,"), 3,
     "there are none"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 40, "A"), r400(45, 96, "E52")), 3,
     "intervals 41–44 of this V day are not covered"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 95, "A")), 3,
     "intervals 96–96 of this V day"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 50, "A"), r400(50, 96, "E")), 5,
     "intervals 50–96 overlap an earlier 400 record"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 97, "A")), 4, "not a range"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(0, 96, "A")), 4, "not a range"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(50, 49, "A")), 4, "not a range"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), "400,1,x,A,,"), 4,
     "EndInterval 'x' is not a number"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), r400(1, 96, "V")), 4,
     "QualityMethod 'V' of a 400 record"),
    (nem12_file(r200("N1"), r300(DAY, A96, "V"), "400,1,96,A,,,"), 4, "7 fields instead of 6"),
    # A skipped stream is still checked.
    (nem12_file(r200("N1", "B1"), r300(DAY, [*A96[:95], "x"])), 3, "'x' is not a number"),
    (nem12_file(r200("N1", "B1"), r300(DAY, A96, "V"), r400(1, 90, "A")), 3, "not covered"),
    # Encoding: a Latin-1 byte in a ReasonDescription.
    (nem12_file(r200("N1"), r300(DAY, A96, "S53", "0").replace(",,2026", ",caf\u00e9,2026")
                ).replace("\u00e9".encode(), b"\xe9"), 3, "not UTF-8 text"),
])
def test_broken_files_are_refused_with_the_line_and_reason(data, line, reason):
    for size in (len(data) or 1, 5):
        with pytest.raises(Nem12FormatError) as caught:
            read_nem12(chunks(data, size))
        assert caught.value.line == line, caught.value
        assert reason in caught.value.reason, caught.value
        assert str(caught.value) == f"line {line}: {caught.value.reason}"
        assert isinstance(caught.value, MeteringInputError)


def test_an_error_late_in_the_file_returns_nothing_of_it():
    data = SAMPLE.replace(b"\r\n900\r\n", b"\r\n" + r300(DAY, ["x"] * 288).encode() + b"\r\n")
    with pytest.raises(Nem12FormatError):
        read_nem12_with_summary([data])


# -- round trip ----------------------------------------------------------------------------

UNITS = {"Wh": (Decimal(1), True), "kWh": (Decimal(1000), True),
         "MWh": (Decimal(1000000), True), "W": (Decimal(1), False),
         "kW": (Decimal(1000), False), "MW": (Decimal(1000000), False)}
LETTER = {Quality.ACTUAL: "A", Quality.ESTIMATED: "E52", Quality.SUBSTITUTED: "S53"}


def text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def interval_texts(watts: int, unit: str, per_quarter: int, split: int) -> list[str]:
    """Interval values giving `watts` over a quarter hour; `split` varies the parts."""
    factor, energy = UNITS[unit]
    if energy:  # the quarter's energy in mWh, split into parts that sum to it
        total = watts * 250
        parts = [total] if per_quarter == 1 else [split, -split + total // 3,
                                                  total - total // 3]
        return [text(Decimal(p) / 1000 / factor) for p in parts]
    parts = [watts] if per_quarter == 1 else [watts - split, watts, watts + split]
    return [text(Decimal(p) / factor) for p in parts]


def render(streams) -> tuple[bytes, list[tuple]]:
    """A NEM12 file of the streams and the rows expected from it."""
    records, expected = [], []
    for nmi, unit, length, days in streams:
        records.append(r200(nmi, uom=unit, length=length))
        per_quarter = 15 // length
        for offset, quarters in enumerate(days):
            day = DAY + timedelta(days=offset)
            values, methods = [], []
            for quarter, entry in enumerate(quarters):
                if entry is None:
                    values += ["0"] * per_quarter
                    methods += ["N"] * per_quarter
                    continue
                watts, quality, split = entry
                values += interval_texts(watts, unit, per_quarter, split)
                methods += [LETTER[quality]] * per_quarter
                expected.append((nmi, offset * 1440 + 15 * quarter, watts,
                                 QUALITY_CODE[quality], len(records) + 2))
            if len(set(methods)) == 1:
                records.append(r300(day, values, methods[0]))
                continue
            records.append(r300(day, values, "V"))
            first = 0
            for i in range(1, len(methods) + 1):
                if i == len(methods) or methods[i] != methods[first]:
                    records.append(r400(first + 1, i, methods[first]))
                    first = i
    return nem12_file(*records), expected


quarter_entry = st.one_of(
    st.none(),
    st.tuples(st.integers(-10 ** 6, 10 ** 9),
              st.sampled_from([Quality.ACTUAL, Quality.ESTIMATED, Quality.SUBSTITUTED]),
              st.integers(0, 10 ** 6)))
stream = st.tuples(st.sampled_from(sorted(UNITS)), st.sampled_from([5, 15]),
                   st.lists(st.lists(quarter_entry, min_size=96, max_size=96),
                            min_size=1, max_size=2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(st.lists(stream, min_size=1, max_size=3), st.integers(1, 4096))
def test_rendering_readings_to_nem12_and_reading_back_gives_the_same_batch(streams, size):
    named = [(f"NMI{i:07d}", unit, length, days)
             for i, (unit, length, days) in enumerate(streams)]
    data, expected = render(named)
    batch = read_nem12(chunks(data, size))
    assert rows(batch) == expected
    assert batch.points == tuple(name for name, *_ in named)
