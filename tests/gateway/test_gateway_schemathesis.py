"""schemathesis over the gateway's own OpenAPI: no 5xx, responses match the schema.

The gateway runs in-process (ASGI) in front of an in-process upstream, so generated
requests to the proxy route reach a real service behind it.
"""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("starlette", reason="needs llmagentos[serve]")
schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (dev extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from llmagentos.gateway import ServiceRegistry, gateway_app  # noqa: E402
from llmagentos.gateway.testing import app as upstream  # noqa: E402

REGISTRY = ServiceRegistry([{"name": "up", "replicas": ["http://upstream.test"]}])
APP = gateway_app(REGISTRY, transport=httpx.ASGITransport(app=upstream), max_body_bytes=5000)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_gateway_never_answers_5xx_to_generated_requests(case: schemathesis.Case) -> None:
    # The proxy route's paths and bodies are whatever the upstream accepts, so "valid
    # by the schema" does not imply "accepted".
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    if case.path == "/{service}/{path}":
        # Upstream 5xx are passed through (documented); the gateway's own are not
        # allowed for a client's request to a live service.
        assert (
            response.status_code not in (502, 503, 504) or case.path_parameters["service"] != "up"
        )
