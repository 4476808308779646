"""Operator use cases behind the CLI: accounts, keys, grants, usage and the ledger check. Each
method is one transaction; each change is audited in it with the actor "cli" (the admin pages
and the admin API act through services/operator.py, as the signed-in admin)."""

from __future__ import annotations

import asyncio
import time

from argon2 import PasswordHasher

from aicredits.domain import ledger
from aicredits.domain.keys import display_form, generate_key, generate_key_id, hash_key
from aicredits.domain.ratelimit import MAX_LIMIT
from aicredits.services import audit as audit_log
from aicredits.services import operator as actions
from aicredits.store import accounts as accounts_repo
from aicredits.store import api_keys as keys_repo
from aicredits.store import ledger_audit as audit
from aicredits.store import usage as usage_repo
from aicredits.store.accounts import Account, Wallet
from aicredits.store.db import Conn, Engine

DEFAULT_EMAIL = "default@aicredits.local"
ADMIN_EMAIL = "admin@aicredits.local"
CLI = audit_log.Actor.system("cli")


class AdminError(Exception):
    pass


def _check_rate_limits(limits: dict) -> None:
    for name, value in limits.items():
        if name not in ("rpm", "tpm"):
            raise AdminError(f"unknown rate limit {name!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= MAX_LIMIT):
            raise AdminError(f"{name} must be an integer from 1 to {MAX_LIMIT}, or unset; got {value!r}")


async def _wallet(conn: Conn, account_id: int) -> Wallet:
    w = await accounts_repo.wallet(conn, account_id)
    if w is None:       # every account is made with its wallet
        raise AdminError(f"account {account_id} has no wallet")
    return w


class Admin:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """For the other operator services that share the CLI's transaction-per-command engine."""
        return self._engine

    async def _account(self, conn: Conn, email: str, *, create: bool, role: str = "user") -> Account:
        acct = await accounts_repo.by_email(conn, email)
        if acct is None:
            if not create:
                raise AdminError(f"no account with email {email}")
            acct = await accounts_repo.create(conn, email, role=role)
        return acct

    async def account_count(self) -> int:
        async with self._engine.connect() as conn:
            return await accounts_repo.count(conn)

    async def create_user(self, email: str, *, name: str = "", password: str | None = None,
                          role: str = "user") -> dict:
        hashed = await asyncio.to_thread(PasswordHasher().hash, password) if password else None
        async with self._engine.begin() as conn:
            acct = await accounts_repo.by_email(conn, email)
            if acct is None:
                acct = await accounts_repo.create(conn, email, name=name, role=role, password_hash=hashed)
                await audit_log.append(conn, CLI, actions.USER_CREATED, target=email, detail={"id": acct.id,
                                                                                              "role": role})
            elif hashed:
                await accounts_repo.set_password(conn, acct.id, hashed)
                await audit_log.append(conn, CLI, audit_log.PASSWORD_CHANGED, target=email)
        return {"id": acct.id, "email": acct.email, "role": acct.role}

    async def create_key(self, email: str | None, *, name: str = "", credits: int = 0,
                         limit: int | None = None, role: str = "user", rpm: int | None = None,
                         tpm: int | None = None, expires_at: int | None = None,
                         models: tuple[str, ...] | None = None) -> dict:
        """`expires_at` (epoch ms) and `models` (glob patterns) come parsed (domain/keys.py)."""
        _check_rate_limits({"rpm": rpm, "tpm": tpm})
        models_text = ",".join(models) if models else None
        key = generate_key()
        async with self._engine.begin() as conn:
            acct = await self._account(conn, email or DEFAULT_EMAIL, create=True, role=role)
            if credits:
                balance = await accounts_repo.credit(conn, acct.id, credits, kind="grant",
                                                     note="keys create --credits")
                await audit_log.append(conn, CLI, actions.CREDITS_GRANTED, target=acct.email, detail={
                    "id": acct.id, "amount": credits, "reason": "keys create --credits", "balance_after": balance})
            row = await keys_repo.create(conn, key_id=generate_key_id(), account_id=acct.id, name=name,
                                         key_hash=hash_key(key), display=display_form(key), limit_micros=limit,
                                         rpm=rpm, tpm=tpm, expires_at=expires_at, models=models_text)
            await audit_log.append(conn, CLI, audit_log.KEY_CREATED, target=row.id, detail={
                "account": acct.email, "name": name, "limit": limit, "rpm": rpm, "tpm": tpm,
                "expires_at": expires_at, "models": models_text})
            wallet = await _wallet(conn, acct.id)
        return {"key": key, "id": row.id, "account": acct.email, "name": name, "display": row.display,
                "balance": wallet.available, "limit": limit, "rpm": rpm, "tpm": tpm, "expires_at": expires_at,
                "models": list(models) if models else None}

    async def list_keys(self, email: str | None = None) -> list[dict]:
        async with self._engine.connect() as conn:
            account_id = None
            if email:
                account_id = (await self._account(conn, email, create=False)).id
            rows = await keys_repo.list_for(conn, account_id)
            emails = {a.id: a.email for a in await accounts_repo.list_all(conn)}
        return [{"id": r.id, "account": emails.get(r.account_id), "name": r.name, "display": r.display,
                 "limit": r.limit_micros, "rpm": r.rpm, "tpm": r.tpm, "spent": r.spent, "held": r.held,
                 "created_at": r.created_at, "revoked": r.revoked_at is not None, "expires_at": r.expires_at,
                 "models": r.models.split(",") if r.models else None} for r in rows]

    async def set_rate_limits(self, key_id: str, **changes: int | None) -> dict:
        """Set or clear (None) a key's `rpm` and/or `tpm`; running gateways apply it within their
        key cache's lifetime (1 s)."""
        _check_rate_limits(changes)
        out = await self.change_key(key_id, changes)
        return {"id": out["id"], "rpm": out["rpm"], "tpm": out["tpm"]}

    async def change_key(self, key_id: str, changes: dict) -> dict:
        """Set or clear (None) any of a key's `rpm`, `tpm`, `expires_at` (epoch ms) and `models`
        (glob patterns), in one transaction, as the admin pages do (services/operator.py), audited
        as the CLI; keys left out of `changes` stay. Running gateways apply it within their key
        cache's lifetime (1 s)."""
        try:
            return await actions.Operator(self._engine).set_key_limits(CLI, key_id, changes)
        except actions.NotFound:
            raise AdminError(f"no key with id {key_id}") from None
        except actions.OperatorError as exc:
            raise AdminError(str(exc)) from None

    async def revoke_key(self, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            if await keys_repo.get(conn, key_id) is None:
                raise AdminError(f"no key with id {key_id}")
            done = await keys_repo.revoke(conn, key_id)
            if done:
                await audit_log.append(conn, CLI, audit_log.KEY_REVOKED, target=key_id)
            return done

    async def grant(self, email: str, amount: int, *, note: str = "", kind: str = "grant") -> int:
        async with self._engine.begin() as conn:
            acct = await self._account(conn, email, create=False)
            balance = await accounts_repo.credit(conn, acct.id, amount, kind=kind, note=note)
            if kind == "grant":
                await audit_log.append(conn, CLI, actions.CREDITS_GRANTED, target=acct.email, detail={
                    "id": acct.id, "amount": amount, "reason": note, "balance_after": balance})
            return balance

    async def wallet(self, email: str | None) -> dict:
        async with self._engine.connect() as conn:
            acct = await (self._account(conn, email, create=False) if email else self._default_account(conn))
            w = await _wallet(conn, acct.id)
            entries = await accounts_repo.entries(conn, acct.id, limit=10)
        return {"account": acct.email, "balance": w.balance, "held": w.held, "available": w.available,
                "total_added": w.total_added, "total_spent": w.total_spent, "entries": entries}

    async def _default_account(self, conn: Conn) -> Account:
        """The account a command means without --email: the one `keys create` uses without it
        (DEFAULT_EMAIL) when it exists, else the only account; else AdminError naming them."""
        acct = await accounts_repo.by_email(conn, DEFAULT_EMAIL)
        if acct is not None:
            return acct
        accounts = await accounts_repo.list_all(conn)
        if len(accounts) == 1:
            return accounts[0]
        if not accounts:
            raise AdminError("no accounts yet: `aicredits serve` creates the first one on its first start")
        shown = ", ".join(a.email for a in accounts[:10]) + (f" and {len(accounts) - 10} more"
                                                           if len(accounts) > 10 else "")
        raise AdminError(f"{len(accounts)} accounts; choose one with --email: {shown}")

    async def usage(self, email: str | None, limit: int) -> list[dict]:
        """The latest calls, newest first, each with its account's email as "account"."""
        async with self._engine.connect() as conn:
            account_id = (await self._account(conn, email, create=False)).id if email else None
            rows = await usage_repo.recent(conn, account_id=account_id, limit=limit)
            emails = {a.id: a.email for a in await accounts_repo.list_all(conn)} if rows else {}
        return [{**r, "account": emails.get(r["account_id"])} for r in rows]

    async def verify(self) -> list[ledger.Finding]:
        """Every check of docs/billing.md "Checking the ledger", over one snapshot of the
        database; each failed check once, naming its first bad row. Empty: the ledger is sound."""
        now = int(time.time() * 1000)
        async with audit.snapshot(self._engine) as conn:
            found = ledger.chain_finding(*await audit.chain_breaks(conn))
            found += ledger.sign_finding(*await audit.sign_violations(conn))
            found += ledger.wallet_findings(await audit.wallet_facts(conn))
            found += ledger.key_findings(await audit.key_facts(conn))
            found += ledger.hold_findings(await audit.settled_holds(conn), await audit.expired_holds(conn, now))
        return found
