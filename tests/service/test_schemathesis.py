"""Property-based API tests of a module service from its own OpenAPI schema.

schemathesis generates requests for every route (valid and invalid bodies) and checks
that the service never answers 5xx and that every response matches its schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (dev extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from llmagentos.build import build_agent  # noqa: E402
from llmagentos.config import load_config  # noqa: E402
from llmagentos.service import service_app  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"
APP = service_app(lambda: build_agent(load_config(CONFIG)), max_sessions=64)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    # Observations, features and actions are "any JSON" in the schema; what a module
    # accepts is narrower (an action in the space) and refused with a documented 400,
    # so schemathesis's "valid data must be accepted" check does not apply here.
    # call_and_validate raises on any failed check (a 5xx, a reply off its schema, a
    # schema-breaking request accepted); the explicit assert names the main rule.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500
