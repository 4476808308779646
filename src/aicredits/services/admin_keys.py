"""Authenticating admin API keys (`sk-admin-` + 64 hex) for /admin/api. A key is good while it
is not revoked and its account is an enabled admin; lookups are cached for at most `ttl`
seconds, so a revoked key, a disabled admin or a lost admin role is refused within that time.
An inference key is refused here, as an admin key is on /v1."""

from __future__ import annotations

import time

from aicredits.domain.keys import admin_well_formed, hash_key, well_formed
from aicredits.errors import AuthenticationFailed
from aicredits.store import operator as repo
from aicredits.store.db import Engine
from aicredits.store.operator import AdminKeyAuth

TOUCH_EVERY_MS = 60_000
CACHE_MAX = 10_000


class AdminKeyAuthenticator:
    def __init__(self, engine: Engine, ttl: float = 1.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._cache: dict[str, tuple[AdminKeyAuth | None, float]] = {}
        self._touched: dict[str, int] = {}

    async def authenticate(self, authorization: str | None) -> AdminKeyAuth:
        if not authorization:
            raise AuthenticationFailed("Missing admin API key: send 'Authorization: Bearer sk-admin-...'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer sk-admin-...'.")
        if well_formed(token):
            raise AuthenticationFailed("Inference API keys are not accepted on the admin API: use an admin key "
                                       "(sk-admin-...), created with `aicredits admin-keys create` or on the "
                                       "dashboard's admin keys page.")
        if not admin_well_formed(token):
            raise AuthenticationFailed("Malformed admin API key: admin keys are 'sk-admin-' followed by 64 "
                                       "lowercase hex digits.")
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            found = hit[0]
        else:
            async with self._engine.connect() as conn:
                found = await repo.find_admin_key(conn, digest)
            if len(self._cache) > CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (found, now + self._ttl)
        if found is None:
            raise AuthenticationFailed("Invalid admin API key: it is unknown or revoked, or its account is no "
                                       "longer an enabled admin.")
        await self._touch(found.key_id)
        return found

    async def _touch(self, key_id: str) -> None:
        now = int(time.time() * 1000)
        if now - self._touched.get(key_id, 0) < TOUCH_EVERY_MS:
            return
        self._touched[key_id] = now
        async with self._engine.begin() as conn:
            await repo.admin_key_used(conn, key_id, now)

    def forget(self) -> None:
        self._cache.clear()
