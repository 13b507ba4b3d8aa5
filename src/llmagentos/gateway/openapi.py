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


def _status(name: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "required": ["status"],
    }
    return {"get": {"summary": name, "responses": {"200": _json(name, schema)}}}


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
    errors = {"400": _json("Not JSON", _DETAIL), "422": _json("Invalid body or URL", _DETAIL)}
    return {
        "/gateway/services": {
            "get": {
                "summary": "The service registry",
                "responses": {"200": _json("Services", listing)},
            }
        },
        "/gateway/services/{name}/replicas": {
            "parameters": [_NAME],
            "post": {
                "summary": "Register a replica (creating the service if new)",
                "requestBody": _REPLICA_BODY,
                "responses": {"201": _json("The service", _SERVICE), **errors},
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
                               "responses": {"200": _json("Models", models)}}},
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
                    "400": _json("Invalid request", _OPENAI_ERROR),
                    "404": _json("Unknown model", _OPENAI_ERROR),
                    "503": _json("Backend down", _OPENAI_ERROR),
                },
            }
        },
    }  # fmt: skip


def _proxy() -> dict[str, Any]:
    gateway_errors = {
        "404": {"description": "Unknown service (or the upstream's 404)"},
        "413": _json("Body over the limit", _DETAIL),
        "502": _json("The upstream failed", _DETAIL),
        "503": _json("No replica available", _DETAIL),
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
