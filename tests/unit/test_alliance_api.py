"""The alliance API on the demo park: applications and decisions, roster edits, a repair
request taken to its signed close over HTTP, the role matrix (403) and refused input (422)."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image

from .test_web import token

LOGINS = {"admin": "admin-demo-1", "settlement": "settlement-demo-1",
          "auditor": "auditor-demo-1", "enterprise": "enterprise-demo-1",
          "enterprise2": "enterprise-demo-2", "provider": "provider-demo-1"}


def image(fmt="PNG", size=(48, 32), color=(30, 90, 160)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def headers(client):
    found = {}

    def get(username):
        if username not in found:
            found[username] = token(client, username, LOGINS[username])
        return found[username]

    return get


def roster(valid: int, lapsed: int = 0) -> list[dict]:
    return [{"code": f"N{n:02d}", "name": f"电工{n}", "home_lat": "31.31", "home_lon": "120.71",
             "skills": ["low_voltage"], "shift_start": "08:00", "shift_end": "20:00",
             "certificates": [{"type": "low_voltage", "number": f"T{n:05d}",
                               "expires": "2099-01-01" if n < valid else "2001-01-01"}]}
            for n in range(valid + lapsed)]


def application(code: str, valid: int = 10, lapsed: int = 0, **changes) -> dict:
    body = {"code": code, "name": f"{code}电气工程有限公司", "alliance": "shared_electricians",
            "licence": {"number": "5-2-00077-2024", "level": 5, "issued": "2024-01-01",
                        "expires": "2099-12-31"},
            "electricians": roster(valid, lapsed),
            "login": {"username": f"{code.lower()}-dispatch", "password": "a-long-password-1"}}
    body.update(changes)
    return body


def raise_repair(client, headers, *, photos=(), **fields):
    form = {"title": "配电室跳闸", "description": "2号柜", "lat": "31.300100",
            "lon": "120.700200", "urgent": "true", **fields}
    form["photos"] = [(BytesIO(data), name) for name, data in photos]
    return client.post("/api/v1/jobs", data=form, headers=headers,
                       content_type="multipart/form-data")


@pytest.fixture
def job_code(client, headers):
    response = raise_repair(client, headers("enterprise"))
    assert response.status_code == 201, response.json
    return response.json["code"]


def test_openapi_documents_the_alliance_endpoints(client):
    spec = client.get("/api/openapi.json").json
    paths = set(spec["paths"])
    assert {"/api/v1/alliance/applications", "/api/v1/alliance/providers/{code}/decision",
            "/api/v1/alliance/providers/{code}/electricians",
            "/api/v1/alliance/electricians/{electrician_id}/position", "/api/v1/jobs",
            "/api/v1/jobs/{code}", "/api/v1/jobs/{code}/accept", "/api/v1/jobs/{code}/photos",
            "/api/v1/jobs/{code}/sign-off", "/api/v1/jobs/{code}/no-show"} <= paths
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert spec["paths"]["/api/v1/jobs/{code}/accept"]["post"]["security"] == [
        {"bearerAuth": []}]


def test_an_application_is_decided_by_the_operator(client, headers):
    created = client.post("/api/v1/alliance/applications", json=application("NEW10"))
    assert created.status_code == 201, created.json
    assert (created.json["status"], created.json["receives_offers"]) == ("applied", False)
    assert created.json["electricians"] == 10

    decided = client.post("/api/v1/alliance/providers/NEW10/decision",
                          json={"approve": True, "note": "资料齐全"}, headers=headers("admin"))
    assert decided.status_code == 200, decided.json
    assert (decided.json["status"], decided.json["receives_offers"]) == ("approved", True)
    again = client.post("/api/v1/alliance/providers/NEW10/decision", json={"approve": True},
                        headers=headers("admin"))
    assert again.status_code == 409

    # The new company logs in with the login it applied with and sees only itself.
    own = token(client, "new10-dispatch", "a-long-password-1")
    listed = client.get("/api/v1/alliance/providers", headers=own).json
    assert [p["code"] for p in listed] == ["NEW10"]
    assert client.get("/api/v1/alliance/providers/P01", headers=own).status_code == 404


def test_approval_of_nine_valid_electricians_is_refused_with_the_reason(client, headers):
    assert client.post("/api/v1/alliance/applications",
                       json=application("NINE", valid=9, lapsed=1)).status_code == 201
    refused = client.post("/api/v1/alliance/providers/NINE/decision", json={"approve": True},
                          headers=headers("admin"))
    assert refused.status_code == 409
    assert refused.json["errors"]["electricians"] == ["9 名电工持有效证书，至少需要 10 名"]
    shown = client.get("/api/v1/alliance/providers/NINE", headers=headers("admin")).json
    assert shown["status"] == "applied"


@pytest.mark.parametrize(("changes", "field"), [
    ({"licence": {"number": "X", "level": 6, "expires": "2099-01-01"}}, "licence"),
    ({"electricians": []}, "electricians"),
    ({"alliance": "electricians_club"}, "alliance"),
    ({"login": {"username": "ab", "password": "short"}}, "login"),
])
def test_a_bad_application_gets_422_by_field(client, changes, field):
    response = client.post("/api/v1/alliance/applications",
                           json=application("BAD", **changes))
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert client.post("/api/v1/alliance/applications",
                       json=application("BAD")).status_code == 201  # nothing was kept


def _electrician(client, headers) -> int:
    roster = client.get("/api/v1/alliance/providers/P01/electricians",
                        headers=headers("provider"))
    assert roster.status_code == 200
    return roster.json[0]["id"]


def _make_always_available(client, headers, electrician_id):
    patched = client.patch(f"/api/v1/alliance/electricians/{electrician_id}",
                           json={"shift_start": "00:00", "shift_end": "00:00",
                                 "weekdays": [1, 2, 3, 4, 5, 6, 7],
                                 "skills": ["low_voltage", "cable"]},
                           headers=headers("provider"))
    assert patched.status_code == 200, patched.json
    renewed = client.post(f"/api/v1/alliance/electricians/{electrician_id}/certificates",
                          json={"type": "low_voltage", "number": "T-API-1",
                                "expires": "2099-01-01"}, headers=headers("provider"))
    assert renewed.status_code == 200, renewed.json
    assert {"low_voltage", "cable"} == set(renewed.json["skills"])
    return renewed.json


def test_a_repair_request_is_taken_to_its_signed_close_over_http(client, headers,
                                                                  demo_platform):
    created = raise_repair(client, headers("enterprise"), photos=[("crack.jpg", image("JPEG"))])
    assert created.status_code == 201, created.json
    code = created.json["code"]
    assert created.json["status"] == "new" and created.json["on_site_clock"]["time_left_s"] > 0
    assert [a["kind"] for a in created.json["attachments"]] == ["photo"]

    electrician = _electrician(client, headers)
    _make_always_available(client, headers, electrician)
    candidates = client.get(f"/api/v1/jobs/{code}/candidates", headers=headers("settlement"))
    assert electrician in {c["electrician_id"] for c in candidates.json}

    desk, provider = headers("settlement"), headers("provider")
    offered = client.post(f"/api/v1/jobs/{code}/offer", json={"electrician_id": electrician},
                          headers=desk)
    assert offered.status_code == 200, offered.json
    assert offered.json["electrician"]["id"] == electrician
    for step in ("accept", "travel", "check-in", "work"):
        response = client.post(f"/api/v1/jobs/{code}/{step}", json={}, headers=provider)
        assert response.status_code == 200, (step, response.json)
    photo = client.post(f"/api/v1/jobs/{code}/photos", headers=provider,
                        data={"photo": (BytesIO(image()), "done.png")},
                        content_type="multipart/form-data")
    assert photo.status_code == 201, photo.json and photo.json["photos"] == 1
    asked = client.post(f"/api/v1/jobs/{code}/sign-off-request", json={}, headers=provider)
    assert asked.json["status"] == "awaiting_sign_off"

    customer = headers("enterprise")
    signed = client.post(f"/api/v1/jobs/{code}/sign-off", headers=customer,
                         data={"signer_name": "王经理",
                               "signature": (BytesIO(image(color=(0, 0, 0))), "sig.png")},
                         content_type="multipart/form-data")
    assert signed.status_code == 200, signed.json
    assert signed.json["status"] == "closed" and signed.json["on_site_clock"]["sla_met"] is True
    assert [e["kind"] for e in signed.json["events"]][-2:] == ["request_sign_off", "sign_off"]

    late = client.post(f"/api/v1/jobs/{code}/accept", json={}, headers=provider)
    assert late.status_code == 409
    assert late.json["message"] == "该工单已关闭或已取消，未作任何更改。"

    signature = signed.json["attachments"][-1]
    fetched = client.get(f"/api/v1/jobs/{code}/attachments/{signature['id']}", headers=customer)
    assert fetched.status_code == 200 and fetched.mimetype == "image/png"
    assert fetched.data[:4] == b"\x89PNG"
    assert client.get(f"/api/v1/jobs/{code}/attachments/{signature['id']}",
                      headers=headers("enterprise2")).status_code == 404


def test_refused_uploads_get_422_and_store_nothing(client, headers, demo_platform, job_code):
    before = len(demo_platform.storage.files())
    fake = raise_repair(client, headers("enterprise"),
                        photos=[("photo.jpg", b"plain text renamed to look like a photo")])
    assert fake.status_code == 422 and "photos" in fake.json["errors"]
    missing = raise_repair(client, headers("enterprise"), title="")
    assert missing.status_code == 422 and "title" in missing.json["errors"]
    no_file = client.post(f"/api/v1/jobs/{job_code}/photos", headers=headers("provider"),
                          data={}, content_type="multipart/form-data")
    assert no_file.status_code == 422
    bad_offer = client.post(f"/api/v1/jobs/{job_code}/offer", json={},
                            headers=headers("settlement"))
    assert bad_offer.status_code == 422 and "electrician_id" in bad_offer.json["errors"]
    electrician = _electrician(client, headers)
    far = client.post(f"/api/v1/alliance/electricians/{electrician}/position",
                      json={"lat": "91", "lon": "120.7"}, headers=headers("provider"))
    assert far.status_code == 422 and "lat" in far.json["errors"]
    assert len(demo_platform.storage.files()) == before


def test_an_offer_to_someone_ineligible_is_409_with_the_reasons(client, headers, job_code):
    electrician = _electrician(client, headers)
    _make_always_available(client, headers, electrician)
    off = client.patch(f"/api/v1/alliance/electricians/{electrician}", json={"active": False},
                       headers=headers("provider"))
    assert off.status_code == 200 and off.json["active"] is False
    response = client.post(f"/api/v1/jobs/{job_code}/offer",
                           json={"electrician_id": electrician}, headers=headers("settlement"))
    assert response.status_code == 409
    assert response.json["errors"]["electrician"] == ["该电工未启用"]
    shown = client.get(f"/api/v1/jobs/{job_code}", headers=headers("enterprise")).json
    assert shown["status"] == "new" and shown["electrician"] is None


PROVIDER_BODY = {"code": "X-1", "name": "某", "home_lat": "31.3", "home_lon": "120.7"}


@pytest.mark.parametrize(("method", "path", "who", "body", "status"), [
    ("POST", "/api/v1/alliance/providers/P01/decision", "enterprise", {"approve": True}, 403),
    ("POST", "/api/v1/alliance/providers/P01/decision", "provider", {"approve": True}, 403),
    ("POST", "/api/v1/alliance/providers/P01/decision", "settlement", {"approve": True}, 403),
    ("GET", "/api/v1/alliance/providers", "enterprise", None, 403),
    ("POST", "/api/v1/alliance/providers/P01/electricians", "auditor", PROVIDER_BODY, 403),
    ("POST", "/api/v1/alliance/providers/P02/electricians", "provider", PROVIDER_BODY, 403),
    ("POST", "/api/v1/alliance/standing", "settlement", {}, 403),
    ("GET", "/api/v1/jobs/{code}/candidates", "enterprise", None, 403),
    ("GET", "/api/v1/jobs/{code}/candidates", "provider", None, 404),  # not its job
    ("POST", "/api/v1/jobs/{code}/offer", "enterprise", {"electrician_id": 1}, 403),
    ("POST", "/api/v1/jobs/{code}/offer", "provider", {"electrician_id": 1}, 403),
    ("POST", "/api/v1/jobs/{code}/accept", "enterprise", {}, 403),
    ("POST", "/api/v1/jobs/{code}/accept", "auditor", {}, 403),
    ("POST", "/api/v1/jobs/{code}/no-show", "provider", {}, 403),
    ("POST", "/api/v1/jobs/{code}/escalate", "enterprise", {"reason": "x"}, 403),
    ("POST", "/api/v1/jobs/{code}/cancel", "auditor", {"reason": "x"}, 403),
    ("POST", "/api/v1/jobs/{code}/cancel", "enterprise2", {"reason": "x"}, 403),
    ("POST", "/api/v1/jobs/{code}/sign-off", "provider", None, 403),
    ("GET", "/api/v1/jobs/{code}", "enterprise2", None, 404),
    ("GET", "/api/v1/jobs/{code}", None, None, 401),
])
def test_the_role_matrix(client, headers, job_code, method, path, who, body, status):
    response = client.open(path.format(code=job_code), method=method, json=body,
                           headers=headers(who) if who else {})
    assert response.status_code == status, response.json


def test_only_enterprises_raise_repairs_and_each_sees_its_own(client, headers, job_code):
    assert raise_repair(client, headers("provider")).status_code == 403
    assert [j["code"] for j in client.get("/api/v1/jobs",
                                          headers=headers("enterprise")).json] == [job_code]
    assert client.get("/api/v1/jobs", headers=headers("enterprise2")).json == []
    assert job_code in {j["code"] for j in client.get("/api/v1/jobs",
                                                      headers=headers("auditor")).json}
    assert client.get("/api/v1/jobs", headers=headers("provider")).json == []


def test_the_operator_refreshes_standing(client, headers):
    response = client.post("/api/v1/alliance/standing", json={}, headers=headers("admin"))
    assert response.status_code == 200
    by_code = {r["code"]: r for r in response.json}
    assert by_code["P01"]["receives_offers"] is True and by_code["P01"]["reasons"] == []
    future = client.post("/api/v1/alliance/standing", json={"day": "2099-01-01"},
                         headers=headers("admin")).json
    assert all(r["receives_offers"] is False for r in future)
    shown = client.get("/api/v1/alliance/providers/P01", headers=headers("provider")).json
    assert shown["standing_reasons"][0]["code"] == "licence_expired"
    assert shown["standing_reasons"][0]["message"].startswith("许可证")


def test_with_automatic_dispatch_a_repair_request_is_offered_at_once(client, headers,
                                                                     demo_platform):
    from dataclasses import replace

    electrician = _electrician(client, headers)
    _make_always_available(client, headers, electrician)
    demo_platform.settings = replace(demo_platform.settings, auto_dispatch=True)
    created = raise_repair(client, headers("enterprise"))
    assert created.status_code == 201, created.json
    shown = client.get(f"/api/v1/jobs/{created.json['code']}", headers=headers("settlement"))
    assert shown.json["status"] == "offered"
    assert shown.json["electrician"]["id"] is not None
    # Declined: the round after the decline offers it to someone else at once.
    first = shown.json["electrician"]["id"]
    desk = headers("settlement")
    candidates = client.get(f"/api/v1/jobs/{created.json['code']}/candidates", headers=desk)
    declined = client.post(f"/api/v1/jobs/{created.json['code']}/decline",
                           json={"electrician_id": first, "reason": "忙"}, headers=desk)
    assert declined.status_code == 200, declined.json
    again = client.get(f"/api/v1/jobs/{created.json['code']}", headers=desk).json
    if candidates.json:  # someone else could take it
        assert again["status"] == "offered" and again["electrician"]["id"] != first
    else:
        assert again["status"] in ("awaiting_dispatch", "escalated")
