"""Authenticating API keys, with an in-process cache that never trusts an entry for longer
than `ttl` seconds (so a revoked key is refused by every instance within that time; the hold
itself also re-checks revocation inside its transaction)."""

from __future__ import annotations

import time

from aicredits.domain.keys import ADMIN_PREFIX, expiry_text, hash_key, well_formed
from aicredits.errors import AuthenticationFailed
from aicredits.ports import BillingStore, KeyAuth, StoreUnavailable
from aicredits.services.billing import database_unavailable
from aicredits.telemetry import NO_TRACING, Tracing, current_request

NEGATIVE_CACHE_MAX = 10_000


class KeyAuthenticator:
    def __init__(self, store: BillingStore, ttl: float = 1.0, *, tracing: Tracing = NO_TRACING) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[str, tuple[KeyAuth | None, float]] = {}
        self.tracing = tracing

    async def authenticate(self, authorization: str | None) -> KeyAuth:
        with self.tracing.span("auth"):
            auth = await self._authenticate(authorization)
        state = current_request()
        if state is not None:   # the request's log line and span name the key by its id
            state.key_id, state.account_id, state.allow = auth.key_id, auth.account_id, auth.models
        if auth.expires_at is not None and auth.expires_at <= time.time() * 1000:
            raise AuthenticationFailed(f"This API key expired at {expiry_text(auth.expires_at)}; "
                                       "ask for a new key.")
        return auth

    async def _authenticate(self, authorization: str | None) -> KeyAuth:
        if not authorization:
            raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer sk-...'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer sk-...'.")
        if not well_formed(token):
            if token.startswith(ADMIN_PREFIX):
                raise AuthenticationFailed("Admin API keys are not accepted here: they work on /admin/api only. "
                                           "Call /v1 with an inference key (sk-...).")
            raise AuthenticationFailed("Malformed API key: keys are 'sk-' followed by 64 lowercase hex digits.")
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            auth = hit[0]
        else:
            try:
                auth = await self._store.find_key(digest)
            except StoreUnavailable:
                raise database_unavailable() from None
            if auth is None and len(self._cache) > NEGATIVE_CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (auth, now + self._ttl)
        if auth is None:
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.")
        return auth

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached keys (all, or one found revoked inside a hold's transaction)."""
        if key_id is None:
            self._cache.clear()
            return
        for digest, (auth, _) in list(self._cache.items()):
            if auth is not None and auth.key_id == key_id:
                del self._cache[digest]
