"""schemathesis against live processes: a Taxi module service, and a gateway process
in front of it. Generated requests (valid and invalid) never get a 5xx, and every
response matches its OpenAPI schema."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs llmagentos[serve]")
schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (dev extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from llmagentos._processes import start_server  # noqa: E402

TAXI = Path(__file__).resolve().parents[2] / "examples" / "configs" / "taxi.toml"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    service, service_url = start_server(["llmagentos", "serve", str(TAXI)])
    config = tmp_path_factory.mktemp("live") / "gateway.toml"
    config.write_text(
        f'[gateway]\nmax_body_bytes = 5000\n\n[[services]]\nname = "taxi"\n'
        f'replicas = ["{service_url}"]\n'
    )
    gateway, gateway_url = start_server(["llmagentos", "gateway", str(config)])
    yield {"service": service_url, "gateway": gateway_url}
    for process in (gateway, service):
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def service_schema(live: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(f"{live['service']}/openapi.json")


@pytest.fixture(scope="module")
def gateway_schema(live: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(f"{live['gateway']}/openapi.json")


service = schemathesis.pytest.from_fixture("service_schema")
gateway = schemathesis.pytest.from_fixture("gateway_schema")

# Module values are "any JSON" in the schema but narrower in fact (an action in the
# space), refused with a documented 4xx: "valid data must be accepted" does not apply.
EXCLUDED = [positive_data_acceptance]


@service.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_never_answers_5xx(case: schemathesis.Case) -> None:
    response = case.call_and_validate(excluded_checks=EXCLUDED)
    assert response.status_code < 500


@gateway.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_gateway_never_answers_5xx(case: schemathesis.Case) -> None:
    response = case.call_and_validate(excluded_checks=EXCLUDED)
    assert response.status_code < 500
