"""Role × route matrix: every HTTP route, every method, every role it does not declare is
refused (403), and nobody is let in without logging in (401 on the API, the login page for
pages); each refusal changes nothing in the database or on the chain."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from parkgrid.db import Base
from parkgrid.demo import DEMO_LOGINS
from parkgrid.models import Role
from parkgrid.web.security import LIBRARY_PUBLIC

PASSWORDS = {role: (username, password) for role, username, password in DEMO_LOGINS}
# A URL variable, with or without its converter: <code>, <int:job_id>.
VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def routes(app):
    """(endpoint, method, url, declared roles) of every route that declares roles."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in LIBRARY_PUBLIC:
            continue
        view = app.view_functions[rule.endpoint]
        owner = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            target = getattr(owner, method.lower(), None) if owner else view
            target = target or view
            if getattr(target, "_public", False):
                continue
            allowed = getattr(target, "_roles", None)
            assert allowed, f"{rule.rule} {method} declares no roles"
            url = VARIABLE.sub(lambda m: "1" if m.group(1) in ("int", "float") else "X",
                               rule.rule)
            found.append((rule.endpoint, method, url, frozenset(allowed)))
    return found


def fingerprint(platform) -> tuple:
    """Row counts of every table but the audit log (which records the refused attempts of
    staff themselves), and the chain's height."""
    with platform.unit_of_work() as session:
        rows = tuple(session.scalar(select(func.count()).select_from(table))
                     for table in Base.metadata.sorted_tables if table.name != "audit_log")
    return rows, platform.chain.block_number()


def bearer(client, role) -> dict:
    username, password = PASSWORDS[role]
    response = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def call(client, method, url, headers=None):
    return client.open(url, method=method, headers=headers or {}, json={}
                       if method in ("POST", "PUT", "PATCH") else None)


def test_the_matrix_covers_pages_and_api(app):
    found = routes(app)
    assert any(url.startswith("/api/") for _, _, url, _ in found)
    assert any(not url.startswith("/api/") for _, _, url, _ in found)
    assert len(found) > 80


def test_nobody_gets_in_without_logging_in(app, client, demo_platform):
    app.config["WTF_CSRF_ENABLED"] = False
    before = fingerprint(demo_platform)
    for endpoint, method, url, _ in routes(app):
        response = call(client, method, url)
        if url.startswith("/api/"):
            assert response.status_code == 401, (endpoint, method, url, response.status_code)
        else:
            assert response.status_code == 302, (endpoint, method, url, response.status_code)
            assert "/login" in response.headers["Location"]
    assert fingerprint(demo_platform) == before


@pytest.mark.parametrize("role", Role.ALL)
def test_every_role_is_refused_every_route_it_is_not_declared_for(app, client, demo_platform,
                                                                   role):
    app.config["WTF_CSRF_ENABLED"] = False
    api = bearer(client, role)
    username, password = PASSWORDS[role]
    assert client.post("/login", data={"username": username,
                                       "password": password}).status_code == 302
    before = fingerprint(demo_platform)
    refused = 0
    for endpoint, method, url, allowed in routes(app):
        if role in allowed:
            continue
        response = call(client, method, url, api if url.startswith("/api/") else None)
        assert response.status_code == 403, (role, endpoint, method, url, response.status_code)
        refused += 1
    assert refused > 0
    assert fingerprint(demo_platform) == before


def audit_rows(platform) -> list:
    from parkgrid.models import AuditLogEntry

    with platform.unit_of_work() as session:
        return [(e.user.username, e.action, e.target, json.loads(e.detail))
                for e in session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id))]


def test_every_changing_staff_request_is_in_the_audit_log_and_no_one_elses(app, client,
                                                                         demo_platform):
    app.config["WTF_CSRF_ENABLED"] = False
    before = len(audit_rows(demo_platform))
    desk = bearer(client, Role.SETTLEMENT)
    refused = client.post("/api/v1/jobs/NOPE/no-show", json={}, headers=desk)
    assert refused.status_code == 404
    enterprise = bearer(client, Role.ENTERPRISE)
    client.post("/api/v1/jobs/NOPE/cancel", json={"reason": "x"}, headers=enterprise)
    client.get("/api/v1/alliance/providers", headers=desk)  # reading is not logged
    rows = audit_rows(demo_platform)[before:]
    assert rows == [("settlement", "jobs_api.job_no_show", "/api/v1/jobs/NOPE/no-show",
                     {"status": 404, "method": "POST", "args": {"code": "NOPE"},
                      "address": "127.0.0.1"})]
    # A staff login's password never reaches the log.
    username, password = PASSWORDS[Role.ADMIN]
    client.post("/login", data={"username": username, "password": password})
    client.post("/logout")
    assert all(password not in json.dumps(r) for r in audit_rows(demo_platform))
