"""What the admin pages and the admin API read and change across accounts: accounts with
their wallets (search, keyset pages), debits, admin API keys. Repositories never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.store.db import now_ms, row_dict
from aicredits.store.tables import accounts, admin_keys, audit_log, ledger_entries, wallets

A = accounts.c
W = wallets.c
K = admin_keys.c
ACCOUNT_COLUMNS = (A.id, A.email, A.name, A.role, A.created_at, A.disabled_at, A.timezone,
                   (A.password_hash.is_not(None)).label("has_password"),
                   W.balance, W.held, W.total_added, W.total_spent)


AUDIT_COLUMNS = ("id", "created_at", "actor_id", "actor", "action", "target", "ip", "detail")


class DebitRefused(Exception):
    """The debit is more than the wallet's available balance (balance minus holds)."""
    def __init__(self, available: int) -> None:
        super().__init__(available)
        self.available = available


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search_accounts(conn: AsyncConnection, *, q: str = "", after_id: int | None = None,
                          limit: int = 50) -> list[dict]:
    """Accounts by id, with their wallets; `q` matches part of the email or name
    (case-insensitive); `after_id` pages on."""
    cond = []
    if q:
        pattern = _like(q.lower())
        cond.append(or_(func.lower(A.email).like(pattern, escape="\\"), func.lower(A.name).like(pattern, escape="\\")))
    if after_id is not None:
        cond.append(A.id > after_id)
    query = (select(*ACCOUNT_COLUMNS).select_from(accounts.outerjoin(wallets, W.account_id == A.id))
             .where(and_(*cond) if cond else true()).order_by(A.id).limit(limit))
    return [row_dict(r) for r in (await conn.execute(query)).all()]


async def account(conn: AsyncConnection, account_id: int) -> dict | None:
    r = (await conn.execute(select(*ACCOUNT_COLUMNS).select_from(accounts.outerjoin(wallets, W.account_id == A.id))
                            .where(A.id == account_id))).first()
    return row_dict(r) if r else None


async def debit(conn: AsyncConnection, account_id: int, amount: int, *, note: str) -> int:
    """Take `amount` (> 0) from the wallet as a `debit` entry; never below what calls in flight
    hold (DebitRefused). Returns the balance after."""
    if amount <= 0:
        raise ValueError("a debit must be positive")
    ts = now_ms()
    r = (await conn.execute(update(wallets).where(W.account_id == account_id, W.balance - W.held >= amount)
                            .values(balance=W.balance - amount, updated_at=ts).returning(W.balance))).first()
    if r is None:
        w = (await conn.execute(select(W.balance, W.held).where(W.account_id == account_id))).first()
        raise DebitRefused(0 if w is None else w.balance - w.held)
    await conn.execute(insert(ledger_entries).values(
        account_id=account_id, kind="debit", amount=-amount, balance_after=r.balance, call_id=None, key_id=None,
        note=note, created_at=ts))
    return r.balance


# ---------------------------------------------------------------- admin API keys
@dataclass(frozen=True)
class AdminKeyAuth:
    key_id: str
    account_id: int
    email: str
    display: str


async def create_admin_key(conn: AsyncConnection, *, key_id: str, account_id: int, name: str, key_hash: str,
                           display: str) -> dict:
    ts = now_ms()
    await conn.execute(insert(admin_keys).values(id=key_id, account_id=account_id, name=name, key_hash=key_hash,
                                                 display=display, created_at=ts))
    return {"id": key_id, "account_id": account_id, "name": name, "display": display, "created_at": ts,
            "revoked_at": None, "last_used_at": None}


async def admin_keys_list(conn: AsyncConnection) -> list[dict]:
    q = (select(admin_keys.c.id, K.account_id, K.name, K.display, K.created_at, K.revoked_at, K.last_used_at,
                A.email).select_from(admin_keys.join(accounts, A.id == K.account_id))
         .order_by(K.revoked_at.is_not(None), K.created_at.desc()))
    return [row_dict(r) for r in (await conn.execute(q)).all()]


async def revoke_admin_key(conn: AsyncConnection, key_id: str) -> bool | None:
    """True: revoked now; False: it was already; None: no such key."""
    found = (await conn.execute(select(K.revoked_at).where(K.id == key_id))).first()
    if found is None:
        return None
    result = await conn.execute(update(admin_keys).where(K.id == key_id, K.revoked_at.is_(None))
                                .values(revoked_at=now_ms()))
    return result.rowcount == 1


async def find_admin_key(conn: AsyncConnection, key_hash: str) -> AdminKeyAuth | None:
    """The live admin key with this hash, while its account is an enabled admin."""
    r = (await conn.execute(select(K.id, K.account_id, A.email, K.display).select_from(
        admin_keys.join(accounts, A.id == K.account_id)).where(
        K.key_hash == key_hash, K.revoked_at.is_(None), A.role == "admin", A.disabled_at.is_(None)))).first()
    return AdminKeyAuth(r.id, r.account_id, r.email, r.display) if r else None


async def admin_key_used(conn: AsyncConnection, key_id: str, at: int) -> None:
    await conn.execute(update(admin_keys).where(K.id == key_id).values(last_used_at=at))


# ---------------------------------------------------------------- the audit log, for its export
async def audit_batches(conn: AsyncConnection, *, action: str | None = None,
                        actor_id: int | None = None) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Every audit row (filtered), oldest first, as lists of tuples in AUDIT_COLUMNS order read
    from a server-side cursor."""
    q = (select(*(audit_log.c[c] for c in AUDIT_COLUMNS)).order_by(audit_log.c.id.asc())
         .execution_options(yield_per=2000))
    if action is not None:
        q = q.where(audit_log.c.action == action)
    if actor_id is not None:
        q = q.where(audit_log.c.actor_id == actor_id)
    result = await conn.stream(q)
    async for batch in result.partitions(2000):
        yield [tuple(r) for r in batch]
