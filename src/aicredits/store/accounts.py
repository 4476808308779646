"""Accounts, wallets and ledger entries (repositories: they never commit; the caller's
transaction is the boundary)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.domain.ledger import KIND_RULES, adds_to_total_added
from aicredits.store.db import AnyRow, now_ms, row_dict
from aicredits.store.tables import accounts, ledger_entries, wallets


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    name: str
    role: str


@dataclass(frozen=True)
class Wallet:
    account_id: int
    balance: int
    held: int
    total_added: int
    total_spent: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def _account(row: AnyRow) -> Account:
    return Account(row.id, row.email, row.name, row.role)


async def count(conn: AsyncConnection) -> int:
    return (await conn.execute(select(func.count()).select_from(accounts))).scalar_one()


async def by_email(conn: AsyncConnection, email: str) -> Account | None:
    row = (await conn.execute(select(accounts).where(accounts.c.email == email))).first()
    return _account(row) if row else None


async def by_id(conn: AsyncConnection, account_id: int) -> Account | None:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return _account(row) if row else None


async def create(conn: AsyncConnection, email: str, *, name: str = "", role: str = "user",
                 password_hash: str | None = None) -> Account:
    ts = now_ms()
    result = await conn.execute(insert(accounts).values(
        email=email, name=name, role=role, password_hash=password_hash, created_at=ts
    ).returning(accounts.c.id))
    account_id = result.scalar_one()
    await conn.execute(insert(wallets).values(account_id=account_id, balance=0, held=0, total_added=0,
                                              total_spent=0, updated_at=ts))
    return Account(account_id, email, name, role)


async def set_password(conn: AsyncConnection, account_id: int, password_hash: str) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(password_hash=password_hash))


async def list_all(conn: AsyncConnection) -> list[Account]:
    rows = (await conn.execute(select(accounts).order_by(accounts.c.id))).all()
    return [_account(r) for r in rows]


async def wallet(conn: AsyncConnection, account_id: int) -> Wallet | None:
    row = (await conn.execute(select(wallets).where(wallets.c.account_id == account_id))).first()
    if row is None:
        return None
    return Wallet(row.account_id, row.balance, row.held, row.total_added, row.total_spent)


async def credit(conn: AsyncConnection, account_id: int, amount: int, *, kind: str, note: str = "",
                 call_id: str | None = None) -> int:
    """Add money (a kind domain/ledger.py lets be positive: grant, topup, adjustment);
    returns the balance after.
    The UPDATE ... RETURNING takes the row lock, so balance_after is exact under concurrency."""
    rule = KIND_RULES.get(kind)
    if rule is None or rule.sign == -1:
        raise ValueError(f"{kind!r} is not a kind of ledger entry that adds money")
    if amount <= 0:
        raise ValueError("a credit must be positive")
    ts = now_ms()
    added = amount if adds_to_total_added(kind) else 0
    result = await conn.execute(
        update(wallets).where(wallets.c.account_id == account_id)
        .values(balance=wallets.c.balance + amount, total_added=wallets.c.total_added + added, updated_at=ts)
        .returning(wallets.c.balance))
    balance_after = result.scalar_one()
    await conn.execute(insert(ledger_entries).values(
        account_id=account_id, kind=kind, amount=amount, balance_after=balance_after, call_id=call_id,
        key_id=None, note=note, created_at=ts))
    return balance_after


async def entries(conn: AsyncConnection, account_id: int, limit: int = 50) -> list[dict]:
    rows = (await conn.execute(select(ledger_entries).where(ledger_entries.c.account_id == account_id)
                               .order_by(ledger_entries.c.id.desc()).limit(limit))).all()
    return [row_dict(r) for r in rows]
