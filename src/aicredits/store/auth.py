"""Sign-in state: dashboard sessions, one-time tokens (password reset, invites), OpenID
Connect identities, and the accounts' sign-in fields. Secrets are stored as SHA-256 hashes
only. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aicredits.store.db import AnyRow, now_ms
from aicredits.store.tables import accounts, api_keys, auth_tokens, oidc_identities, web_sessions


@dataclass(frozen=True)
class Principal:
    """An account as the dashboard sees it."""
    id: int
    email: str
    name: str
    role: str
    password_hash: str | None
    disabled_at: int | None
    timezone: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class SessionRow:
    id: str
    account_id: int | None
    csrf_token: str
    data: str
    created_at: int
    last_seen_at: int
    expires_at: int


def _principal(r: AnyRow) -> Principal:
    return Principal(r.id, r.email, r.name, r.role, r.password_hash, r.disabled_at, r.timezone)


# ---------------------------------------------------------------- accounts
async def principal_by_email(conn: AsyncConnection, email: str) -> Principal | None:
    """Case-insensitive (accounts made by the CLI keep the case they were typed in)."""
    r = (await conn.execute(select(accounts).where(func.lower(accounts.c.email) == email.lower())
                            .order_by(accounts.c.id))).first()
    return _principal(r) if r else None


async def principal_by_id(conn: AsyncConnection, account_id: int) -> Principal | None:
    r = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return _principal(r) if r else None


async def set_disabled(conn: AsyncConnection, account_id: int, disabled: bool) -> bool:
    result = await conn.execute(update(accounts).where(accounts.c.id == account_id)
                                .values(disabled_at=now_ms() if disabled else None))
    return result.rowcount == 1


async def set_timezone(conn: AsyncConnection, account_id: int, tz: str | None) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(timezone=tz))


# ---------------------------------------------------------------- sessions
async def create_session(conn: AsyncConnection, *, session_id: str, account_id: int | None, csrf_token: str,
                         data: str, ip: str | None, user_agent: str | None, expires_at: int) -> None:
    ts = now_ms()
    await conn.execute(insert(web_sessions).values(
        id=session_id, account_id=account_id, csrf_token=csrf_token, data=data, ip=ip,
        user_agent=(user_agent or "")[:300] or None, created_at=ts, last_seen_at=ts, expires_at=expires_at,
        revoked_at=None))


async def live_session(conn: AsyncConnection, session_id: str, now: int) -> tuple[SessionRow, Principal | None] | None:
    """The session (unexpired, unrevoked) and its account; None when there is none. A
    disabled account's session is no session."""
    q = (select(web_sessions, accounts.c.email, accounts.c.name, accounts.c.role, accounts.c.password_hash,
                accounts.c.disabled_at, accounts.c.timezone)
         .select_from(web_sessions.outerjoin(accounts, accounts.c.id == web_sessions.c.account_id))
         .where(web_sessions.c.id == session_id, web_sessions.c.revoked_at.is_(None),
                web_sessions.c.expires_at > now))
    r = (await conn.execute(q)).first()
    if r is None:
        return None
    s = SessionRow(r.id, r.account_id, r.csrf_token, r.data, r.created_at, r.last_seen_at, r.expires_at)
    if r.account_id is None:
        return s, None
    if r.disabled_at is not None:
        return None
    return s, Principal(r.account_id, r.email, r.name, r.role, r.password_hash, r.disabled_at, r.timezone)


async def touch_session(conn: AsyncConnection, session_id: str, now: int) -> None:
    await conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(last_seen_at=now))


async def set_session_data(conn: AsyncConnection, session_id: str, data: str) -> None:
    await conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(data=data))


async def revoke_session(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(update(web_sessions).where(web_sessions.c.id == session_id,
                                                  web_sessions.c.revoked_at.is_(None)).values(revoked_at=now_ms()))


async def revoke_sessions_of(conn: AsyncConnection, account_id: int, *, keep: str | None = None) -> int:
    q = update(web_sessions).where(web_sessions.c.account_id == account_id, web_sessions.c.revoked_at.is_(None))
    if keep is not None:
        q = q.where(web_sessions.c.id != keep)
    return (await conn.execute(q.values(revoked_at=now_ms()))).rowcount


async def purge_sessions(conn: AsyncConnection, before: int) -> int:
    """Delete sessions that expired (or were revoked) before `before`."""
    result = await conn.execute(delete(web_sessions).where(
        (web_sessions.c.expires_at < before) | (web_sessions.c.revoked_at < before)))
    return result.rowcount


# ---------------------------------------------------------------- one-time tokens
async def create_token(conn: AsyncConnection, *, token_id: str, purpose: str, account_id: int | None,
                       email: str, expires_at: int) -> None:
    await conn.execute(insert(auth_tokens).values(id=token_id, purpose=purpose, account_id=account_id,
                                                  email=email, created_at=now_ms(), expires_at=expires_at))


async def usable_token(conn: AsyncConnection, token_id: str, purpose: str, now: int) -> dict | None:
    r = (await conn.execute(select(auth_tokens).where(
        auth_tokens.c.id == token_id, auth_tokens.c.purpose == purpose, auth_tokens.c.used_at.is_(None),
        auth_tokens.c.expires_at > now))).first()
    return {"account_id": r.account_id, "email": r.email} if r else None


async def use_token(conn: AsyncConnection, token_id: str, now: int) -> bool:
    """Mark used; False when another request used it first (one use, even under a race)."""
    result = await conn.execute(update(auth_tokens).where(auth_tokens.c.id == token_id,
                                                          auth_tokens.c.used_at.is_(None)).values(used_at=now))
    return result.rowcount == 1


# ---------------------------------------------------------------- OpenID Connect identities
async def identity_account(conn: AsyncConnection, issuer: str, subject: str) -> int | None:
    return (await conn.execute(select(oidc_identities.c.account_id).where(
        oidc_identities.c.issuer == issuer, oidc_identities.c.subject == subject))).scalar_one_or_none()


async def link_identity(conn: AsyncConnection, *, issuer: str, subject: str, account_id: int, email: str) -> None:
    await conn.execute(insert(oidc_identities).values(issuer=issuer, subject=subject, account_id=account_id,
                                                      email=email, created_at=now_ms()))


# ---------------------------------------------------------------- keys, as their owner sees them
async def owned_key(conn: AsyncConnection, account_id: int, key_id: str) -> AnyRow | None:
    """The key row when this account owns it; None otherwise (someone else's key looks absent)."""
    return (await conn.execute(select(api_keys).where(api_keys.c.id == key_id,
                                                      api_keys.c.account_id == account_id))).first()


async def keys_of(conn: AsyncConnection, account_id: int) -> Sequence[AnyRow]:
    return (await conn.execute(select(api_keys).where(api_keys.c.account_id == account_id)
                               .order_by(api_keys.c.revoked_at.is_not(None), api_keys.c.created_at.desc()))).all()
