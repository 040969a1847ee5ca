"""Builds the platform's parts (database, key box, chain, market contract) from settings, once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from .chain import CapacityMarket, ChainConnection, ChainResetError, JsonRpcChain, connect
from .config import Settings
from .crypto import KeyBox
from .db import make_engine, make_session_factory, unit_of_work
from .models import ChainDeployment, OrderAction
from .storage import FileStorage

RECORDS_RECHECK_S = 30.0
# How long a verified deployment (chain id, contract code) is trusted without asking the node
# again. The head check that finds a reset or older chain still runs on every use.
VERIFIED_FOR_S = 5.0


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
    # (deployment id, its market client, when it was verified) after a full verification.
    _verified: tuple[int, CapacityMarket, float] | None = field(default=None, repr=False)

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
                # web3's validation step asks the node for its chain id before every call and
                # gas estimate, to compare it with a chainId that these requests never carry
                # (transactions are signed here and sent raw, with the chain id read then):
                # a round trip more per read, for nothing.
                self._chain.w3.middleware_onion.remove("validation")
            return self._chain

    def forget_connections(self) -> None:
        """In a process forked from this one: open connections of its own (to the database
        and the chain node) instead of sharing the parent's."""
        if "engine" in self.__dict__:
            self.engine.dispose(close=False)
        with self._lock:
            # An in-process chain (eth-tester) is the process's own copy: kept.
            if isinstance(self._chain, JsonRpcChain):
                self._chain = None
                self._verified = None

    def market(self, session: Session) -> CapacityMarket:
        """The recorded CapacityMarket deployment for this chain, checked to still be there.

        A full verification (chain id, the contract's code) holds for VERIFIED_FOR_S in this
        process, for the same deployment record and chain connection; the check that the
        chain did not go back (a node reset or restarted from an older state) runs on every
        call, and when it fails the full verification runs again and says what happened.
        """
        verified = self._verified
        if (verified is not None and time.monotonic() - verified[2] < VERIFIED_FOR_S
                and verified[1].chain is self.chain):
            deployment = self._deployment(session)
            if deployment is not None and deployment.id == verified[0]:
                try:
                    self._check_not_behind(session, deployment)
                except ChainResetError:
                    self._verified = None
                else:
                    return verified[1]
        return self._verify_market(session)

    def _deployment(self, session: Session) -> ChainDeployment | None:
        return session.scalar(
            select(ChainDeployment)
            .where(ChainDeployment.contract_name == CapacityMarket.NAME)
            .order_by(ChainDeployment.id.desc())
        )

    def _verify_market(self, session: Session) -> CapacityMarket:
        chain_id = self.chain.chain_id()
        deployment = self._deployment(session)
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
        self._verified = (deployment.id, market, time.monotonic())
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
