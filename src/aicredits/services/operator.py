"""What an admin does to accounts, from the admin pages or the admin API: find users, create
them, disable or enable them, grant or debit credits with a reason, create keys for them,
revoke keys or change their limits, and manage admin API keys. Callers check the admin role;
each action is one transaction with its audit row (services/audit.py), so neither lands
without the other."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

from argon2 import PasswordHasher

from aicredits.domain.keys import (
    admin_display_form,
    display_form,
    generate_admin_key,
    generate_admin_key_id,
    generate_key,
    generate_key_id,
    hash_key,
)
from aicredits.domain.money import format_inr
from aicredits.domain.ratelimit import MAX_LIMIT
from aicredits.services import audit
from aicredits.services.audit import Actor
from aicredits.services.auth import AuthError, check_email, check_password
from aicredits.store import accounts as accounts_repo
from aicredits.store import api_keys as keys_repo
from aicredits.store import auth as auth_repo
from aicredits.store import operator as repo
from aicredits.store.api_keys import KeyRow
from aicredits.store.db import Engine
from aicredits.store.operator import DebitRefused

USER_CREATED = "user.created"
CREDITS_GRANTED = "credits.granted"
CREDITS_DEBITED = "credits.debited"
KEY_LIMITS = "key.limits"
KEY_FIELDS = {"limit", "rpm", "tpm", "expires_at", "models"}     # what set_key_limits changes
ADMIN_KEY_CREATED = "admin_key.created"
ADMIN_KEY_REVOKED = "admin_key.revoked"
# every action the audit log holds, for its filter
ACTIONS = (audit.SIGNIN, audit.SIGNIN_FAILED, audit.SIGNOUT, audit.SIGNUP, audit.PASSWORD_CHANGED,
           audit.PASSWORD_RESET, audit.RESET_LINK, audit.INVITE, audit.KEY_CREATED, audit.KEY_REVOKED, KEY_LIMITS,
           audit.OIDC_LINKED, audit.ACCOUNT_DISABLED, audit.ACCOUNT_ENABLED, USER_CREATED, CREDITS_GRANTED,
           CREDITS_DEBITED, audit.TOPUP, ADMIN_KEY_CREATED, ADMIN_KEY_REVOKED)
ACTION_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")   # others (payments: topup.refunded) add their own
MAX_REASON = 500
MAX_AMOUNT = 10**15            # micro-INR: ₹1,000,000,000 in one grant, debit or key limit
MAX_ID = 2**31 - 1


def action_name(value: str) -> bool:
    """Could this be an audit action's name (a dotted lower-case noun)?"""
    return ACTION_RE.match(value) is not None


class OperatorError(ValueError):
    """A refusal with a message fit to show the admin (400)."""


class NotFound(Exception):
    """No such account or key."""


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise OperatorError("Give the key a name of 1 to 200 characters.")
    return name


def _limits(limit: int | None, rpm: int | None, tpm: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_AMOUNT):
        raise OperatorError("A key's credit limit must be more than ₹0 and at most ₹1,00,00,00,000, or none.")
    for label, v in (("rpm", rpm), ("tpm", tpm)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_LIMIT):
            raise OperatorError(f"{label} must be a whole number from 1 to {MAX_LIMIT}, or none.")


def _key_view(r: KeyRow) -> dict:
    return {"id": r.id, "account_id": r.account_id, "name": r.name, "display": r.display, "limit": r.limit_micros,
            "spent": r.spent, "held": r.held, "rpm": r.rpm, "tpm": r.tpm, "created_at": r.created_at,
            "revoked_at": r.revoked_at, "expires_at": r.expires_at,
            "models": r.models.split(",") if r.models else None}


class Operator:
    def __init__(self, engine: Engine, on_key_revoked: Callable[[str | None], None] | None = None) -> None:
        self._engine = engine
        # drops a key (None: every key) from this process's key cache at once (KeyAuthenticator.forget)
        self._on_key_revoked = on_key_revoked

    # ------------------------------------------------------------ accounts
    async def users(self, q: str = "", *, after_id: int | None = None, limit: int = 50) -> list[dict]:
        async with self._engine.connect() as conn:
            return await repo.search_accounts(conn, q=q.strip()[:320], after_id=after_id, limit=min(limit, 200))

    async def user(self, account_id: int) -> dict:
        if not 0 < account_id <= MAX_ID:
            raise NotFound(account_id)
        async with self._engine.connect() as conn:
            found = await repo.account(conn, account_id)
            if found is None:
                raise NotFound(account_id)
            found["keys"] = [_key_view(k) for k in await keys_repo.list_for(conn, account_id)]
        return found

    async def create_user(self, actor: Actor, email: str, *, name: str = "", role: str = "user",
                          password: str | None = None) -> dict:
        try:
            email = check_email(email)
            if password is not None:
                check_password(password)
        except AuthError as exc:
            raise OperatorError(str(exc)) from None
        if role not in ("user", "admin"):
            raise OperatorError("role is 'user' or 'admin'.")
        hashed = await asyncio.to_thread(PasswordHasher().hash, password) if password else None
        async with self._engine.begin() as conn:
            if await accounts_repo.by_email(conn, email) is not None:
                raise OperatorError(f"An account with the email {email} exists already.")
            acct = await accounts_repo.create(conn, email, name=(name or "").strip()[:200], role=role,
                                              password_hash=hashed)
            await audit.append(conn, actor, USER_CREATED, target=email, detail={"id": acct.id, "role": role})
            made = await repo.account(conn, acct.id)
        assert made is not None     # made in this transaction
        return made

    async def set_disabled(self, actor: Actor, account_id: int, disabled: bool) -> bool:
        """Disable (no sign-in, its sessions end, its keys refused: at once here, within the key
        cache's second elsewhere) or enable. False when it was so already."""
        if disabled and actor.account_id == account_id:
            raise OperatorError("You cannot disable your own account.")
        target = await self.user(account_id)
        if (target["disabled_at"] is not None) == disabled:
            return False
        async with self._engine.begin() as conn:
            await auth_repo.set_disabled(conn, account_id, disabled)
            if disabled:
                await auth_repo.revoke_sessions_of(conn, account_id)
            await audit.append(conn, actor, audit.ACCOUNT_DISABLED if disabled else audit.ACCOUNT_ENABLED,
                               target=target["email"], detail={"id": account_id})
        if self._on_key_revoked is not None:
            if disabled:
                for k in target["keys"]:
                    self._on_key_revoked(k["id"])
            else:
                self._on_key_revoked(None)    # the whole cache: its "no such key" answers go too
        return True

    async def adjust(self, actor: Actor, account_id: int, kind: str, amount: int, reason: str) -> int:
        """A `grant` adds, a `debit` takes (never more than the wallet's available balance);
        the reason goes on the ledger entry and in the audit log. Returns the balance after."""
        reason = (reason or "").strip()
        if kind not in ("grant", "debit"):
            raise OperatorError("Choose grant or debit.")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            raise OperatorError("The amount must be more than ₹0 and at most ₹1,00,00,00,000.")
        if not reason or len(reason) > MAX_REASON:
            raise OperatorError(f"Give a reason of 1 to {MAX_REASON} characters.")
        target = await self.user(account_id)
        async with self._engine.begin() as conn:
            if kind == "grant":
                balance = await accounts_repo.credit(conn, account_id, amount, kind="grant", note=reason)
            else:
                try:
                    balance = await repo.debit(conn, account_id, amount, note=reason)
                except DebitRefused as exc:
                    raise OperatorError(f"A debit cannot take more than the available balance, "
                                        f"₹{format_inr(exc.available)}.") from None
            await audit.append(conn, actor, CREDITS_GRANTED if kind == "grant" else CREDITS_DEBITED,
                               target=target["email"], detail={"id": account_id, "amount": amount,
                                                               "reason": reason, "balance_after": balance})
        return balance

    # ------------------------------------------------------------ inference keys
    async def create_key(self, actor: Actor, account_id: int, *, name: str, limit: int | None = None,
                         rpm: int | None = None, tpm: int | None = None, expires_at: int | None = None,
                         models: tuple[str, ...] | None = None) -> tuple[str, dict]:
        """(the secret, shown once; the key) for the account. `expires_at` (epoch ms) and `models`
        (glob patterns) come parsed (domain/keys.py)."""
        models_text = ",".join(models) if models else None
        name = _name(name)
        _limits(limit, rpm, tpm)
        target = await self.user(account_id)
        secret = generate_key()
        async with self._engine.begin() as conn:
            row = await keys_repo.create(conn, key_id=generate_key_id(), account_id=account_id, name=name,
                                         key_hash=hash_key(secret), display=display_form(secret), limit_micros=limit,
                                         rpm=rpm, tpm=tpm, expires_at=expires_at, models=models_text)
            await audit.append(conn, actor, audit.KEY_CREATED, target=row.id,
                               detail={"account": target["email"], "name": name, "limit": limit, "rpm": rpm,
                                       "tpm": tpm, "expires_at": expires_at, "models": models_text})
        return secret, _key_view(row)

    async def key(self, key_id: str) -> dict:
        async with self._engine.connect() as conn:
            row = await keys_repo.get(conn, key_id[:64])
        if row is None:
            raise NotFound(key_id)
        return _key_view(row)

    async def revoke_key(self, actor: Actor, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            if await keys_repo.get(conn, key_id[:64]) is None:
                raise NotFound(key_id)
            done = await keys_repo.revoke(conn, key_id)
            if done:
                await audit.append(conn, actor, audit.KEY_REVOKED, target=key_id)
        if done and self._on_key_revoked is not None:
            self._on_key_revoked(key_id)
        return done

    async def set_key_limits(self, actor: Actor, key_id: str, changes: dict) -> dict:
        """Set or clear (None) a key's `limit` (micro-INR), `rpm`, `tpm`, `expires_at` (epoch ms)
        and `models` (glob patterns, parsed by domain/keys.py); keys left out stay."""
        if not changes or set(changes) - KEY_FIELDS:
            raise OperatorError("Change one or more of limit, rpm, tpm, expires_at, models.")
        _limits(changes.get("limit"), changes.get("rpm"), changes.get("tpm"))
        expires_at = changes.get("expires_at")
        if expires_at is not None and (isinstance(expires_at, bool) or not isinstance(expires_at, int)):
            raise OperatorError("A key's expiry is epoch milliseconds, or none.")
        if "models" in changes:
            models = changes["models"]
            changes = {**changes, "models": ",".join(models) if models else None}
        values = {("limit_micros" if k == "limit" else k): v for k, v in changes.items()}
        async with self._engine.begin() as conn:
            if await keys_repo.get(conn, key_id[:64]) is None:
                raise NotFound(key_id)
            await keys_repo.set_rate_limits(conn, key_id, values)
            await audit.append(conn, actor, KEY_LIMITS, target=key_id, detail=changes)
            row = await keys_repo.get(conn, key_id)
        assert row is not None      # found above, in this transaction
        if self._on_key_revoked is not None:
            self._on_key_revoked(key_id)           # the next call reads the new limits
        return _key_view(row)

    # ------------------------------------------------------------ admin API keys
    async def admin_keys(self) -> list[dict]:
        async with self._engine.connect() as conn:
            return await repo.admin_keys_list(conn)

    async def create_admin_key(self, actor: Actor, name: str, *, owner_email: str | None = None) -> tuple[str, dict]:
        """An admin API key (shown once) owned by the acting admin, or by the admin account
        `owner_email` (the CLI). It acts with its owner's rights while the owner is an enabled admin."""
        name = _name(name)
        owner_id = actor.account_id if owner_email is None else await self.account_id_of(owner_email)
        if owner_id is None:
            raise OperatorError(f"No account with the email {owner_email}." if owner_email
                                else "An admin key belongs to an admin account.")
        owner = await self.user(owner_id)
        if owner["role"] != "admin" or owner["disabled_at"] is not None:
            raise OperatorError(f"{owner['email']} is not an enabled admin account: only an admin can own an "
                                "admin key.")
        secret = generate_admin_key()
        async with self._engine.begin() as conn:
            row = await repo.create_admin_key(conn, key_id=generate_admin_key_id(), account_id=owner_id,
                                              name=name, key_hash=hash_key(secret),
                                              display=admin_display_form(secret))
            await audit.append(conn, actor, ADMIN_KEY_CREATED, target=row["id"],
                               detail={"name": name, "owner": owner["email"]})
        return secret, row

    async def revoke_admin_key(self, actor: Actor, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            done = await repo.revoke_admin_key(conn, key_id[:64])
            if done is None:
                raise NotFound(key_id)
            if done:
                await audit.append(conn, actor, ADMIN_KEY_REVOKED, target=key_id)
        return done

    # ------------------------------------------------------------ the audit log
    async def audit_batches(self, *, action: str | None = None,
                            actor_id: int | None = None) -> AsyncIterator[list[tuple]]:
        """Every audit row (filtered), oldest first, in batches of tuples (id, created_at,
        actor_id, actor, action, target, ip, detail as JSON text)."""
        async with self._engine.connect() as conn:
            async for batch in repo.audit_batches(conn, action=action, actor_id=actor_id):
                yield batch

    async def account_id_of(self, email: str) -> int | None:
        async with self._engine.connect() as conn:
            found = await accounts_repo.by_email(conn, email.strip().lower()[:320])
        return found.id if found else None
