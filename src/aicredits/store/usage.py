"""Usage records: queries for the CLI and the dashboard (inserts happen in the billing store)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.store.db import row_dict
from aicredits.store.tables import usage_records


async def recent(conn: AsyncConnection, *, account_id: int | None = None, limit: int = 20) -> list[dict]:
    q = select(usage_records).order_by(usage_records.c.id.desc()).limit(limit)
    if account_id is not None:
        q = q.where(usage_records.c.account_id == account_id)
    return [row_dict(r) for r in (await conn.execute(q)).all()]
