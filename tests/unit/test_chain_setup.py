"""Setting up the chain for the demo park: idempotent, every party holds its own key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from parkgrid.chain import CapacityMarket, ChainResetError, EthTesterChain, enterprise_key
from parkgrid.models import ChainAccount, ChainDeployment, Enterprise, User
from parkgrid.services.chain_setup import check_chain, setup_chain


def test_every_enterprise_and_staff_signer_is_registered_and_a_rerun_does_nothing(
        demo_platform):
    with demo_platform.unit_of_work() as session:
        market = demo_platform.market(session)
        for enterprise in session.scalars(select(Enterprise)):
            assert market.account_of(enterprise_key(enterprise.code)) == \
                enterprise.chain_account.address
        staff = session.scalar(select(ChainAccount).join(User, ChainAccount.user_id == User.id)
                               .where(User.username == "settlement"))
        assert staff.purpose == "staff" and market.has_role("CLEARING_ROLE", staff.address)
        assert b"PRIVATE" not in staff.encrypted_key and len(staff.encrypted_key) > 64
    block = demo_platform.chain.block_number()
    counts = setup_chain(demo_platform, funder=demo_platform.chain.funded_account())
    assert counts == {"deployed": 0, "registered": 0, "staff_signers": 0, "funded": 0}
    assert demo_platform.chain.block_number() == block
    assert check_chain(demo_platform).startswith("chain ok")


def test_a_chain_reset_under_the_platform_is_refused_clearly(demo_platform):
    demo_platform._chain = EthTesterChain()  # a fresh chain with the same chain id
    with pytest.raises(ChainResetError, match="there is no code at that address"):
        check_chain(demo_platform)
    with demo_platform.unit_of_work() as session:
        assert session.scalar(select(ChainDeployment)).contract_name == CapacityMarket.NAME
