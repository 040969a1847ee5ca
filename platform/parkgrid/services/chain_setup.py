"""Deploys the market contract once per chain and registers every enterprise's chain account."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from ..chain import CapacityMarket, ChainResetError, enterprise_key
from ..crypto import load_local_account, new_chain_account
from ..models import ChainAccount, ChainDeployment, Enterprise, Role, User
from .calendar import utcnow

# Enough for thousands of transactions on a dev chain; a permissioned chain runs gas-free.
FUNDING_WEI = 10**19
LOW_BALANCE_WEI = 10**18


def operator_account(session, keybox) -> ChainAccount:
    account = session.scalar(select(ChainAccount).where(ChainAccount.purpose == "operator")
                             .order_by(ChainAccount.id))
    if account is None:
        account = new_chain_account(session, keybox, "operator")
        session.flush()
    return account


def setup_chain(platform, *, funder=None, redeploy: bool = False,
                progress: Callable[[str, int], None] | None = None) -> dict:
    """Make the chain ready for the park: contract deployed, enterprises registered.

    ``funder`` is a key holding ether on a development chain (anvil, eth-tester); on a gas-free
    permissioned chain pass None. Safe to run again: it only does what is missing.
    """
    step = progress or (lambda _name, _n: None)
    chain = platform.chain
    chain_id = chain.chain_id()
    counts = {"deployed": 0, "registered": 0, "staff_signers": 0, "funded": 0}
    with platform.unit_of_work() as session:
        keybox = platform.keybox
        operator = load_local_account(keybox, operator_account(session, keybox))

        def fund(address: str) -> None:
            if funder is not None and chain.w3.eth.get_balance(address) < LOW_BALANCE_WEI:
                chain.fund(funder, address, FUNDING_WEI)
                counts["funded"] += 1

        fund(operator.address)
        deployment = session.scalar(
            select(ChainDeployment).where(ChainDeployment.contract_name == CapacityMarket.NAME,
                                          ChainDeployment.chain_id == chain_id)
            .order_by(ChainDeployment.id.desc()))
        if deployment is not None and not redeploy:
            try:
                CapacityMarket(chain, deployment.address).verify(chain_id)
            except ChainResetError:
                raise ChainResetError(
                    f"The CapacityMarket recorded at {deployment.address} on chain {chain_id} "
                    "is not there any more: the chain was reset under the platform. Its "
                    "records are gone from this node; restore the node's state, or run "
                    "'parkgrid chain setup --redeploy' to start a new ledger.") from None
            market = CapacityMarket(chain, deployment.address)
        else:
            market, receipt = CapacityMarket.deploy(chain, operator)
            session.add(ChainDeployment(
                contract_name=CapacityMarket.NAME, chain_id=chain_id, address=market.address,
                tx_hash=receipt.tx_hash, block_number=receipt.block_number,
                deployed_at=utcnow()))
            counts["deployed"] = 1
        step("deploy", 1)

        enterprises = session.scalars(select(Enterprise).order_by(Enterprise.id)).all()
        for enterprise in enterprises:
            if enterprise.chain_account is None:
                enterprise.chain_account = new_chain_account(
                    session, keybox, "enterprise", enterprise=enterprise)
                session.flush()
            address = enterprise.chain_account.address
            key = enterprise_key(enterprise.code)
            if (market.account_of(key) or "").lower() != address.lower():
                market.register_enterprise(operator, key, address)
                counts["registered"] += 1
            fund(address)
            step("enterprise", 1)

        # Settlement staff sign clearing and settlement records with keys of their own.
        staff = session.scalars(select(User).where(User.role == Role.SETTLEMENT)
                                .order_by(User.id)).all()
        for user in staff:
            account = session.scalar(select(ChainAccount).where(
                ChainAccount.user_id == user.id, ChainAccount.purpose == "staff"))
            if account is None:
                account = new_chain_account(session, keybox, "staff", user=user)
                session.flush()
            if not market.has_role("CLEARING_ROLE", account.address):
                market.grant_role(operator, "CLEARING_ROLE", account.address)
                counts["staff_signers"] += 1
            fund(account.address)
    return counts


def check_chain(platform) -> str:
    """At start-up: refuse to write into a chain that was reset; a node that is down is fine.

    Returns a line for the log. A node that is down only delays chain records (they wait in
    the outbox); a reset chain would silently lose them, so it raises ChainResetError.
    """
    from ..chain import ChainUnavailableError

    try:
        with platform.unit_of_work() as session:
            market = platform.market(session)
    except ChainUnavailableError as exc:
        return f"chain node not reachable yet ({exc}); chain records wait in the outbox"
    return f"chain ok: CapacityMarket at {market.address}"
