"""Route labels stay bounded: templates when known, ids folded, a cap per service."""

from __future__ import annotations

from llmagentos.gateway.route_labels import RouteLabels

OPENAPI = {
    "paths": {
        "/v1/sessions/{session}": {},
        "/v1/sessions/{session}/qtable": {},
        "/v1/perception/perceive": {},
        "/v1/items/{a}.{b}": {},
    }
}


def test_templates_win_most_literal_first() -> None:
    labels = RouteLabels()
    assert labels.learn("svc", OPENAPI) == 4
    assert labels.label("svc", "/v1/sessions/abc") == "/v1/sessions/{session}"
    assert labels.label("svc", "/v1/sessions/abc/qtable") == "/v1/sessions/{session}/qtable"
    assert labels.label("svc", "/v1/perception/perceive?x=1") == "/v1/perception/perceive"
    assert labels.label("svc", "/v1/items/x.y") == "/v1/items/{a}.{b}"  # dots are literal
    assert labels.label("svc", "/v1/itemsZx") == "/v1/itemsZx"  # no template: kept as is
    order = labels.templates("svc")
    assert order.index("/v1/sessions/{session}/qtable") < order.index("/v1/sessions/{session}")


def test_ids_are_folded_without_templates() -> None:
    labels = RouteLabels()
    assert labels.label("s", "/orders/12345") == "/orders/{id}"
    assert labels.label("s", "/u/0b8f9a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b/x") == "/u/{id}/x"
    assert labels.label("s", "/t/abcdefghij0123456789") == "/t/{id}"
    assert labels.label("s", "/v1/agent/step") == "/v1/agent/step"


def test_a_cap_per_service_then_other() -> None:
    labels = RouteLabels(max_routes=3)
    seen = {labels.label("s", f"/page-{name}") for name in "abcdefgh"}
    assert seen == {"/page-a", "/page-b", "/page-c", "other"}
    assert labels.label("s", "/page-a") == "/page-a"  # the first ones keep their label
    assert labels.label("t", "/page-z") == "/page-z"  # another service has its own cap


def test_learning_replaces_what_was_cached_and_bad_documents_teach_nothing() -> None:
    labels = RouteLabels()
    assert labels.label("svc", "/v1/sessions/abc") == "/v1/sessions/abc"
    assert labels.learn("svc", {"paths": ["not", "a", "mapping"]}) == 0
    assert labels.learn("svc", {"openapi": "3.1.0"}) == 0
    assert not labels.knows("svc")
    labels.learn("svc", OPENAPI)
    assert labels.label("svc", "/v1/sessions/abc") == "/v1/sessions/{session}"
    labels.forget("svc")
    assert not labels.knows("svc")
    assert labels.label("svc", "/v1/sessions/abc") == "/v1/sessions/abc"
