"""The audit log: rows are appended, never changed (the database refuses UPDATE and DELETE on
it; migration 0003_dashboard). Repositories never commit: the caller's transaction is the
boundary, so an action and its audit row land together or not at all."""

from __future__ import annotations

import json

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.store.db import now_ms, row_dict
from aicredits.store.tables import audit_log


async def append(conn: AsyncConnection, *, action: str, actor_id: int | None, actor: str, target: str = "",
                 ip: str | None = None, detail: dict | None = None, at: int | None = None) -> int:
    result = await conn.execute(insert(audit_log).values(
        created_at=at if at is not None else now_ms(), actor_id=actor_id, actor=actor[:320], action=action,
        target=target[:320], ip=ip, detail=json.dumps(detail or {}, separators=(",", ":"), sort_keys=True),
    ).returning(audit_log.c.id))
    return result.scalar_one()


async def recent(conn: AsyncConnection, *, limit: int = 100, before_id: int | None = None,
                 actor_id: int | None = None, action: str | None = None) -> list[dict]:
    """Newest first; `before_id` pages back."""
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(audit_log.c.id < before_id)
    if actor_id is not None:
        q = q.where(audit_log.c.actor_id == actor_id)
    if action is not None:
        q = q.where(audit_log.c.action == action)
    rows = [row_dict(r) for r in (await conn.execute(q)).all()]
    for r in rows:
        r["detail"] = json.loads(r["detail"] or "{}")
    return rows


async def count_since(conn: AsyncConnection, action: str, since: int, *, target: str | None = None,
                      ip: str | None = None) -> int:
    """How many `action` rows since `since` (epoch ms) for this target or from this IP."""
    conds = []
    if target is not None:
        conds.append(audit_log.c.target == target)
    if ip is not None:
        conds.append(audit_log.c.ip == ip)
    q = select(func.count()).select_from(audit_log).where(audit_log.c.action == action,
                                                          audit_log.c.created_at >= since)
    if conds:
        q = q.where(or_(*conds))
    return (await conn.execute(q)).scalar_one()


async def oldest_since(conn: AsyncConnection, action: str, since: int, *, target: str | None = None,
                       ip: str | None = None) -> int | None:
    q = select(func.min(audit_log.c.created_at)).where(audit_log.c.action == action,
                                                        audit_log.c.created_at >= since)
    if target is not None:
        q = q.where(audit_log.c.target == target)
    if ip is not None:
        q = q.where(audit_log.c.ip == ip)
    return (await conn.execute(q)).scalar_one()
