"""Top-ups, payments and refunds (repositories: they never commit; the caller's transaction is
the boundary).

Exactly-once is the database's job here: a payment credits a wallet only in the transaction
that inserted its row (primary key = the provider's payment id, and one payment per top-up),
and a refund debits only in the one that inserted its refund id. The insert is the first
statement of that transaction, so on SQLite it takes the write lock before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from aicredits.store.db import AnyRow, now_ms, row_dict
from aicredits.store.tables import accounts, ledger_entries, payments, refunds, topups, usage_records, wallets


@dataclass(frozen=True)
class Topup:
    id: str
    account_id: int
    provider: str
    status: str
    credit_micros: int
    fee_paise: int
    gst_paise: int
    amount_paise: int
    currency: str
    order_id: str | None
    payment_id: str | None
    error: str | None
    created_at: int
    paid_at: int | None


def _topup(row: AnyRow) -> Topup:
    return Topup(row.id, row.account_id, row.provider, row.status, row.credit_micros, row.fee_paise,
                 row.gst_paise, row.amount_paise, row.currency, row.order_id, row.payment_id, row.error,
                 row.created_at, row.paid_at)


def _insert_ignoring_duplicates(conn: AsyncConnection, table: Table, **values: object) -> ReturningInsert[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the key: a row back means this transaction
    inserted it; none means the row (or another row with the same unique key) exists."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(values).on_conflict_do_nothing().returning(table.c.id)


# ------------------------------------------------------------------ top-ups
async def create_topup(conn: AsyncConnection, *, topup_id: str, account_id: int, provider: str,
                       credit_micros: int, fee_paise: int, gst_paise: int, amount_paise: int,
                       currency: str) -> None:
    ts = now_ms()
    await conn.execute(insert(topups).values(
        id=topup_id, account_id=account_id, provider=provider, status="created", credit_micros=credit_micros,
        fee_paise=fee_paise, gst_paise=gst_paise, amount_paise=amount_paise, currency=currency,
        created_at=ts, updated_at=ts))


async def set_order(conn: AsyncConnection, topup_id: str, order_id: str) -> None:
    await conn.execute(update(topups).where(topups.c.id == topup_id).values(order_id=order_id, updated_at=now_ms()))


async def topup(conn: AsyncConnection, topup_id: str) -> Topup | None:
    row = (await conn.execute(select(topups).where(topups.c.id == topup_id))).first()
    return _topup(row) if row else None


async def topup_by_order(conn: AsyncConnection, order_id: str) -> Topup | None:
    row = (await conn.execute(select(topups).where(topups.c.order_id == order_id))).first()
    return _topup(row) if row else None


async def topups_of(conn: AsyncConnection, account_id: int, limit: int = 50) -> list[Topup]:
    rows = (await conn.execute(select(topups).where(topups.c.account_id == account_id)
                               .order_by(topups.c.created_at.desc(), topups.c.id).limit(limit))).all()
    return [_topup(r) for r in rows]


async def mark_failed(conn: AsyncConnection, topup_id: str, error: str) -> bool:
    """A failed attempt: the top-up is `failed` unless a payment already paid it (a customer may
    retry on the same order, and a late failure of an earlier attempt changes nothing)."""
    result = await conn.execute(update(topups).where(topups.c.id == topup_id, topups.c.status != "paid")
                                .values(status="failed", error=error[:500], updated_at=now_ms()))
    return result.rowcount == 1


async def note_error(conn: AsyncConnection, topup_id: str, error: str) -> None:
    """A refusal the admin must see (amount mismatch, a second payment): status unchanged."""
    await conn.execute(update(topups).where(topups.c.id == topup_id).values(error=error[:500], updated_at=now_ms()))


# ------------------------------------------------------------------ crediting a payment
async def claim_payment(conn: AsyncConnection, *, payment_id: str, provider: str, topup_id: str,
                        account_id: int, amount_paise: int, credit_micros: int, method: str | None,
                        source: str) -> bool:
    """True when this transaction recorded the payment (then it must credit the wallet); False when
    the payment, or another payment of the same top-up, was recorded before."""
    stmt = _insert_ignoring_duplicates(
        conn, payments, id=payment_id, provider=provider, topup_id=topup_id, account_id=account_id, amount_paise=amount_paise,
        credit_micros=credit_micros, method=(method or None) and method[:32], source=source, refunded_paise=0,
        refund_claimed_micros=0, refund_shortfall_micros=0, created_at=now_ms())
    return (await conn.execute(stmt)).first() is not None


async def mark_paid(conn: AsyncConnection, topup_id: str, payment_id: str) -> None:
    ts = now_ms()
    await conn.execute(update(topups).where(topups.c.id == topup_id).values(
        status="paid", payment_id=payment_id, paid_at=ts, updated_at=ts))


async def payment(conn: AsyncConnection, payment_id: str) -> dict | None:
    row = (await conn.execute(select(payments).where(payments.c.id == payment_id))).first()
    return row_dict(row) if row else None


async def payment_of_topup(conn: AsyncConnection, topup_id: str) -> dict | None:
    row = (await conn.execute(select(payments).where(payments.c.topup_id == topup_id))).first()
    return row_dict(row) if row else None


# ------------------------------------------------------------------ refunds
async def claim_refund(conn: AsyncConnection, *, refund_id: str, payment_id: str, account_id: int,
                       amount_paise: int) -> bool:
    """True when this transaction recorded the refund (then it must debit); False for a repeat."""
    stmt = _insert_ignoring_duplicates(
        conn, refunds, id=refund_id, payment_id=payment_id, account_id=account_id, amount_paise=amount_paise, claimed_micros=0,
        debited_micros=0, shortfall_micros=0, created_at=now_ms())
    return (await conn.execute(stmt)).first() is not None


async def locked_payment(conn: AsyncConnection, payment_id: str) -> dict | None:
    """The payment row, locked on PostgreSQL (SQLite: the transaction already holds the write lock)."""
    row = (await conn.execute(select(payments).where(payments.c.id == payment_id).with_for_update())).first()
    return row_dict(row) if row else None


async def locked_wallet(conn: AsyncConnection, account_id: int) -> tuple[int, int]:
    """(balance, held), locked on PostgreSQL as the billing store locks it."""
    row = (await conn.execute(select(wallets.c.balance, wallets.c.held)
                              .where(wallets.c.account_id == account_id).with_for_update())).one()
    return row.balance, row.held


async def debit_refund(conn: AsyncConnection, *, account_id: int, amount: int, refund_id: str,
                       note: str) -> int:
    """Take `amount` (> 0) off the wallet as a `refund` ledger entry; returns the balance after.
    A refund lowers total_added: it counts money added, net of money given back."""
    ts = now_ms()
    balance_after = (await conn.execute(
        update(wallets).where(wallets.c.account_id == account_id)
        .values(balance=wallets.c.balance - amount, total_added=wallets.c.total_added - amount, updated_at=ts)
        .returning(wallets.c.balance))).scalar_one()
    await conn.execute(insert(ledger_entries).values(
        account_id=account_id, kind="refund", amount=-amount, balance_after=balance_after, call_id=refund_id,
        key_id=None, note=note, created_at=ts))
    return balance_after


async def finish_refund(conn: AsyncConnection, *, refund_id: str, payment_id: str, amount_paise: int,
                        claimed: int, debited: int, shortfall: int) -> None:
    await conn.execute(update(refunds).where(refunds.c.id == refund_id).values(
        claimed_micros=claimed, debited_micros=debited, shortfall_micros=shortfall))
    await conn.execute(update(payments).where(payments.c.id == payment_id).values(
        refunded_paise=payments.c.refunded_paise + amount_paise,
        refund_claimed_micros=payments.c.refund_claimed_micros + claimed,
        refund_shortfall_micros=payments.c.refund_shortfall_micros + shortfall))


async def refunds_of(conn: AsyncConnection, payment_id: str) -> list[dict]:
    rows = (await conn.execute(select(refunds).where(refunds.c.payment_id == payment_id)
                               .order_by(refunds.c.created_at, refunds.c.id))).all()
    return [row_dict(r) for r in rows]


async def charged_since(conn: AsyncConnection, account_id: int, since_ms: int) -> int:
    """Micro-INR charged for calls since `since_ms`: each call's usage record carries the charge its
    ledger entry made (`cost`), and ix_usage_account_time covers this sum."""
    q = (select(func.coalesce(func.sum(usage_records.c.cost), 0))
         .where(usage_records.c.account_id == account_id, usage_records.c.created_at >= since_ms))
    return int((await conn.execute(q)).scalar_one())


# ------------------------------------------------------------------ the admin's view
async def recent_for_admin(conn: AsyncConnection, limit: int = 200) -> list[dict]:
    """Top-ups, newest first, with the account's email and the payment's refund totals."""
    q = (select(topups, accounts.c.email, payments.c.refunded_paise, payments.c.refund_claimed_micros,
                payments.c.refund_shortfall_micros, payments.c.source, payments.c.method)
         .select_from(topups.join(accounts, accounts.c.id == topups.c.account_id)
                      .outerjoin(payments, payments.c.topup_id == topups.c.id))
         .order_by(topups.c.created_at.desc(), topups.c.id).limit(limit))
    return [row_dict(r) for r in (await conn.execute(q)).all()]


async def shortfall_total(conn: AsyncConnection) -> int:
    q = select(func.coalesce(func.sum(payments.c.refund_shortfall_micros), 0))
    return int((await conn.execute(q)).scalar_one())
