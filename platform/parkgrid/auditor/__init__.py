"""The auditor's inspection of a market day: the chain history rebuilt from events, checked
against the published extract (anyone can, with the chain and the extract alone) and against
the platform's database (auditors on the platform), in a signed report."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..chain import CapacityMarket
from ..crypto import load_local_account, new_chain_account
from ..models import AccountPurpose, ChainAccount, ChainDeployment, Park, User
from .extract import ExtractError, build_extract, read_extract
from .history import read_day
from .report import build_report, check_signature, render_pdf, sign_report
from .verify import check_database, check_published

__all__ = ["ExtractError", "audit_extract", "audit_platform_day", "auditor_key",
           "build_extract", "check_signature", "render_pdf", "sign_report"]


def audit_extract(market: CapacityMarket, extract_bytes: bytes, *,
                  from_block: int | None = None) -> dict:
    """A third party's audit: the chain and a published extract, nothing else."""
    extract = read_extract(extract_bytes)
    contract = extract.manifest.get("contract") or {}
    start = from_block if from_block is not None else int(contract.get("deployment_block") or 0)
    head = market.chain.block_number()
    history = read_day(market, extract.day, from_block=start, to_block=head)
    return build_report(park=str(extract.manifest.get("park")), history=history,
                        extract=extract, extract_bytes=extract_bytes,
                        chain_id=market.chain.chain_id(), contract=market.address,
                        head_block=head, checks=[check_published(history, extract)],
                        scope="chain and published extract")


def audit_platform_day(platform, session: Session, park: Park, day: date) -> dict:
    """The platform auditor's audit: chain, the extract the platform publishes, database."""
    market = platform.market(session)
    deployment = session.scalar(select(ChainDeployment).where(
        ChainDeployment.contract_name == CapacityMarket.NAME,
        ChainDeployment.address == market.address))
    head = market.chain.block_number()
    history = read_day(market, day, from_block=deployment.block_number if deployment else 0,
                       to_block=head)
    extract_bytes = build_extract(session, park, day)
    extract = read_extract(extract_bytes)
    return build_report(park=park.code, history=history, extract=extract,
                        extract_bytes=extract_bytes, chain_id=market.chain.chain_id(),
                        contract=market.address, head_block=head,
                        checks=[check_published(history, extract),
                                check_database(session, park, history, extract)],
                        scope="chain, published extract and database")


def auditor_key(session: Session, platform, user: User):
    """The auditor's own signing key: made and stored (encrypted, like every key) on first
    use, in a transaction of its own, so every later report is signed with the same key."""
    def stored(db: Session):
        return db.scalar(select(ChainAccount).where(
            ChainAccount.user_id == user.id, ChainAccount.purpose == AccountPurpose.STAFF))

    account = stored(session)
    if account is None:
        with platform.unit_of_work() as own:
            new_chain_account(own, platform.keybox, AccountPurpose.STAFF,
                              user=own.get(User, user.id))
        account = stored(session)
    return load_local_account(platform.keybox, account).key
