"""The README's first command across restarts: data kept, and a reset chain refused clearly."""

from __future__ import annotations

import pytest

from .conftest import RunningPlatform

pytestmark = pytest.mark.e2e


def test_restart_keeps_database_and_chain_and_a_reset_chain_is_refused(tmp_path):
    first = RunningPlatform(tmp_path, "anvil")
    try:
        token = first.token("enterprise", "enterprise-demo-1")
        day = first.api("GET", "/api/v1/orders/calendar", token=token)[1]["open_delivery_day"]
        status, created = first.api("POST", "/api/v1/orders", {
            "delivery_day": day, "side": "sell", "price": "0.01",
            "periods": [{"period": 0, "quantity_kva": "10"}]}, token=token)
        assert status == 201 and created["chain_status"] == "recorded", created
    finally:
        first.stop()

    second = RunningPlatform(tmp_path, "anvil")
    try:
        assert "deployed: 0, registered: 0" in second.output()
        auditor = second.token("auditor", "auditor-demo-1")
        status, report = second.api("GET", f"/api/v1/audit/orders/{created['id']}",
                                    token=auditor)
        assert status == 200 and report["matches"], report
    finally:
        second.stop()

    (tmp_path / "chain-state.json").unlink()  # the node comes back empty: a reset chain
    with pytest.raises(AssertionError, match="chain was reset under the platform"):
        RunningPlatform(tmp_path, "anvil")
