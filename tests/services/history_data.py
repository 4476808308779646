"""Test data for the billing history and usage: an account whose ledger entries and usage
records sit at chosen times (the gateway would write them at settle time, i.e. now), with a
consistent balance_after chain and wallet."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select, update

from aicredits.domain.ledger import adds_to_total_added
from aicredits.store import accounts as accounts_repo
from aicredits.store.db import make_engine, migrate
from aicredits.store.tables import ledger_entries, usage_records, wallets


async def migrated_engine(url: str):
    engine = make_engine(url)
    await migrate(engine, url)
    return engine


async def new_account(engine, email: str | None = None) -> int:
    async with engine.begin() as conn:
        acct = await accounts_repo.create(conn, email or f"h-{uuid.uuid4().hex[:8]}@example.in")
    return acct.id


def usage_row(account_id: int, at: int, *, cost: int, model: str = "openai/gpt-4o-mini", status: int = 200,
              cache: str = "miss", key_id: str | None = None, prompt: int = 10, completion: int = 5,
              latency: int = 300) -> dict:
    call = uuid.uuid4().hex
    return {"call_id": call, "request_id": call, "account_id": account_id, "key_id": key_id, "model": model,
            "provider": model.split("/")[0], "deployment": model, "endpoint": "chat", "stream": False,
            "prompt_tokens": prompt, "completion_tokens": completion, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "reasoning_tokens": 0, "units": 0, "cost": cost,
            "hold": cost, "latency_ms": latency, "overhead_ms": 1, "status": status, "cache": cache,
            "end_state": "completed" if status < 400 else "upstream_error", "error": None, "created_at": at}


async def add(engine, account_id: int, events: list[tuple]) -> None:
    """events: ("grant"|"topup"|"refund"|"debit"|"adjustment", at, amount) or
    ("call", at, cost, {usage fields}); appended in the given order, balance_after chained."""
    async with engine.begin() as conn:
        w = (await conn.execute(select(wallets.c.balance, wallets.c.total_added, wallets.c.total_spent)
                                .where(wallets.c.account_id == account_id))).one()
        balance, added, spent = w
        usage, entries = [], []
        for ev in events:
            kind, at = ev[0], ev[1]
            if kind == "call":
                cost, extra = ev[2], (ev[3] if len(ev) > 3 else {})
                u = usage_row(account_id, at, cost=cost, **extra)
                usage.append(u)
                if cost:
                    balance -= cost
                    spent += cost
                    entries.append({"account_id": account_id, "kind": "charge", "amount": -cost,
                                    "balance_after": balance, "call_id": u["call_id"], "key_id": u["key_id"],
                                    "note": "", "created_at": at})
                continue
            amount = ev[2]
            balance += amount
            if adds_to_total_added(kind):
                added += amount
            entries.append({"account_id": account_id, "kind": kind, "amount": amount, "balance_after": balance,
                            "call_id": None, "key_id": None, "note": f"{kind} note", "created_at": at})
        if usage:
            await conn.execute(insert(usage_records), usage)
        if entries:
            await conn.execute(insert(ledger_entries), entries)
        await conn.execute(update(wallets).where(wallets.c.account_id == account_id)
                           .values(balance=balance, total_added=added, total_spent=spent))
