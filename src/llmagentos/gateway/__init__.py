"""The API gateway: routing to module services, and its building blocks.

The blocks (one idea per module): ``admission`` (what requests are let through),
``breaker`` (circuit breaker), ``retry_budget`` (retry budget, idempotency),
``balancer`` (replicas, load balancing, outlier ejection, active health checks),
``auth`` (hashed API keys, scopes, admin keys), ``guard`` (credential checks behind
rate limits and a failure memory), ``ratelimit`` (token buckets, in process or in
Redis), ``networks`` (where replicas may be), ``clock`` (an injectable clock).
"""

from llmagentos.gateway.admission import AdmissionLimits
from llmagentos.gateway.app import Gateway, gateway_app
from llmagentos.gateway.auth import ApiKeyInfo, ApiKeyStore, Principal
from llmagentos.gateway.balancer import (
    HealthChecker,
    LeastOutstanding,
    OutlierDetector,
    Replica,
    RoundRobin,
)
from llmagentos.gateway.breaker import BreakerState, CircuitBreaker, Permit
from llmagentos.gateway.clock import Clock, ManualClock, monotonic
from llmagentos.gateway.guard import CredentialGuard
from llmagentos.gateway.networks import ReplicaNetworks
from llmagentos.gateway.ratelimit import RateDecision, RateLimiter, RedisTokenBucket, TokenBucket
from llmagentos.gateway.registry import ServiceEntry, ServiceRegistry
from llmagentos.gateway.retry_budget import RetryBudget, is_idempotent

__all__ = [
    "AdmissionLimits",
    "ApiKeyInfo",
    "ApiKeyStore",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "CredentialGuard",
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
    "ReplicaNetworks",
    "RetryBudget",
    "RoundRobin",
    "ServiceEntry",
    "ServiceRegistry",
    "TokenBucket",
    "gateway_app",
    "is_idempotent",
    "monotonic",
]
