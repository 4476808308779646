"""API key rows (hash only; the secret is never stored)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.store.db import AnyRow, now_ms
from aicredits.store.tables import api_keys


@dataclass(frozen=True)
class KeyRow:
    id: str
    account_id: int
    name: str
    display: str
    limit_micros: int | None
    spent: int
    held: int
    created_at: int
    revoked_at: int | None
    rpm: int | None = None
    tpm: int | None = None
    expires_at: int | None = None      # epoch ms; None: never
    models: str | None = None          # comma-separated glob patterns; None: every model


def _row(r: AnyRow) -> KeyRow:
    return KeyRow(r.id, r.account_id, r.name, r.display, r.limit_micros, r.spent, r.held, r.created_at,
                  r.revoked_at, r.rpm, r.tpm, r.expires_at, r.models)


async def create(conn: AsyncConnection, *, key_id: str, account_id: int, name: str, key_hash: str,
                 display: str, limit_micros: int | None, rpm: int | None = None,
                 tpm: int | None = None, expires_at: int | None = None, models: str | None = None) -> KeyRow:
    ts = now_ms()
    await conn.execute(insert(api_keys).values(id=key_id, account_id=account_id, name=name, key_hash=key_hash,
                                               display=display, limit_micros=limit_micros, spent=0, held=0,
                                               created_at=ts, revoked_at=None, rpm=rpm, tpm=tpm,
                                               expires_at=expires_at, models=models))
    return KeyRow(key_id, account_id, name, display, limit_micros, 0, 0, ts, None, rpm, tpm, expires_at, models)


async def set_rate_limits(conn: AsyncConnection, key_id: str, changes: dict) -> None:
    """Set `rpm` and/or `tpm` (None clears one: unlimited)."""
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**changes))


async def list_for(conn: AsyncConnection, account_id: int | None = None) -> list[KeyRow]:
    q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if account_id is not None:
        q = q.where(api_keys.c.account_id == account_id)
    return [_row(r) for r in (await conn.execute(q)).all()]


async def get(conn: AsyncConnection, key_id: str) -> KeyRow | None:
    r = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return _row(r) if r else None


async def revoke(conn: AsyncConnection, key_id: str) -> bool:
    result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=now_ms()))
    return result.rowcount == 1
