"""Failed logins are throttled per address and username (pages and API alike); successful
logins are not, and a throttled login says why in the user's language."""

from __future__ import annotations

from parkgrid.web import security


def wrong_page_login(client, username="enterprise"):
    return client.post("/login", data={"username": username, "password": "not-it-1234"})


def wrong_token(client, username="enterprise"):
    return client.post("/api/v1/tokens", json={"username": username, "password": "not-it-1234"})


def allowed() -> int:
    return int(security.FAILED_LOGINS_PER_USER.split()[0])


def test_failed_page_logins_are_throttled_with_a_clear_message(app, client):
    app.config["WTF_CSRF_ENABLED"] = False
    for _ in range(allowed()):
        assert wrong_page_login(client).status_code == 200  # the form, with its error
    throttled = wrong_page_login(client)
    assert throttled.status_code == 429
    assert "登录失败次数过多" in throttled.get_data(as_text=True)
    # Even the right password waits now: guessing on is pointless.
    right = client.post("/login", data={"username": "enterprise",
                                        "password": "enterprise-demo-1"})
    assert right.status_code == 429
    # Another user from the same address is not locked out by these failures.
    other = client.post("/login", data={"username": "auditor", "password": "auditor-demo-1"})
    assert other.status_code == 302


def test_failed_token_requests_are_throttled_and_successes_are_free(client):
    for _ in range(allowed() + 3):  # successes cost nothing
        ok = client.post("/api/v1/tokens", json={"username": "auditor",
                                                 "password": "auditor-demo-1"})
        assert ok.status_code == 201
    for _ in range(allowed()):
        assert wrong_token(client).status_code == 401
    throttled = wrong_token(client)
    assert throttled.status_code == 429
    assert throttled.json["code"] == 429 and "登录失败次数过多" in throttled.json["message"]


def test_one_address_trying_many_usernames_is_throttled_too(client):
    per_address = int(security.FAILED_LOGINS_PER_ADDRESS.split()[0])
    statuses = [wrong_token(client, f"guess{k}").status_code for k in range(per_address + 1)]
    assert statuses[:per_address] == [401] * per_address
    assert statuses[-1] == 429
