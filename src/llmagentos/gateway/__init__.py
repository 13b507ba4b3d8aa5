"""The API gateway: routing to module services, and its building blocks.

The blocks (one idea per module): ``breaker`` (circuit breaker), ``retry_budget``
(retry budget, idempotency), ``balancer`` (replicas, load balancing, outlier
ejection, active health checks), ``auth`` (hashed API keys, scopes, tenants),
``ratelimit`` (token buckets, in process or in Redis), ``clock`` (an injectable clock).
"""

from llmagentos.gateway.app import Gateway, gateway_app
from llmagentos.gateway.auth import (
    ApiKeyInfo,
    ApiKeyStore,
    Principal,
    scoped_session,
    unscoped_session,
)
from llmagentos.gateway.balancer import (
    HealthChecker,
    LeastOutstanding,
    OutlierDetector,
    Replica,
    RoundRobin,
)
from llmagentos.gateway.breaker import BreakerState, CircuitBreaker, Permit
from llmagentos.gateway.clock import Clock, ManualClock, monotonic
from llmagentos.gateway.ratelimit import RateDecision, RateLimiter, RedisTokenBucket, TokenBucket
from llmagentos.gateway.registry import ServiceEntry, ServiceRegistry
from llmagentos.gateway.retry_budget import RetryBudget, is_idempotent

__all__ = [
    "ApiKeyInfo",
    "ApiKeyStore",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "Gateway",
    "HealthChecker",
    "LeastOutstanding",
    "ManualClock",
    "OutlierDetector",
    "Permit",
    "Principal",
    "RateDecision",
    "RateLimiter",
    "RedisTokenBucket",
    "Replica",
    "RetryBudget",
    "RoundRobin",
    "ServiceEntry",
    "ServiceRegistry",
    "TokenBucket",
    "gateway_app",
    "is_idempotent",
    "monotonic",
    "scoped_session",
    "unscoped_session",
]
