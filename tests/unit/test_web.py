"""The web app and API on the demo park (SQLite, eth-tester chain, tasks in-process)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from parkgrid.models import Order
from parkgrid.services import calendar

HASH = re.compile(r"^0x[0-9a-f]{64}$")


def token(client, username, password):
    response = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def open_day(client, headers) -> str:
    response = client.get("/api/v1/orders/calendar", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["open_delivery_day"]


def listing_body(day, **changes):
    body = {"side": "sell", "delivery_day": day, "price": "0.0450",
            "periods": [{"period": 8, "quantity_kva": "100"},
                        {"period": 9, "quantity_kva": "80.5"}]}
    body.update(changes)
    return body


def counts(platform):
    with platform.unit_of_work() as session:
        rows = session.scalar(select(func.count()).select_from(Order))
    return rows, platform.chain.block_number()


def test_every_route_declares_its_roles_or_is_public(app):
    from parkgrid.web.security import LIBRARY_PUBLIC

    undeclared = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        target = getattr(view, "view_class", view)
        if rule.endpoint in LIBRARY_PUBLIC:
            continue
        if not (getattr(target, "_public", False) or getattr(target, "_roles", None)):
            undeclared.append(rule.rule)
    assert undeclared == []


def test_openapi_document_lists_the_api(client):
    spec = client.get("/api/openapi.json").json
    assert {"/api/v1/tokens", "/api/v1/orders", "/api/v1/orders/{public_id}",
            "/api/v1/audit/orders/{public_id}"} <= set(spec["paths"])
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()
    # The interactive docs' scripts are served from the pinned npm package, not a CDN.
    assert b"/vendor/swagger-ui/swagger-ui-bundle.js" in docs.data
    assert client.get("/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_pages_are_chinese_by_default_and_english_on_request(client):
    assert "登录" in client.get("/login").get_data(as_text=True)
    client.get("/lang/en")
    assert "Log in" in client.get("/login").get_data(as_text=True)


def test_api_listing_is_stored_and_recorded_on_chain(client, demo_platform):
    headers = token(client, "enterprise", "enterprise-demo-1")
    response = client.post("/api/v1/orders", json=listing_body(open_day(client, headers)),
                           headers=headers)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["chain_status"] == "recorded"
    assert HASH.match(created["chain_tx_hash"]) and created["chain_block_number"] > 0
    assert created["periods"] == [{"period": 8, "quantity_kva": "100.0"},
                                  {"period": 9, "quantity_kva": "80.5"}]

    auditor = token(client, "auditor", "auditor-demo-1")
    report = client.get(f"/api/v1/audit/orders/{created['id']}", headers=auditor).json
    assert report["matches"] is True and report["mismatches"] == []
    assert report["chain"]["content_hash"] == created["content_hash"]
    assert report["chain"]["tx_hash"] == created["chain_tx_hash"]


def test_api_batch_goes_on_chain_in_one_transaction_and_audits_clean(client, demo_platform):
    headers = token(client, "enterprise", "enterprise-demo-1")
    day = open_day(client, headers)
    bodies = [listing_body(day, periods=[{"period": p, "quantity_kva": "10"}]) for p in (1, 2)]
    bodies.append(listing_body(day, side="buy", price="0.05",
                               periods=[{"period": 3, "quantity_kva": "5"}]))
    response = client.post("/api/v1/orders/batch", json={"orders": bodies}, headers=headers)
    assert response.status_code == 201, response.json
    placed = response.json
    assert {o["chain_status"] for o in placed} == {"recorded"}
    assert {o["chain_path"] for o in placed} == {"batch"}
    assert len({o["chain_tx_hash"] for o in placed}) == 1  # one transaction for all three

    amended = client.put(f"/api/v1/orders/{placed[0]['id']}", headers=headers, json=listing_body(
        day, periods=[{"period": 1, "quantity_kva": "7"}])).json
    cancelled = client.delete(f"/api/v1/orders/{placed[1]['id']}", headers=headers).json
    assert (amended["chain_status"], amended["chain_version"]) == ("recorded", 2)
    assert (cancelled["chain_status"], cancelled["chain_version"]) == ("recorded", 2)

    auditor = token(client, "auditor", "auditor-demo-1")
    for order in placed:
        report = client.get(f"/api/v1/audit/orders/{order['id']}", headers=auditor).json
        assert report["mismatches"] == [], report
    report = client.get(f"/api/v1/audit/orders/{placed[1]['id']}", headers=auditor).json
    assert report["chain"]["cancelled"] is True and report["chain"]["version"] == 1


def test_api_batch_with_one_bad_order_stores_nothing(client, demo_platform):
    headers = token(client, "enterprise", "enterprise-demo-1")
    day = open_day(client, headers)
    before = counts(demo_platform)
    response = client.post("/api/v1/orders/batch", headers=headers, json={"orders": [
        listing_body(day), listing_body(day, price="abc")]})
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["orders[1].price"], response.json
    assert counts(demo_platform) == before


@pytest.mark.parametrize("change, field", [
    ({"periods": [{"period": 8, "quantity_kva": "-5"}]}, "quantity_kva"),
    ({"periods": [{"period": 8, "quantity_kva": "0"}]}, "quantity_kva"),
    ({"periods": [{"period": 8, "quantity_kva": "lots"}]}, "quantity_kva"),
    ({"periods": [{"period": 8, "quantity_kva": "999999"}]}, "quantity_kva"),
    ({"periods": [{"period": 24, "quantity_kva": "5"}]}, "periods"),
    ({"periods": [{"period": -1, "quantity_kva": "5"}]}, "periods"),
    ({"periods": []}, "periods"),
    ({"price": "0"}, "price"),
    ({"price": "11"}, "price"),
    ({"price": "abc"}, "price"),
    ({"price": "0.12345"}, "price"),
    ({"delivery_day": "2020-01-01"}, "delivery_day"),
    ({"delivery_day": "tomorrow"}, "delivery_day"),
])
def test_bad_listing_is_refused_and_writes_nothing(client, demo_platform, change, field):
    headers = token(client, "enterprise", "enterprise-demo-1")
    body = listing_body(open_day(client, headers), **change)
    before = counts(demo_platform)
    response = client.post("/api/v1/orders", json=body, headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert counts(demo_platform) == before


def test_listing_for_another_enterprise_is_forbidden(client, demo_platform):
    headers = token(client, "enterprise2", "enterprise-demo-2")
    before = counts(demo_platform)
    response = client.post("/api/v1/orders", headers=headers,
                           json=listing_body(open_day(client, headers), enterprise="E001"))
    assert response.status_code == 403
    assert "E002" in response.json["message"]
    assert counts(demo_platform) == before


def test_roles_are_checked(client):
    assert client.get("/api/v1/orders").status_code == 401
    auditor = token(client, "auditor", "auditor-demo-1")
    day = open_day(client, auditor)
    assert client.post("/api/v1/orders", json=listing_body(day),
                       headers=auditor).status_code == 403
    provider = token(client, "provider", "provider-demo-1")
    assert client.get("/api/v1/orders", headers=provider).status_code == 403
    enterprise = token(client, "enterprise", "enterprise-demo-1")
    assert client.get("/api/v1/audit/orders/x", headers=enterprise).status_code == 403
    bad = {"Authorization": "Bearer not-a-token"}
    assert client.get("/api/v1/orders", headers=bad).status_code == 401


def test_an_enterprise_never_sees_another_enterprises_listing(client):
    first = token(client, "enterprise", "enterprise-demo-1")
    created = client.post("/api/v1/orders", json=listing_body(open_day(client, first)),
                          headers=first).json
    second = token(client, "enterprise2", "enterprise-demo-2")
    assert client.get(f"/api/v1/orders/{created['id']}", headers=second).status_code == 404
    assert all(item["id"] != created["id"]
               for item in client.get("/api/v1/orders", headers=second).json)


def page_login(client, username, password):
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)


def test_page_thin_path_and_form_errors(app, client, demo_platform):
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "enterprise", "enterprise-demo-1")
    form = client.get("/market/orders/new?side=sell").get_data(as_text=True)
    assert "挂牌富余容量" in form
    before = counts(demo_platform)
    bad = client.post("/market/orders/new?side=sell", data={
        "delivery_day": "", "first_hour": "8", "last_hour": "30", "quantity_kva": "-1",
        "price": "x"}).get_data(as_text=True)
    assert "不是交割日的时段" in bad and "价格必须是" in bad
    assert counts(demo_platform) == before

    day = calendar.open_delivery_day(_park(demo_platform), calendar.utcnow()).isoformat()
    response = client.post("/market/orders/new?side=sell", data={
        "delivery_day": day, "first_hour": "8", "last_hour": "11", "quantity_kva": "200",
        "price": "0.05"})
    assert response.status_code == 302
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "已上链" in detail
    assert re.search(r'id="tx-hash">0x[0-9a-f]{64}<', detail)


def _park(platform):
    from parkgrid.models import Park

    with platform.unit_of_work() as session:
        return session.scalar(select(Park))


def test_forms_need_a_csrf_token(client):
    response = client.post("/login", data={"username": "enterprise",
                                           "password": "enterprise-demo-1"})
    assert response.status_code == 400
    assert "表单已过期" in response.get_data(as_text=True)


def test_wrong_password_is_refused(app, client):
    app.config["WTF_CSRF_ENABLED"] = False
    response = client.post("/login", data={"username": "enterprise", "password": "nope"})
    assert response.status_code == 200 and "用户名或密码错误" in response.get_data(as_text=True)
    assert client.post("/api/v1/tokens", json={"username": "enterprise",
                                               "password": "nope"}).status_code == 401


def test_pages_enforce_roles(app, client):
    app.config["WTF_CSRF_ENABLED"] = False
    assert client.get("/market/orders").status_code == 302  # to the login page
    page_login(client, "provider", "provider-demo-1")
    assert client.get("/market/orders").status_code == 403
    assert client.get("/audit/orders").status_code == 403


def test_auditor_page_shows_both_records_and_catches_tampering(app, client, demo_platform):
    headers = token(client, "enterprise", "enterprise-demo-1")
    created = client.post("/api/v1/orders", json=listing_body(open_day(client, headers)),
                          headers=headers).json
    app.config["WTF_CSRF_ENABLED"] = False
    page_login(client, "auditor", "auditor-demo-1")
    page = client.get(f"/audit/orders/{created['id']}").get_data(as_text=True)
    assert "数据库与链上记录一致" in page and created["chain_tx_hash"] in page

    with demo_platform.unit_of_work() as session:
        order = session.scalar(select(Order).where(Order.public_id == created["id"]))
        order.price = order.price * 2
    page = client.get("/audit/orders").get_data(as_text=True)
    assert "数据库中的订单与已上链版本不一致" in page
