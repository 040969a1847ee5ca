"""Schemathesis over the app's own OpenAPI document: for each role, every operation the role
may call is sent generated input (fitting the schema and not) through the real app (SQLite
demo park, eth-tester chain, no mocks); nothing may answer with a server error, and what is
accepted must match the documented response schema."""

from __future__ import annotations

import os
import re
import traceback

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup

from parkgrid.demo import DEMO_LOGINS
from parkgrid.models import Role
from parkgrid.web.security import LIBRARY_PUBLIC

# Examples per operation, generation mode and role: small and derandomised, so the whole file
# stays well under two minutes on two cores. Raise PARKGRID_FUZZ_EXAMPLES for a deeper run.
EXAMPLES = int(os.environ.get("PARKGRID_FUZZ_EXAMPLES", "6"))
PROFILE = "parkgrid-api-fuzz"
settings.register_profile(
    PROFILE, derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    print_blob=False)

PASSWORDS = {role: (username, password) for role, username, password in DEMO_LOGINS}
# A URL variable of a Flask rule and its name: <code>, <int:job_id>.
VARIABLE = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>")


def declared(app) -> dict[tuple[str, str], frozenset | None]:
    """(METHOD, OpenAPI path) → the roles the view declares, None for a public one."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in LIBRARY_PUBLIC:
            continue
        view = app.view_functions[rule.endpoint]
        owner = getattr(view, "view_class", None)
        path = VARIABLE.sub(lambda m: "{" + m.group(1) + "}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            target = (getattr(owner, method.lower(), None) if owner else None) or view
            found[(method, path)] = (None if getattr(target, "_public", False)
                                     else frozenset(getattr(target, "_roles", ())))
    return found


def bearer(client, role) -> dict:
    username, password = PASSWORDS[role]
    response = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def fuzz(operation, mode: GenerationMode, headers: dict, problems: list) -> None:
    checks = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @settings(settings.get_profile(PROFILE))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        try:
            response = case.call(headers=headers)
        except Exception:
            problems.append(f"{operation.label} [{mode.value}]: the request could not be "
                            f"sent: {traceback.format_exc()[-12000:]}")
            raise
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as exc:
            problems.append(f"{operation.label} [{mode.value}] {response.status_code}: "
                            f"{exc.message[:2000]}")
            raise

    try:
        run()
    except FailureGroup:
        pass  # recorded above
    except Exception:  # a crash of the run itself (generation, transport)
        if not problems or operation.label not in problems[-1]:
            problems.append(f"{operation.label} [{mode.value}]: "
                            f"{traceback.format_exc()[-12000:]}")


@pytest.fixture
def api_schema(app):
    app.config["WTF_CSRF_ENABLED"] = False
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def test_the_document_lists_every_api_route(app, api_schema):
    documented = {(op.method.upper(), op.path) for op in
                  (result.ok() for result in api_schema.get_all_operations())}
    routes = {key for key in declared(app) if key[1].startswith("/api/v1/")}
    assert routes == documented
    assert len(documented) > 40


@pytest.mark.parametrize("role", Role.ALL)
def test_no_generated_input_causes_a_server_error(app, client, api_schema, role):
    """Every operation the role may call, plus the public ones, with generated input."""
    roles = declared(app)
    headers = bearer(client, role)
    problems: list[str] = []
    fuzzed = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        allowed = roles[(operation.method.upper(), operation.path)]
        if allowed is None:  # public: fuzzed once, under the first role
            if role != Role.ALL[0]:
                continue
        elif role not in allowed:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, problems)
        fuzzed += 1
    assert fuzzed > 0
    assert not problems, "\n\n".join(problems)
