"""The gateway's OpenAPI document: its own routes, the OpenAI face and the proxy route."""

from __future__ import annotations

from typing import Any

__all__ = ["gateway_openapi"]

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "field": {"type": "string"}},
    "required": ["detail"],
}
_OPENAI_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type"],
        }
    },
    "required": ["error"],
}
_REPLICA_STATE = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "available": {"type": "boolean"},
        "healthy": {"type": "boolean"},
        "ejected_for_seconds": {"type": "number", "minimum": 0},
        "in_flight": {"type": "integer", "minimum": 0},
        "failures_in_a_row": {"type": "integer", "minimum": 0},
    },
    "required": ["url", "available", "healthy", "ejected_for_seconds", "in_flight"],
}
_SERVICE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "replicas": {"type": "array", "items": {"type": "string"}},
        "timeout": {"type": "number"},
        "idempotent_routes": {"type": "array", "items": {"type": "string"}},
        "route_timeouts": {"type": "object", "additionalProperties": {"type": "number"}},
        "balancing": {
            "type": ["string", "null"],
            "enum": ["least_outstanding", "round_robin", "session", None],
        },
        "route_templates": {"type": "array", "items": {"type": "string"}},
        "state": {
            "type": "object",
            "properties": {
                "breaker": {"type": "string", "enum": ["closed", "open", "half_open"]},
                "replicas": {"type": "array", "items": _REPLICA_STATE},
            },
            "required": ["breaker", "replicas"],
        },
    },
    "required": ["name", "replicas", "timeout", "idempotent_routes", "route_timeouts"],
}
_REPLICA_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"url": {"type": "string"}},
                "required": ["url"],
            }
        }
    },
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _refusals(*, auth: bool = True) -> dict[str, Any]:
    """What the gateway answers itself, for any route, before any replica sees a call."""
    refused = {
        "400": _json(
            "Refused by admission: dot segments, encoded slashes, backslashes, empty "
            "segments or controls in the path; a repeated header; a JSON-typed body that "
            "is not JSON; an over-long session id (``field`` names it)",
            _DETAIL,
        ),
        "414": _json("The request target is over the limit", _DETAIL),
    }
    if auth:
        refused |= {
            "401": _json("No valid credential (WWW-Authenticate: Bearer)", _DETAIL),
            "403": _json("The credential does not open this route", _DETAIL),
            "429": _json("Rate limited (Retry-After)", _DETAIL),
        }
    return refused


def _status(name: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    responses = {"200": _json(name, schema), **_refusals(auth=False)}
    return {"get": {"summary": name, "responses": responses}}


def _admin() -> dict[str, Any]:
    listing = {
        "type": "object",
        "properties": {"services": {"type": "array", "items": _SERVICE}},
        "required": ["services"],
    }
    removed = {
        "type": "object",
        "properties": {"removed": {"type": "string"}},
        "required": ["removed"],
    }
    admin_refusals = {
        **_refusals(),
        "403": _json(
            "Not an admin key (no service key opens the admin routes, *:* included); or, "
            "on a gateway without a key store, a client that is not on loopback",
            _DETAIL,
        ),
    }
    errors = {
        **admin_refusals,
        "400": _json("Not JSON", _DETAIL),
        "413": _json("Body over 16 KiB", _DETAIL),
        "415": _json("Not Content-Type: application/json", _DETAIL),
        "422": _json("Invalid body or URL", _DETAIL),
    }
    post_errors = {
        **errors,
        "403": _json(
            "Not an admin key, not on loopback, or a replica URL resolving outside "
            "[gateway] replica_networks",
            _DETAIL,
        ),
    }
    return {
        "/gateway/services": {
            "get": {
                "summary": "The service registry",
                "responses": {"200": _json("Services", listing), **admin_refusals},
            }
        },
        "/gateway/services/{name}/replicas": {
            "parameters": [_NAME],
            "post": {
                "summary": "Register a replica (creating the service if new)",
                "requestBody": _REPLICA_BODY,
                "responses": {"201": _json("The service", _SERVICE), **post_errors},
            },
            "delete": {
                "summary": "Remove a replica (a service left with none is removed)",
                "requestBody": _REPLICA_BODY,
                "responses": {
                    "200": _json("Removed", removed),
                    "404": _json("Not a replica", _DETAIL),
                    **errors,
                },
            },
        },
    }


def _face() -> dict[str, Any]:
    models = {
        "type": "object",
        "properties": {"object": {"type": "string"}, "data": {"type": "array"}},
        "required": ["object", "data"],
    }
    chat_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "stream": {"type": "boolean"},
                    },
                    "required": ["model", "messages"],
                }
            }
        },
    }
    completion = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "choices": {"type": "array"}},
        "required": ["id", "choices"],
    }
    return {
        "/v1/models": {"get": {"summary": "Exposed models and agents",
                               "responses": {"200": _json("Models", models), **_refusals()}}},
        "/v1/chat/completions": {
            "post": {
                "summary": "Chat completion from a model or an agent (stream: SSE)",
                "requestBody": chat_body,
                "responses": {
                    "200": {
                        "description": "The completion, or its event stream",
                        "content": {
                            "application/json": {"schema": completion},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_refusals(),
                    "400": _json("Invalid request", _OPENAI_ERROR),
                    "404": _json("Unknown model", _OPENAI_ERROR),
                    "503": _json("Backend down", _OPENAI_ERROR),
                },
            }
        },
    }  # fmt: skip


def _proxy() -> dict[str, Any]:
    gateway_errors = {
        **_refusals(),
        "404": {"description": "Unknown service (or the upstream's 404)"},
        "413": _json("Body over the limit", _DETAIL),
        "415": _json("A compressed JSON body (the gateway must read it)", _DETAIL),
        "502": _json("The upstream failed", _DETAIL),
        "503": _json(
            "No replica available, the circuit is open, or the rate-limit store failed "
            "with rate_limit_failure = 'closed' (Retry-After)",
            _DETAIL,
        ),
        "504": _json("The upstream timed out", _DETAIL),
        "default": {"description": "The upstream's answer, passed through"},
    }
    operation = {"summary": "Proxied to a replica of the service", "responses": gateway_errors}
    return {
        "/{service}/{path}": {
            "parameters": [
                {"name": "service", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "get": operation,
            "post": operation,
        }
    }


def gateway_openapi(*, face: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a gateway (with the OpenAI routes when it has a face)."""
    paths: dict[str, Any] = {
        "/healthz": _status("Alive"),
        "/readyz": _status("Ready"),
        **_admin(),
        **(_face() if face else {}),
        **_proxy(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmagentos gateway", "version": "1"},
        "paths": paths,
    }
