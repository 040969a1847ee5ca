"""Builds the platform's parts (database, key box, chain, market contract) from settings, once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from .chain import CapacityMarket, ChainConnection, ChainResetError, connect
from .config import Settings
from .crypto import KeyBox
from .db import make_engine, make_session_factory, unit_of_work
from .models import ChainDeployment, OrderAction
from .storage import FileStorage

RECORDS_RECHECK_S = 30.0


@dataclass
class Platform:
    """The container every entry point (web app, worker, CLI) builds from one ``Settings``."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _chain: ChainConnection | None = field(default=None, repr=False)
    # The highest block of the chain this process has seen or found recorded: a node whose
    # head is below it was restarted from an older state. The database's records (written by
    # other processes too) are looked at again every RECORDS_RECHECK_S.
    _head_seen: int = field(default=-1, repr=False)
    _records_checked_at: float = field(default=float("-inf"), repr=False)

    @cached_property
    def engine(self):
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def keybox(self) -> KeyBox:
        return KeyBox(self.settings.secret_key)

    @cached_property
    def storage(self) -> FileStorage:
        """Where job photos and signatures are kept (files named by their SHA-256)."""
        return FileStorage(self.settings.files_dir, max_bytes=self.settings.upload_max_bytes)

    def unit_of_work(self):
        return unit_of_work(self.sessions)

    @property
    def chain(self) -> ChainConnection:
        """The chain connection, opened on first use (the node may start after the app)."""
        with self._lock:
            if self._chain is None:
                self._chain = connect(
                    self.settings.chain_url, receipt_timeout=self.settings.chain_receipt_timeout_s
                )
            return self._chain

    def market(self, session: Session) -> CapacityMarket:
        """The recorded CapacityMarket deployment for this chain, checked to still be there."""
        chain_id = self.chain.chain_id()
        deployment = session.scalar(
            select(ChainDeployment)
            .where(ChainDeployment.contract_name == CapacityMarket.NAME)
            .order_by(ChainDeployment.id.desc())
        )
        if deployment is None:
            raise ChainResetError(
                "No CapacityMarket deployment is recorded in the database: run "
                "'parkgrid chain setup' to deploy the contracts."
            )
        if deployment.chain_id != chain_id:
            raise ChainResetError(
                f"The chain at {self.settings.chain_url} has chain id {chain_id}, but the "
                f"platform's contracts were deployed on chain id {deployment.chain_id}. "
                "Point PARKGRID_CHAIN_URL at the original chain, or redeploy with "
                "'parkgrid chain setup --redeploy' (earlier records stay on the old chain)."
            )
        market = CapacityMarket(self.chain, deployment.address)
        market.verify(deployment.chain_id)
        self._check_not_behind(session, deployment)
        return market

    def _check_not_behind(self, session: Session, deployment: ChainDeployment) -> None:
        """Refuse a chain whose head went back below blocks the platform saw or recorded.

        A node restarted from an older state file still holds the contract, so `verify`
        passes, but every record written after that state is gone from it.
        """
        if time.monotonic() - self._records_checked_at >= RECORDS_RECHECK_S:
            recorded = session.scalar(select(func.max(OrderAction.chain_block_number)).where(
                OrderAction.created_at >= deployment.deployed_at))
            self._head_seen = max(self._head_seen, deployment.block_number, recorded or 0)
            self._records_checked_at = time.monotonic()
        head = self.chain.block_number()
        if head < self._head_seen:
            raise ChainResetError(
                f"The chain at {self.settings.chain_url} is at block {head}, but the platform "
                f"has records up to block {self._head_seen} on it: the node was restarted from "
                "an older state, and the records written since are gone from it. Restart the "
                "node with its latest state file; records wait in the outbox meanwhile.")
        self._head_seen = head
