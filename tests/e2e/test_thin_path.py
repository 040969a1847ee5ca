"""The thin path through the real `parkgrid run`: browser and API, on anvil and on eth-tester."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e
HASH = re.compile(r"^0x[0-9a-f]{64}$")


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/$"))


def order_count(running, token) -> int:
    status, body = running.api("GET", "/api/v1/orders", token=token)
    assert status == 200, body
    return len(body)


def test_run_prints_url_and_every_roles_login(running):
    out = running.output()
    assert f"http://127.0.0.1:{running.port}/" in out
    for username in ("enterprise", "provider", "settlement", "auditor", "admin"):
        assert re.search(rf"^\s+\w+\s+{username}\s+\S+$", out, re.M), out


def test_an_order_in_the_browser_is_recorded_on_chain_and_audited(running, page):
    token = running.token("enterprise", "enterprise-demo-1")
    before = order_count(running, token)

    login(page, running.base_url, "enterprise", "enterprise-demo-1")
    page.goto(running.base_url + "/market/orders/new?side=sell")
    assert "挂牌" in page.content()  # Chinese by default

    # Bad input: a form error in the user's language, and nothing stored.
    page.fill("#quantity_kva", "-5")
    page.fill("#price", "0.05")
    page.click("#order-submit")
    error = page.locator(".error[data-field=quantity_kva]")
    assert "必须大于" in error.inner_text()
    assert order_count(running, token) == before

    page.fill("#first_hour", "8")
    page.fill("#last_hour", "17")
    page.fill("#quantity_kva", "120.5")
    page.fill("#price", "0.0450")
    page.click("#order-submit")
    page.wait_for_url(re.compile(r".*/market/orders/[0-9a-f-]{36}$"))
    page.wait_for_function(
        "document.querySelector('#tx-hash').innerText.startsWith('0x')", timeout=30_000)
    tx_hash = page.inner_text("#tx-hash").strip()
    block = page.inner_text("#block-number").strip()
    assert HASH.match(tx_hash) and block.isdigit()
    order_id = page.url.rsplit("/", 1)[1]
    assert order_count(running, token) == before + 1

    page.click("#lang-en")
    assert page.inner_text("#chain-status").strip() == "recorded on chain (v1)"

    page.click("button:has-text('Log out')")
    login(page, running.base_url, "auditor", "auditor-demo-1")
    page.goto(f"{running.base_url}/audit/orders/{order_id}")
    assert "ok" in page.get_attribute("#audit-result", "class")
    chain_record = page.inner_text("#chain-record")
    assert tx_hash in chain_record and block in chain_record


def test_an_order_through_the_api(running):
    token = running.token("enterprise2", "enterprise-demo-2")
    status, listings_before = running.api("GET", "/api/v1/orders", token=token)
    open_day = _open_day(running, token)
    body = {"delivery_day": open_day, "side": "sell", "price": "0.0300",
            "periods": [{"period": 9, "quantity_kva": "50"}, {"period": 10, "quantity_kva": "60"}]}
    status, created = running.api("POST", "/api/v1/orders", body, token=token)
    assert status == 201, created
    assert created["chain_status"] == "recorded" and HASH.match(created["chain_tx_hash"])

    auditor = running.token("auditor", "auditor-demo-1")
    status, report = running.api("GET", f"/api/v1/audit/orders/{created['id']}", token=auditor)
    assert status == 200 and report["matches"], report
    assert report["chain"]["tx_hash"] == created["chain_tx_hash"]

    # Refused input changes nothing.
    for bad in ({**body, "periods": [{"period": 9, "quantity_kva": "0"}]},
                {**body, "periods": [{"period": 9, "quantity_kva": "abc"}]},
                {**body, "price": "999"},
                {**body, "periods": [{"period": 30, "quantity_kva": "5"}]},
                {**body, "delivery_day": "2020-01-01"}):
        status, answer = running.api("POST", "/api/v1/orders", bad, token=token)
        assert status == 422, (bad, answer)
    status, answer = running.api("POST", "/api/v1/orders", {**body, "enterprise": "E001"},
                                 token=token)
    assert status == 403, answer
    status, listings_after = running.api("GET", "/api/v1/orders", token=token)
    assert len(listings_after) == len(listings_before) + 1


def _open_day(running, token) -> str:
    status, body = running.api("GET", "/api/v1/orders/calendar", token=token)
    assert status == 200, body
    return body["open_delivery_day"]
