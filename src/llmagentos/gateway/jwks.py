"""An identity provider's signing keys (its JWKS), fetched at a bounded rate.

A token names its key by ``kid``. A verifier that refetches the key set whenever it
meets an unknown ``kid`` lets anyone make it fetch once per request: a flood of made-up
kids becomes a flood against the provider and a stall for every caller. Here the set is
fetched at most once per ``min_refresh_seconds`` (whatever the kids asked for), kept
``max_age_seconds`` before it is refreshed on use, and kept past that if the provider is
down (a key it published stays usable until it answers again). PyJWT fetches and parses
the set; when to fetch is decided here, the same way on every PyJWT version.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from llmagentos.exceptions import AuthError, ConfigError, GatewayError
from llmagentos.gateway.clock import Clock, monotonic

__all__ = ["JwksKeys"]


class JwksKeys:
    """The signing keys published at ``url``, by ``kid``.

    Args:
        url: the provider's JWKS URL.
        min_refresh_seconds: the shortest time between two fetches, whatever happens.
        max_age_seconds: refresh a key set this old on its next use.
        timeout: seconds one fetch may take.
        clock: monotonic seconds (tests pass a manual clock).
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_seconds: float = 30.0,
        max_age_seconds: float = 300.0,
        timeout: float = 5.0,
        clock: Clock = monotonic,
    ) -> None:
        import jwt

        for name, value in (
            ("jwks_refresh_seconds", min_refresh_seconds),
            ("jwks_max_age_seconds", max_age_seconds),
            ("jwks_timeout", timeout),
        ):
            if not value > 0 or math.isinf(value):
                raise ConfigError(f"gateway.jwt.{name}", f"must be a number > 0 (got {value!r})")
        self._jwt = jwt
        # PyJWT only fetches and parses here: no cache of its own, no refetch on a miss.
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=timeout)
        self.url = url
        self.min_refresh = min_refresh_seconds
        self.max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, Any] = {}
        self._fetched = -math.inf  # the last successful fetch
        self._attempted = -math.inf  # the last fetch, successful or not
        self.fetches = 0

    def _refresh(self) -> str | None:
        """Fetch the set; the reason it failed, or ``None``."""
        jwt = self._jwt
        self.fetches += 1
        try:
            data = self._client.fetch_data()
            key_set = jwt.PyJWKSet.from_dict(data)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, TypeError) as err:
            return str(err)
        keys = {key.key_id: key for key in key_set.keys if getattr(key, "public_key_use", None)
                in (None, "sig")}  # fmt: skip
        if not keys:
            return "the key set has no signing keys"
        self._keys = keys
        self._fetched = self._clock()
        return None

    def key_for(self, kid: str | None) -> Any:
        """The key to verify a token whose header names ``kid``.

        Raises:
            AuthError: 401 when no published key has that ``kid`` (and the set may not
                be fetched again yet, or was and has none).
            GatewayError: 503 when the set could never be fetched.
        """
        with self._lock:  # one fetch at a time; the others then find it fresh
            now = self._clock()
            missing = kid not in self._keys and not (kid is None and len(self._keys) == 1)
            stale = now - self._fetched >= self.max_age
            problem = None
            if (missing or stale) and now - self._attempted >= self.min_refresh:
                self._attempted = now
                problem = self._refresh()
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values())).key
            key = self._keys.get(kid)
            age = now - self._fetched
        if key is not None:
            return key.key
        if not self._keys:
            raise GatewayError(
                503, f"the identity provider's keys could not be fetched: {problem or 'not yet'}"
            )
        wait = max(0.0, self._attempted + self.min_refresh - now)
        raise AuthError(
            "malformed",
            f"the token's key {kid!r} is not in the provider's key set (fetched {age:.0f} s "
            f"ago; fetched again at the earliest in {wait:.0f} s)",
        )
