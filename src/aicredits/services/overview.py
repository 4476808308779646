"""The dashboard's overview of one account: its wallet and keys."""

from __future__ import annotations

from aicredits.store import accounts as accounts_repo
from aicredits.store import auth as auth_repo
from aicredits.store import cache_sql as cache_repo
from aicredits.store.db import Engine


class Overview:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def of(self, account_id: int) -> dict:
        """{"balance", "held", "available", "total_added", "total_spent"} in micro-INR and
        {"keys_active", "keys_revoked", "last_used_at"}, and "cache": what cache hits saved
        ({"hits", "tokens_saved", "saved"}, docs/caching.md)."""
        async with self._engine.connect() as conn:
            w = await accounts_repo.wallet(conn, account_id)
            keys = await auth_repo.keys_of(conn, account_id)
            cache = await cache_repo.savings_of(conn, account_id)
        used = [k.last_used_at for k in keys if k.last_used_at is not None]
        return {"balance": w.balance if w else 0, "held": w.held if w else 0, "available": w.available if w else 0,
                "total_added": w.total_added if w else 0, "total_spent": w.total_spent if w else 0,
                "keys_active": sum(1 for k in keys if k.revoked_at is None),
                "keys_revoked": sum(1 for k in keys if k.revoked_at is not None),
                "last_used_at": max(used) if used else None, "cache": cache}
