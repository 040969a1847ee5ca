"""Metering data: import files (our CSV, NEM12), keep every point-day as versions, load days.

A file is parsed whole before anything is written: a malformed file is refused with its line
and reason and only the refusal is recorded. Readings of unknown points and conflicting
duplicates are rejected and reported, never merged. Each (point, day) a file touches gets a
new version holding the previous version's values overlaid with the file's valid ones, so a
late or corrected delivery never overwrites what was there: it is a new version beside it.
Identical re-deliveries add nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from settlement import csv_format, nem12
from settlement.batch import ReadingBatch
from settlement.errors import MeteringInputError
from settlement.estimation import Outage
from settlement.metering import (
    MISSING,
    SUBSTITUTED,
    DayGrid,
    MeterDay,
    MeteringRules,
    Problem,
    validate_day,
)

from ..models import (
    Enterprise,
    ImportStatus,
    MeterDayVersion,
    MeteringImport,
    MeteringOutage,
    MeteringPoint,
    Park,
)
from .errors import N_, FieldProblem, NotFound, ServiceError, ValidationFailed

# Problems kept word for word in an import's report; the rest are counted by rule.
REPORT_LIMIT = 1000
FORMATS = ("csv", "nem12")


class FileRefused(ServiceError):
    """A metering file is malformed; nothing of it was kept."""

    status = 422

    def __init__(self, import_id: int, reason: str):
        super().__init__(N_("The file was refused, nothing of it was kept: %(reason)s"),
                         reason=reason)
        self.import_id = import_id


@dataclass
class _Source:
    """Byte chunks passed through while counting their size and hash."""

    chunks: Iterable[bytes]
    size: int = 0

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.size += len(chunk)
            self.digest.update(chunk)
            yield chunk


def parse(chunks: Iterable[bytes], file_format: str | None = None,
          zone: str = "Asia/Shanghai") -> tuple[str, ReadingBatch]:
    """Read a whole file (sniffing its format unless given); raises MeteringInputError.

    NEM12 days are local days of `zone` (the park's); our CSV carries UTC offsets.
    """
    iterator = iter(chunks)
    first = next(iterator, b"")

    def again() -> Iterator[bytes]:
        yield first
        yield from iterator

    file_format = file_format or nem12.sniff(first)
    if file_format not in FORMATS:
        raise MeteringInputError(f"unknown file format {file_format!r}")
    if file_format == "nem12":
        return file_format, nem12.read_nem12(again(), zone=zone)
    return file_format, csv_format.read_batch(again())


def import_readings(platform, park_id: int, chunks: Iterable[bytes], *, filename: str = "",
                    file_format: str | None = None, user_id: int | None = None,
                    substitute_reason: str | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> MeteringImport:
    """Import one file for a park; returns its import record (accepted) or raises FileRefused.

    With `substitute_reason` the file is a correction: its values replace the ones held and
    are flagged substituted, with the reason recorded.
    """
    step = progress or (lambda _stage, _done, _total: None)
    source = _Source(chunks)
    with platform.unit_of_work() as session:
        park = session.get(Park, park_id)
        if park is None:
            raise NotFound(N_("No such park."))
        zone_name = park.timezone
    try:
        file_format, batch = parse(source, file_format, zone_name)
    except MeteringInputError as exc:
        for _ in source:  # hash the whole file for the record, without keeping it
            pass
        with platform.unit_of_work() as session:
            record = MeteringImport(
                park_id=park_id, filename=filename[:255], file_format=file_format or "unknown",
                sha256=source.digest.hexdigest(), size_bytes=source.size,
                status=ImportStatus.REFUSED, refusal=str(exc), created_by_id=user_id)
            session.add(record)
            session.flush()
            record_id = record.id
        raise FileRefused(record_id, str(exc)) from exc
    step("parsed", len(batch), len(batch))

    with platform.unit_of_work() as session:
        zone = ZoneInfo(zone_name)
        points = _park_points(session, park_id)
        problems: list[Problem] = []
        known = np.array([code in points for code in batch.points], bool)
        unknown_rows = ~known[batch.point_index] if len(batch) else np.zeros(0, bool)
        for row in np.flatnonzero(unknown_rows)[:REPORT_LIMIT]:
            problems.append(Problem(batch.points[batch.point_index[row]], None, "unknown-point",
                                    f"line {batch.line[row]}: unknown metering point, "
                                    "rejected"))
        unknown_count = int(unknown_rows.sum())
        batch = batch.take(~unknown_rows)

        record = MeteringImport(
            park_id=park_id, filename=filename[:255], file_format=file_format,
            sha256=source.digest.hexdigest(), size_bytes=source.size,
            status=ImportStatus.ACCEPTED, readings=len(batch) + unknown_count,
            created_by_id=user_id)
        session.add(record)
        session.flush()

        days = _local_days(batch, zone)
        rules = MeteringRules()
        written = accepted = 0
        ordinals = sorted(set(days.tolist()))
        for number, day in enumerate(ordinals):
            rows = days == day
            sub = batch.take(rows)
            codes = sorted({sub.points[i] for i in np.unique(sub.point_index).tolist()})
            metered = validate_day(sub, points=codes, day=date.fromordinal(day), zone=zone,
                                   rules=rules)
            problems.extend(p for p in metered.problems if p.rule != "missing")
            accepted += int((metered.quality != MISSING).sum())
            written += _store_versions(session, record, metered, points, substitute_reason,
                                       user_id)
            step("days", number + 1, len(ordinals))
        counts = Counter(p.rule for p in problems)
        counts["unknown-point"] = unknown_count
        record.accepted = accepted
        record.rejected = len(batch) + unknown_count - accepted
        record.point_days = written
        record.report = json.dumps({
            "counts": {rule: n for rule, n in sorted(counts.items()) if n},
            "problems": [{"point": p.point, "interval": p.interval, "rule": p.rule,
                          "detail": p.detail}
                         for p in sorted(problems, key=Problem.sort_key)[:REPORT_LIMIT]],
        }, ensure_ascii=False, sort_keys=True)
        session.flush()
        session.expunge(record)
        return record


def _park_points(session: Session, park_id: int) -> dict[str, int]:
    rows = session.execute(select(MeteringPoint.code, MeteringPoint.id)
                           .join(Enterprise, Enterprise.id == MeteringPoint.enterprise_id)
                           .where(Enterprise.park_id == park_id))
    return dict(rows.all())


def _local_days(batch: ReadingBatch, zone: ZoneInfo) -> np.ndarray:
    """The proleptic ordinal of each reading's local day (few distinct starts per file)."""
    unique, inverse = np.unique(batch.start, return_inverse=True)
    ordinals = np.array([datetime.fromtimestamp(int(s), zone).date().toordinal()
                         for s in unique.tolist()], np.int64)
    return ordinals[inverse]


def _latest(session: Session, point_ids: Iterable[int], days: Iterable[date]
            ) -> dict[tuple[int, date], MeterDayVersion]:
    """The newest version of each (point, day) that has one, in one query."""
    ids, days = list(point_ids), list(days)
    if not ids or not days:
        return {}
    newest = (select(MeterDayVersion.metering_point_id, MeterDayVersion.day,
                     func.max(MeterDayVersion.version).label("version"))
              .where(MeterDayVersion.day.in_(days), MeterDayVersion.metering_point_id.in_(ids))
              .group_by(MeterDayVersion.metering_point_id, MeterDayVersion.day).subquery())
    rows = session.scalars(select(MeterDayVersion).join(
        newest, (MeterDayVersion.metering_point_id == newest.c.metering_point_id)
        & (MeterDayVersion.day == newest.c.day)
        & (MeterDayVersion.version == newest.c.version)))
    return {(row.metering_point_id, row.day): row for row in rows}


def _store_versions(session: Session, record: MeteringImport, metered: MeterDay,
                    points: dict[str, int], substitute_reason: str | None,
                    user_id: int | None) -> int:
    """Add a version for each point of `metered` whose values differ from its latest one."""
    ids = [points[code] for code in metered.points]
    previous = _latest(session, ids, [metered.day])
    written = 0
    for row, point_id in enumerate(ids):
        watts = metered.watts[row].astype("<i8")
        quality = metered.quality[row].astype(np.uint8)
        notes = {i: text for (p, i), text in metered.notes.items() if p == row}
        if substitute_reason is not None:
            given = quality != MISSING
            quality = np.where(given, SUBSTITUTED, quality).astype(np.uint8)
            notes |= {i: f"substituted: {substitute_reason}"
                      for i in np.flatnonzero(given).tolist()}
        old = previous.get((point_id, metered.day))
        if old is not None:
            # Overlay: the file's valid values replace the held ones; the rest is kept.
            old_watts = np.frombuffer(old.watts, "<i8")
            old_quality = np.frombuffer(old.quality, np.uint8)
            old_notes = {int(k): v for k, v in json.loads(old.notes).items()}
            keep = quality == MISSING
            watts = np.where(keep, old_watts, watts)
            quality = np.where(keep, old_quality, quality).astype(np.uint8)
            notes = {i: text for i, text in old_notes.items() if keep[i]} | {
                i: text for i, text in notes.items() if not keep[i]}
            if (np.array_equal(watts, old_watts) and np.array_equal(quality, old_quality)
                    and notes == old_notes):
                continue
        if old is None and bool((quality == MISSING).all()):
            continue  # nothing valid for this point-day
        session.add(MeterDayVersion(
            metering_point_id=point_id, day=metered.day,
            version=1 if old is None else old.version + 1,
            watts=watts.astype("<i8").tobytes(), quality=quality.tobytes(),
            notes=json.dumps({str(k): v for k, v in sorted(notes.items())}, ensure_ascii=False),
            source="substitute" if substitute_reason is not None else "import",
            import_id=record.id, reason=substitute_reason or "", created_by_id=user_id))
        written += 1
    session.flush()
    return written


def load_days(session: Session, park: Park, days: Iterable[date], codes: Iterable[str]
              ) -> dict[date, MeterDay]:
    """The latest version of every named point's day, for each day; points without data
    are all missing."""
    codes, days = sorted(set(codes)), sorted(set(days))
    zone = ZoneInfo(park.timezone)
    points = dict(session.execute(select(MeteringPoint.code, MeteringPoint.id)
                                  .where(MeteringPoint.code.in_(codes))).all()) if codes else {}
    latest = _latest(session, points.values(), days)
    out = {}
    for day in days:
        count = DayGrid(day, zone).count
        watts = np.zeros((len(codes), count), np.int64)
        quality = np.full((len(codes), count), MISSING, np.uint8)
        notes: dict[tuple[int, int], str] = {}
        for row, code in enumerate(codes):
            version = latest.get((points.get(code), day))
            if version is None:
                continue
            stored = np.frombuffer(version.watts, "<i8")
            if len(stored) != count:
                raise ServiceError(N_("Stored metering data of %(point)s on %(day)s do not "
                                      "fit the day's intervals."), point=code,
                                   day=day.isoformat())
            watts[row] = stored
            quality[row] = np.frombuffer(version.quality, np.uint8)
            for key, text in json.loads(version.notes).items():
                notes[(row, int(key))] = text
        out[day] = MeterDay(day, zone.key, tuple(codes), watts, quality, notes, ())
    return out


def outages(session: Session, park: Park, start: date, end: date) -> list[Outage]:
    """The park's marked outages touching local days start..end (inclusive)."""
    zone = ZoneInfo(park.timezone)
    lo = datetime.combine(start, datetime.min.time(), zone)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone)
    rows = session.scalars(select(MeteringOutage).where(
        MeteringOutage.park_id == park.id, MeteringOutage.starts_at < hi,
        MeteringOutage.ends_at > lo).order_by(MeteringOutage.id))
    return [Outage(row.starts_at, row.ends_at,
                   row.metering_point.code if row.metering_point else None, row.reason)
            for row in rows]


def add_outage(platform, park_id: int, starts_at: datetime, ends_at: datetime, reason: str, *,
               point_code: str | None = None, user_id: int | None = None) -> int:
    """Mark a supply outage of one point (or, without a point, of the whole park): estimation
    never fills or bridges it, so its intervals stay missing until real data arrive."""
    problems = []
    if not reason.strip():
        problems.append(FieldProblem("reason", N_("say what the outage was")))
    if starts_at.utcoffset() is None or ends_at.utcoffset() is None:
        problems.append(FieldProblem("start", N_("give times with their UTC offset")))
    elif ends_at <= starts_at:
        problems.append(FieldProblem("end", N_("the outage must end after it starts")))
    with platform.unit_of_work() as session:
        point_id = None
        if point_code is not None:
            point_id = _park_points(session, park_id).get(point_code)
            if point_id is None:
                problems.append(FieldProblem("point", N_("no metering point %(code)s in this "
                                                         "park"), {"code": point_code}))
        if problems:
            raise ValidationFailed(problems)
        outage = MeteringOutage(park_id=park_id, metering_point_id=point_id,
                                starts_at=starts_at, ends_at=ends_at, reason=reason.strip(),
                                created_by_id=user_id)
        session.add(outage)
        session.flush()
        return outage.id
