"""Nothing is lost while the chain node is down: orders wait in the outbox, then go on chain."""

from __future__ import annotations

import pytest
from eth_account import Account

from parkgrid import migrate
from parkgrid.chain import ANVIL_DEFAULT_KEY, AnvilNode, free_port
from parkgrid.config import Settings
from parkgrid.demo import generate_demo_park, load_demo_park
from parkgrid.services.chain_setup import setup_chain
from parkgrid.web import create_app
from parkgrid.wiring import Platform

pytestmark = pytest.mark.integration


def test_orders_wait_for_a_stopped_node_and_are_recorded_when_it_returns(tmp_path):
    port = free_port()
    state = tmp_path / "chain-state.json"
    node = AnvilNode(port=port, state_file=state).start()
    try:
        settings = Settings(data_dir=tmp_path, chain_url=node.url,
                            secret_key="outbox-test").with_defaults()
        migrate.upgrade(settings.database_url)
        platform = Platform(settings)
        with platform.unit_of_work() as session:
            load_demo_park(session, platform.keybox, generate_demo_park())
        setup_chain(platform, funder=Account.from_key(ANVIL_DEFAULT_KEY))
        client = create_app(settings, platform).test_client()
        token = client.post("/api/v1/tokens", json={
            "username": "enterprise", "password": "enterprise-demo-1"}).json["token"]
        headers = {"Authorization": f"Bearer {token}"}
        day = client.get("/api/v1/orders/calendar", headers=headers).json["open_delivery_day"]

        def submit(period):
            response = client.post("/api/v1/orders", headers=headers, json={
                "delivery_day": day, "side": "sell", "price": "0.03",
                "periods": [{"period": period, "quantity_kva": "20"}]})
            assert response.status_code == 201, response.json
            return response.json

        assert submit(1)["chain_status"] == "recorded"
        node.stop()
        waiting = [submit(2), submit(3)]
        assert [item["chain_status"] for item in waiting] == ["pending", "pending"]
        page = client.get(f"/api/v1/orders/{waiting[0]['id']}", headers=headers).json
        assert page["chain_status"] == "pending" and page["chain_tx_hash"] is None

        from parkgrid import tasks

        # The scheduled sweep leaves them while the node is away (no retries piled up)...
        assert tasks.flush_outbox(older_than_s=0) == 0
        node = AnvilNode(port=port, state_file=state).start()
        # ...and once it is back, takes only orders pending for longer than it is told.
        assert tasks.flush_outbox(older_than_s=3600) == 0
        assert tasks.flush_outbox(older_than_s=0) == 2
        recorded = [client.get(f"/api/v1/orders/{item['id']}", headers=headers).json
                    for item in waiting]
        assert [item["chain_status"] for item in recorded] == ["recorded", "recorded"]
        # Orders that waited together go on chain together: one batch transaction.
        assert [item["chain_path"] for item in recorded] == ["batch", "batch"]
        assert recorded[0]["chain_tx_hash"] == recorded[1]["chain_tx_hash"]
        assert tasks.flush_outbox() == 0
    finally:
        node.stop()
