"""A small alliance world on SQLite for the alliance service tests: one park, two enterprises,
staff logins, and providers built to order (valid or lapsed certificates, shifts, licences)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from parkgrid.config import Settings
from parkgrid.db import Base
from parkgrid.models import (
    Certificate,
    Electrician,
    Enterprise,
    Feeder,
    Park,
    Provider,
    ProviderStatus,
    Role,
    Substation,
    Transformer,
    User,
)
from parkgrid.wiring import Platform

# 10:00 in Shanghai on 2026-11-17, a Tuesday.
NOW = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 17)
SITE = (Decimal("31.300000"), Decimal("120.700000"))
ROUND_THE_CLOCK = (time(0, 0), time(0, 0))


def png(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(size=(40, 30)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def make_platform(tmp_path: Path) -> Platform:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}",
                        secret_key="alliance-test-secret", storage_dir=tmp_path / "files",
                        upload_max_bytes=200_000, auto_dispatch=False)
    platform = Platform(settings)
    Base.metadata.create_all(platform.engine)
    return platform


def _user(session, username: str, role: str, **binding) -> User:
    user = User(username=username, display_name=username, role=role, **binding)
    user.set_password("password-123")
    session.add(user)
    return user


@dataclass
class World:
    platform: Platform
    ids: dict[str, int]

    def uid(self, username: str) -> int:
        return self.ids[username]


def build_world(platform: Platform) -> World:
    with platform.unit_of_work() as session:
        park = Park(code="P", name="园区", timezone="Asia/Shanghai")
        substation = Substation(park=park, code="S1", name="变电站", voltage_kv=Decimal(110))
        transformer = Transformer(substation=substation, code="T1", name="1号主变",
                                  rated_kva=Decimal(40000), max_load_rate=Decimal("0.8"))
        feeder = Feeder(transformer=transformer, code="F1", name="一线",
                        thermal_limit_kva=Decimal(20000))
        e1 = Enterprise(park=park, feeder=feeder, code="E1", name="甲公司",
                        contracted_kva=Decimal(1000))
        e2 = Enterprise(park=park, feeder=feeder, code="E2", name="乙公司",
                        contracted_kva=Decimal(1000))
        session.add_all([park, e1, e2])
        users = [_user(session, "admin", Role.ADMIN),
                 _user(session, "desk", Role.SETTLEMENT),
                 _user(session, "auditor", Role.AUDITOR),
                 _user(session, "ent1", Role.ENTERPRISE, enterprise=e1),
                 _user(session, "ent2", Role.ENTERPRISE, enterprise=e2)]
        session.flush()
        return World(platform, {u.username: u.id for u in users})


def add_provider(world: World, code: str, *, alliance: str = "shared_electricians",
                 valid: int = 10, lapsed: int = 0, licence_expires: date = date(2028, 1, 1),
                 level: int = 4, status: str = ProviderStatus.APPROVED,
                 certificate: str = "low_voltage", skills: str = "low_voltage,cable",
                 shift: tuple[time, time] | None = ROUND_THE_CLOCK, weekdays: int = 127,
                 home_offset: Decimal = Decimal("0.01")) -> dict[str, int]:
    """A provider with `valid` electricians holding a valid certificate and `lapsed` whose
    certificate expired before TODAY, plus a login `<code>-user`; returns their ids."""
    with world.platform.unit_of_work() as session:
        provider = Provider(code=code, name=f"{code}电力", alliance=alliance,
                            licence_number=f"L-{code}", licence_level=level,
                            licence_issued=date(2020, 1, 1), licence_expiry=licence_expires,
                            status=status, applied_at=NOW - timedelta(days=30))
        session.add(provider)
        ids = {}
        for n in range(valid + lapsed):
            expires = TODAY + timedelta(days=400) if n < valid else TODAY - timedelta(days=1)
            e = Electrician(provider=provider, code=f"{code}-{n:02d}", name=f"电工{n}",
                            skills=skills, home_lat=SITE[0] + home_offset * (n + 1),
                            home_lon=SITE[1], weekdays=weekdays,
                            shift_start=shift[0] if shift else None,
                            shift_end=shift[1] if shift else None)
            e.certificates.append(Certificate(type=certificate, number=f"C-{code}-{n}",
                                              expires=expires))
            session.add(e)
            session.flush()
            ids[e.code] = e.id
        login = _user(session, f"{code}-user", Role.PROVIDER, provider=provider)
        session.flush()
        world.ids[login.username] = login.id
        return ids


def electrician_ids(world: World, code: str) -> list[int]:
    with world.platform.unit_of_work() as session:
        return list(session.scalars(select(Electrician.id).join(Provider)
                                    .where(Provider.code == code).order_by(Electrician.code)))
