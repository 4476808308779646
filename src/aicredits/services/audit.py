"""The audit log of sensitive actions: who, what, when, from which IP. Append-only.

    await audit.record(Actor.of(account, ip), "key.created", target=key_id, detail={"name": name})

Services that change something record inside their own transaction with `append(conn, ...)`
(the change and its row land together); `Audit.record` is the same in a transaction of its own.
Never put a secret (key, password, token) in `detail`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aicredits.store import audit as audit_repo
from aicredits.store.accounts import Account
from aicredits.store.auth import Principal
from aicredits.store.db import Conn, Engine

# the actions the dashboard and the CLI record (others may add theirs; keep names dotted nouns)
SIGNIN = "signin"
SIGNIN_FAILED = "signin.failed"
SIGNOUT = "signout"
SIGNUP = "signup"
PASSWORD_CHANGED = "password.changed"
PASSWORD_RESET = "password.reset"
RESET_LINK = "password.reset_link"
INVITE = "invite.created"
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
OIDC_LINKED = "oidc.linked"
ACCOUNT_DISABLED = "account.disabled"
ACCOUNT_ENABLED = "account.enabled"
TOPUP = "topup"


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where: an account (id and email), or a named system actor ("cli",
    "system", "razorpay") with account_id None."""
    account_id: int | None
    name: str
    ip: str | None = None

    @classmethod
    def of(cls, account: Account | Principal, ip: str | None = None) -> Actor:
        """From anything with `.id` and `.email` (an Account, a Principal)."""
        return cls(account.id, account.email, ip)

    @classmethod
    def system(cls, name: str = "system", ip: str | None = None) -> Actor:
        return cls(None, name, ip)


async def append(conn: Conn, actor: Actor, action: str, *, target: str = "", detail: dict | None = None) -> int:
    """Record inside the caller's transaction."""
    return await audit_repo.append(conn, action=action, actor_id=actor.account_id, actor=actor.name,
                                   target=target, ip=actor.ip, detail=detail)


class Audit:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def record(self, actor: Actor, action: str, *, target: str = "", detail: dict | None = None) -> int:
        """Record in a transaction of its own; returns the row id."""
        async with self._engine.begin() as conn:
            return await append(conn, actor, action, target=target, detail=detail)

    async def recent(self, *, limit: int = 100, before_id: int | None = None, actor_id: int | None = None,
                     action: str | None = None) -> list[dict]:
        """Newest first: dicts with id, created_at (epoch ms), actor_id, actor, action, target, ip,
        detail (a dict). `before_id` pages back."""
        async with self._engine.connect() as conn:
            return await audit_repo.recent(conn, limit=limit, before_id=before_id, actor_id=actor_id,
                                           action=action)
