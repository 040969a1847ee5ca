"""The market contract's verification is reused for a few seconds in a process, while the
check that the chain did not go back (reset, older state) still runs before every use."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from parkgrid import wiring
from parkgrid.chain import CapacityMarket, ChainResetError, EthTesterChain
from parkgrid.models import ChainDeployment


@pytest.fixture
def verifications(monkeypatch):
    """Counts the full verifications (chain id and contract code) made."""
    calls = []
    original = CapacityMarket.verify

    def counting(self, expected_chain_id):
        calls.append(expected_chain_id)
        return original(self, expected_chain_id)

    monkeypatch.setattr(CapacityMarket, "verify", counting)
    return calls


def market(platform):
    with platform.unit_of_work() as session:
        return platform.market(session)


def test_a_verified_market_is_reused_for_a_few_seconds(demo_platform, verifications,
                                                       monkeypatch):
    first = market(demo_platform)
    assert market(demo_platform) is first and len(verifications) == 1
    monkeypatch.setattr(wiring, "VERIFIED_FOR_S", 0.0)  # the time is up: verified again
    assert market(demo_platform) is not first and len(verifications) == 2


def test_a_chain_gone_back_is_refused_even_right_after_a_verification(demo_platform,
                                                                      verifications):
    chain = demo_platform.chain
    snapshot = chain.snapshot()
    chain.fund(chain.funded_account(), chain.funded_account(1).address, 1)
    market(demo_platform)  # verified, and the head after that block seen
    chain.revert_to(snapshot)  # restarted from an older state: the contract is still there
    with pytest.raises(ChainResetError, match="older state"):
        market(demo_platform)
    assert len(verifications) == 2  # the failed head check made it verify in full again


def test_a_reset_chain_is_refused_right_after_a_verification(demo_platform):
    market(demo_platform)
    demo_platform._chain = EthTesterChain()  # same chain id, no contract
    with pytest.raises(ChainResetError, match="no code at that address"):
        market(demo_platform)


def test_a_new_deployment_record_is_verified_at_once(demo_platform, verifications):
    first = market(demo_platform)
    with demo_platform.unit_of_work() as session:
        old = session.scalar(select(ChainDeployment))
        session.add(ChainDeployment(contract_name=old.contract_name, chain_id=old.chain_id,
                                    address="0x" + "11" * 20, tx_hash=old.tx_hash,
                                    block_number=old.block_number))
    with pytest.raises(ChainResetError, match="no code at that address"):
        market(demo_platform)
    assert first.address != "0x" + "11" * 20 and len(verifications) == 2
