"""The gateway's config file: its limits and the services it starts with.

Example (TOML)::

    [gateway]
    max_body_bytes = 1000000
    retries = 1

    [[services]]
    name = "taxi"
    replicas = ["http://127.0.0.1:8101", "http://127.0.0.1:8102"]
    timeout = 10
    idempotent_routes = ["/v1/perception/perceive"]
    balancing = "session"           # each session on one replica (default: the gateway's)
    max_in_flight = 64              # this service's own limit, beside the gateway's

    [gateway]                       # optional admission control
    keys = "keys.db"                # API keys (llmagentos keys create ...), admin keys too
    rate_per_second = 50            # per key (per client address without keys)
    burst = 100
    redis_url = "redis://127.0.0.1:6379"   # share limits, breakers, registry (workers)
    rate_limit_failure = "open"     # Redis down: "open" lets requests through, "closed" 503s
    principal_secret_env = "LLMAGENTOS_PRINCIPAL_SECRET"  # signs principals for services
    replica_networks = ["127.0.0.0/8", "::1/128"]         # where replicas may be (default)
    max_in_flight = 512             # requests at once; past them and the queue: 503 at once
    max_queue = 512                 # may wait for a slot, each for at most queue_timeout s
    queue_timeout = 0.05
    reads_per_turn = 16             # new requests read per loop turn; others wait unread
    body_timeout = 15               # s a body may take to arrive (before a slot): then 408
    upstream_idle_timeout = 4       # s an idle replica connection is kept: under theirs (5)

    [gateway.jwt]                   # optional: bearer JWTs from an identity provider
    secret_env = "LLMAGENTOS_JWT_SECRET"   # HS256; or public_key = "idp.pem", or jwks_url
    audience = "llmagentos"         # tenant from the "tenant" claim, scopes from "scope"

    [[models]]                      # on /v1/models and /v1/chat/completions
    name = "smollm2"
    model = "local:smollm2"         # any llmagentos model id

    [[agents]]                      # answers with its decision for the last user message
    name = "maze"
    config = "examples/configs/text_maze_llm.toml"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmagentos.exceptions import ConfigError, LLMAgentOSError
from llmagentos.gateway.admission import AdmissionLimits
from llmagentos.gateway.auth import ApiKeyStore
from llmagentos.gateway.balancer import BALANCING
from llmagentos.gateway.jwt_auth import JwtVerifier, read_public_key
from llmagentos.gateway.networks import DEFAULT_REPLICA_NETWORKS, ReplicaNetworks
from llmagentos.gateway.openai_face import Exposed
from llmagentos.gateway.ratelimit import RedisTokenBucket, TokenBucket
from llmagentos.gateway.registry import ServiceRegistry
from llmagentos.gateway.runtime import ResilienceSettings, ServiceRuntime
from llmagentos.gateway.upstream import check_idle_timeout
from llmagentos.load_shedding import SheddingLimits
from llmagentos.principal import SECRET_ENV, principal_secret

if TYPE_CHECKING:
    from llmagentos.agent import Agent
    from llmagentos.config import RunConfig

__all__ = ["GatewayConfig", "load_gateway_config"]

_INT_FIELDS = {"max_body_bytes", "retries"}
_RESILIENCE_FIELDS = set(ResilienceSettings.__dataclass_fields__)
_ADMISSION_FIELDS = set(AdmissionLimits.__dataclass_fields__)
_SHEDDING_FIELDS = set(SheddingLimits.__dataclass_fields__)
# [gateway] auth_* settings -> CredentialGuard's arguments
_AUTH_LIMITS = {
    "auth_address_rate": "address_rate", "auth_address_burst": "address_burst",
    "auth_key_rate": "key_rate", "auth_key_burst": "key_burst",
    "auth_failure_seconds": "failure_seconds",
}  # fmt: skip
_GATEWAY_FIELDS = (
    _INT_FIELDS
    | _RESILIENCE_FIELDS
    | _ADMISSION_FIELDS
    | _SHEDDING_FIELDS
    | set(_AUTH_LIMITS)
    | {"keys", "jwt", "rate_per_second", "burst", "redis_url", "upstream_ca_file"}
    | {"upstream_idle_timeout"}
    | {"rate_limit_failure", "principal_secret_env", "forward_unsigned", "api_key_header"}
    | {"replica_networks"}
)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    registry: ServiceRegistry
    options: dict[str, Any]  # Gateway's arguments
    exposed: list[Exposed]
    redis_url: str | None = None  # with one: rate limits, breakers, registry shared


def _agent_factory(run_config: RunConfig) -> Callable[[], Agent]:
    from llmagentos.build import build_agent

    def make() -> Agent:
        return build_agent(run_config).agent

    return make


def _exposed(data: dict[str, Any], base: Path) -> list[Exposed]:
    from llmagentos.build import build_agent
    from llmagentos.config import load_config
    from llmagentos.llm.models import make_model

    exposed: list[Exposed] = []
    for index, spec in enumerate(data.get("models", [])):
        where = f"models[{index}]"
        if set(spec) != {"name", "model"}:
            raise ConfigError(where, 'each [[models]] has exactly "name" and "model"')
        exposed.append(Exposed(str(spec["name"]), model=make_model(str(spec["model"]))))
    for index, spec in enumerate(data.get("agents", [])):
        where = f"agents[{index}]"
        if set(spec) != {"name", "config"}:
            raise ConfigError(where, 'each [[agents]] has exactly "name" and "config"')
        path = Path(str(spec["config"]))
        run_config = load_config(path if path.is_absolute() else base / path)
        build_agent(run_config).agent.close()  # a broken agent fails now, not per request
        exposed.append(Exposed(str(spec["name"]), agent_factory=_agent_factory(run_config)))
    for index, spec in enumerate(data.get("embedders", [])):
        where = f"embedders[{index}]"
        if not isinstance(spec, dict) or set(spec) != {"name", "embedder"}:
            raise ConfigError(where, 'each [[embedders]] has exactly "name" and "embedder"')
        from llmagentos.kernel.default import agent_embedder

        name = str(spec["name"])
        try:  # made now (the model loaded), so a bad id fails before the gateway listens
            handle = agent_embedder(str(spec["embedder"]), agent=f"gateway/{name}")
        except LLMAgentOSError as err:
            raise ConfigError(f"{where}.embedder", str(err)) from err
        exposed.append(Exposed(name, embedder=handle))
    return exposed


def _redis_url(options: dict[str, Any]) -> str | None:
    """``redis_url``: the rate limits' store, and the shared state's (shared_state.py)."""
    url = options.pop("redis_url", None)
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("redis://", "rediss://"))
    ):
        raise ConfigError("gateway.redis_url", f"expected redis://host:port (got {url!r})")
    return url


def _admission(
    options: dict[str, Any], base: Path, environ: Mapping[str, str], redis_url: str | None
) -> None:
    """Turn ``keys``, ``rate_per_second``/``burst`` (in ``redis_url``) into objects, and
    check the hop's ``upstream_*`` settings."""
    keys = options.pop("keys", None)
    if keys is not None:
        if not isinstance(keys, str) or not keys:
            raise ConfigError("gateway.keys", f"must be the path of a key file (got {keys!r})")
        path = Path(keys) if Path(keys).is_absolute() else base / keys
        if not path.is_file():
            raise ConfigError(
                "gateway.keys", f"{path}: no key file (make one with 'llmagentos keys create')"
            )
        options["keys"] = ApiKeyStore(path)
    ca_file = options.pop("upstream_ca_file", None)
    if ca_file is not None:
        path = Path(str(ca_file)) if Path(str(ca_file)).is_absolute() else base / str(ca_file)
        if not path.is_file():
            raise ConfigError("gateway.upstream_ca_file", f"{path}: no such file")
        options["upstream_ca_file"] = str(path)
    if "upstream_idle_timeout" in options:
        check_idle_timeout(options["upstream_idle_timeout"], "gateway.upstream_idle_timeout")
    jwt = options.pop("jwt", None)
    if jwt is not None:
        options["jwt"] = _jwt_verifier(jwt, base, environ)
    rate, burst = options.pop("rate_per_second", None), options.pop("burst", None)
    if rate is None:
        if burst is not None:
            raise ConfigError("gateway.rate_per_second", "set it to use burst")
        return
    for field, value in (
        ("rate_per_second", rate),
        ("burst", burst if burst is not None else rate),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"gateway.{field}", f"must be a number > 0 (got {value!r})")
    size = float(burst if burst is not None else rate)
    if redis_url is not None:
        options["limiter"] = RedisTokenBucket(redis_url, float(rate), size)
    else:
        options["limiter"] = TokenBucket(float(rate), size)


_JWT_FIELDS = {
    "secret_env", "public_key", "jwks_url", "algorithms", "audience", "issuer",
    "tenant_claim", "scope_claim", "leeway_seconds", "jwks_refresh_seconds",
}  # fmt: skip


def _jwt_verifier(spec: Any, base: Path, environ: Mapping[str, str]) -> JwtVerifier:
    """``[gateway.jwt]``: the secret comes from an environment variable, never the file."""
    if not isinstance(spec, dict):
        raise ConfigError("gateway.jwt", "must be a table ([gateway.jwt])")
    for key in sorted(set(spec) - _JWT_FIELDS):
        hint = " (put the secret in an environment variable: secret_env)" if key == "secret" else ""
        raise ConfigError(f"gateway.jwt.{key}", "unknown field" + hint)
    options = {k: v for k, v in spec.items() if k not in ("secret_env", "public_key")}
    if "secret_env" in spec:
        name = str(spec["secret_env"])
        secret = environ.get(name)
        if not secret:
            raise ConfigError("gateway.jwt.secret_env", f"the environment variable {name} is empty")
        options["secret"] = secret
    if "public_key" in spec:
        path = Path(str(spec["public_key"]))
        options["public_key"] = read_public_key(path if path.is_absolute() else base / path)
    try:
        return JwtVerifier(**options)
    except TypeError as err:
        raise ConfigError("gateway.jwt", str(err)) from err


def _trust(options: dict[str, Any], environ: Mapping[str, str]) -> None:
    """The principal secret, credential headers, admission limits, replica networks,
    what a failing rate-limit store means, and the credential guard's limits."""
    env = options.pop("principal_secret_env", SECRET_ENV)
    if not isinstance(env, str) or not env:
        raise ConfigError("gateway.principal_secret_env", f"must name a variable (got {env!r})")
    unsigned = options.pop("forward_unsigned", False)
    if not isinstance(unsigned, bool):
        raise ConfigError("gateway.forward_unsigned", f"must be true or false (got {unsigned!r})")
    try:
        raw = environ.get(env)
        secret = principal_secret(raw) if raw else None
    except ConfigError as err:
        raise ConfigError("gateway.principal_secret_env", f"{env}: {err.problem}") from err
    if ("keys" in options or "jwt" in options) and secret is None and not unsigned:
        raise ConfigError(
            "gateway.principal_secret_env",
            f"auth is on but {env} is empty: the services could not tell the callers' "
            f"tenants apart. Set it (the same for the gateway and every service), or "
            f"forward_unsigned = true to forward without any principal",
        )
    options["principal_secret"] = secret
    options["forward_unsigned"] = unsigned
    header = options.pop("api_key_header", "x-api-key")
    if not isinstance(header, str) or not header.replace("-", "").isalnum():
        raise ConfigError("gateway.api_key_header", f"must be a header name (got {header!r})")
    options["api_key_headers"] = (header.lower(),)
    failure = options.pop("rate_limit_failure", "open")
    if failure not in ("open", "closed"):
        raise ConfigError("gateway.rate_limit_failure", f"'open' or 'closed' (got {failure!r})")
    options["rate_limit_failure"] = failure
    limits = {key: options.pop(key) for key in _ADMISSION_FIELDS & set(options)}
    try:
        options["admission"] = AdmissionLimits(**limits)
    except ConfigError as err:
        raise ConfigError(f"gateway.{err.field}", err.problem) from err
    networks = options.pop("replica_networks", list(DEFAULT_REPLICA_NETWORKS))
    if not isinstance(networks, list):
        raise ConfigError("gateway.replica_networks", "must be a list of CIDR ranges")
    options["replica_networks"] = ReplicaNetworks(networks)
    guard: dict[str, float] = {}
    for key, argument in _AUTH_LIMITS.items():
        if key in options:
            value = options.pop(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"gateway.{key}", f"must be a number > 0 (got {value!r})")
            guard[argument] = float(value)
    if guard:
        options["auth_limits"] = guard


def _shedding(options: dict[str, Any]) -> None:
    given = {key: options.pop(key) for key in _SHEDDING_FIELDS & set(options)}
    if not given:
        return
    try:
        options["shedding"] = SheddingLimits(**given)
    except ConfigError as err:
        raise ConfigError(f"gateway.{err.field}", err.problem) from err


def _resilience(options: dict[str, Any]) -> None:
    given = {key: options.pop(key) for key in _RESILIENCE_FIELDS & set(options)}
    if not given:
        return
    balancing = given.get("balancing", "least_outstanding")
    if balancing not in BALANCING:
        raise ConfigError("gateway.balancing", f"one of {', '.join(BALANCING)} (got {balancing!r})")
    for key, value in given.items():
        if key != "balancing" and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ConfigError(f"gateway.{key}", f"must be a number >= 0 (got {value!r})")
    try:
        settings = ResilienceSettings(**given)
        ServiceRuntime(settings)  # builds the blocks once, which checks every range
    except TypeError as err:
        raise ConfigError("gateway", str(err)) from err
    except ConfigError as err:
        raise ConfigError(f"gateway.{err.field}", err.problem) from err
    options["resilience"] = settings


def load_gateway_config(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read and check a gateway config; every error names its field.

    Secrets are read from ``environ`` (default: the process's environment), never from
    the file.
    """
    environ = os.environ if environ is None else environ
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("", f"{source}: no such file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{source}: invalid TOML: {err}") from err
    unknown = sorted(set(data) - {"gateway", "services", "models", "agents", "embedders"})
    if unknown:
        raise ConfigError(unknown[0], "unknown section")
    options = dict(data.get("gateway", {}))
    for key in sorted(set(options) - _GATEWAY_FIELDS):
        raise ConfigError(f"gateway.{key}", "unknown field")
    for key in _INT_FIELDS & set(options):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"gateway.{key}", f"must be an integer (got {value!r})")
    redis_url = _redis_url(options)
    _admission(options, source.parent, environ, redis_url)
    _trust(options, environ)
    _resilience(options)
    _shedding(options)
    services = data.get("services", [])
    if not isinstance(services, list):
        raise ConfigError("services", "must be a list of [[services]] tables")
    registry = ServiceRegistry(services)
    # The operator's replicas fall under the same rule as those registered at run time.
    options["replica_networks"].check_urls([
        (f"services[{index}].replicas[{position}]", str(url))
        for index, spec in enumerate(services)
        for position, url in enumerate(spec.get("replicas", []))
    ])  # fmt: skip
    return GatewayConfig(registry, options, _exposed(data, Path.cwd()), redis_url)
