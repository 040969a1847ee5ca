"""The one place where the platform reads its configuration (environment or explicit values)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

EMBEDDED = "embedded"
SERVICE = "service"
ETH_TESTER = "eth-tester"


@dataclass(frozen=True)
class Settings:
    """Everything the wiring needs: storage, broker, chain, secrets and park clock.

    *embedded* mode: SQLite under ``data_dir``, a local anvil node whose state is kept in
    ``data_dir``, tasks run in-process (no broker). *service* mode: PostgreSQL, a Redis or
    RabbitMQ broker with real Celery workers, any JSON-RPC chain node.
    """

    mode: str = EMBEDDED
    data_dir: Path = REPO_ROOT / "var"
    database_url: str = ""
    broker_url: str = ""
    result_backend: str = ""
    chain_url: str = ""
    secret_key: str = ""
    park_timezone: str = "Asia/Shanghai"
    contracts_dir: Path = REPO_ROOT / "contracts" / "build"
    node_bin_dir: Path = REPO_ROOT / "node_modules" / ".bin"
    chain_receipt_timeout_s: float = 30.0
    session_cookie_secure: bool = False
    # Uploaded job photos and signatures (content-addressed files); default: data_dir/files.
    storage_dir: Path | None = None
    upload_max_bytes: int = 10 * 1024 * 1024
    # How long an electrician has to accept a job offer before it goes to someone else.
    offer_minutes: int = 5
    # The routing solver's time for one plan of a day's planned work (kept below the plan
    # task's own time limit, so a plan is always returned).
    plan_seconds: int = 20
    # Automatic dispatch (urgent rounds, plans of planned work); off, the dispatch desk
    # offers every job by hand.
    auto_dispatch: bool = True
    # Where failed logins are counted (flask-limiter storage URI); one shared store, e.g.
    # redis://host:6379/2, when several web processes serve the park.
    rate_limit_storage: str = "memory://"
    extra: dict = field(default_factory=dict)

    @property
    def tasks_eager(self) -> bool:
        return not self.broker_url

    @property
    def uses_eth_tester(self) -> bool:
        return self.chain_url == ETH_TESTER

    @property
    def files_dir(self) -> Path:
        """Where uploaded files are kept: ``storage_dir``, or ``files`` in the data folder."""
        return Path(self.storage_dir) if self.storage_dir else Path(self.data_dir) / "files"

    def with_defaults(self) -> Settings:
        """Fill what was left empty from the mode's defaults."""
        data_dir = Path(self.data_dir)
        values = {}
        if not self.database_url:
            values["database_url"] = f"sqlite:///{data_dir / 'parkgrid.sqlite3'}"
        if not self.chain_url:
            values["chain_url"] = "http://127.0.0.1:8545"
        if not self.secret_key:
            values["secret_key"] = _persistent_secret(data_dir)
        if not self.storage_dir:
            values["storage_dir"] = data_dir / "files"
        return replace(self, data_dir=data_dir, **values)


def _persistent_secret(data_dir: Path) -> str:
    """A random secret kept in the data folder, so keys encrypted with it stay readable."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _positive_int(env, name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {raw!r}")
    return value


def from_env(environ: dict[str, str] | None = None, **overrides) -> Settings:
    """Settings from ``PARKGRID_*`` variables, then keyword overrides, then mode defaults."""
    env = os.environ if environ is None else environ
    values = {
        "mode": env.get("PARKGRID_MODE", EMBEDDED),
        "data_dir": Path(env.get("PARKGRID_DATA_DIR", str(REPO_ROOT / "var"))),
        "database_url": env.get("PARKGRID_DATABASE_URL", ""),
        "broker_url": env.get("PARKGRID_BROKER_URL", ""),
        "result_backend": env.get("PARKGRID_RESULT_BACKEND", ""),
        "chain_url": env.get("PARKGRID_CHAIN_URL", ""),
        "secret_key": env.get("PARKGRID_SECRET_KEY", ""),
        "park_timezone": env.get("PARKGRID_TIMEZONE", "Asia/Shanghai"),
        "session_cookie_secure": env.get("PARKGRID_SECURE_COOKIES", "") == "1",
        "storage_dir": Path(env["PARKGRID_STORAGE_DIR"]) if env.get("PARKGRID_STORAGE_DIR")
        else None,
        "upload_max_bytes": _positive_int(env, "PARKGRID_UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
        "offer_minutes": _positive_int(env, "PARKGRID_OFFER_MINUTES", 5),
        "plan_seconds": _positive_int(env, "PARKGRID_PLAN_SECONDS", 20),
        "auto_dispatch": env.get("PARKGRID_AUTO_DISPATCH", "1") != "0",
        "rate_limit_storage": env.get("PARKGRID_RATE_LIMIT_STORAGE", "") or "memory://",
    }
    values.update(overrides)
    settings = Settings(**values)
    if settings.mode not in (EMBEDDED, SERVICE):
        raise ValueError(
            f"PARKGRID_MODE must be '{EMBEDDED}' or '{SERVICE}', not {settings.mode!r}")
    if settings.mode == SERVICE and not (settings.database_url and settings.broker_url):
        raise ValueError("service mode needs PARKGRID_DATABASE_URL and PARKGRID_BROKER_URL")
    return settings.with_defaults()
