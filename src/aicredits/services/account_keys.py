"""An account's own API keys, as the dashboard manages them: a key id that is not the
account's is treated as absent (NotFound), whoever asks and however."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aicredits.domain.keys import display_form, generate_key, generate_key_id, hash_key
from aicredits.domain.ratelimit import MAX_LIMIT
from aicredits.services import audit
from aicredits.services.audit import Actor
from aicredits.store import api_keys as keys_repo
from aicredits.store import auth as auth_repo
from aicredits.store.db import AnyRow, Engine


class KeyNotFound(Exception):
    pass


class KeyInputError(ValueError):
    """A bad field, with a message fit to show the person."""


@dataclass(frozen=True)
class KeyView:
    id: str
    name: str
    display: str            # sk-abcd…wxyz
    created_at: int
    last_used_at: int | None
    spent: int              # micro-INR
    limit: int | None       # micro-INR, None: only the wallet limits it
    rpm: int | None
    tpm: int | None
    revoked_at: int | None
    expires_at: int | None = None       # refused from then on; None: never
    models: str | None = None           # comma-separated glob patterns; None: every model


def _view(r: AnyRow) -> KeyView:
    return KeyView(r.id, r.name, r.display, r.created_at, r.last_used_at, r.spent, r.limit_micros, r.rpm, r.tpm,
                   r.revoked_at, r.expires_at, r.models)


def _check(name: str, limit: int | None, rpm: int | None, tpm: int | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise KeyInputError("Give the key a name of 1 to 200 characters.")
    if limit is not None and limit <= 0:
        raise KeyInputError("A credit limit must be more than ₹0 (leave it empty for no limit).")
    for label, v in (("Requests per minute", rpm), ("Tokens per minute", tpm)):
        if v is not None and not 1 <= v <= MAX_LIMIT:
            raise KeyInputError(f"{label} must be from 1 to {MAX_LIMIT} (leave it empty for no limit).")
    return name


class AccountKeys:
    def __init__(self, engine: Engine, on_revoked: Callable[[str], None] | None = None) -> None:
        self._engine = engine
        self._on_revoked = on_revoked       # drops the key from this process's key cache at once

    async def list(self, account_id: int) -> list[KeyView]:
        async with self._engine.connect() as conn:
            return [_view(r) for r in await auth_repo.keys_of(conn, account_id)]

    async def get(self, account_id: int, key_id: str) -> KeyView:
        async with self._engine.connect() as conn:
            row = await auth_repo.owned_key(conn, account_id, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return _view(row)

    async def create(self, actor: Actor, *, name: str, limit: int | None = None, rpm: int | None = None,
                     tpm: int | None = None, expires_at: int | None = None,
                     models: tuple[str, ...] | None = None) -> tuple[str, KeyView]:
        """(the secret, shown once; the key). `expires_at` (epoch ms) and `models` (glob patterns)
        come parsed (domain/keys.py)."""
        if actor.account_id is None:
            raise KeyNotFound("no account")
        name = _check(name, limit, rpm, tpm)
        models_text = ",".join(models) if models else None
        secret = generate_key()
        async with self._engine.begin() as conn:
            row = await keys_repo.create(conn, key_id=generate_key_id(), account_id=actor.account_id, name=name,
                                         key_hash=hash_key(secret), display=display_form(secret), limit_micros=limit,
                                         rpm=rpm, tpm=tpm, expires_at=expires_at, models=models_text)
            await audit.append(conn, actor, audit.KEY_CREATED, target=row.id,
                               detail={"name": name, "limit": limit, "rpm": rpm, "tpm": tpm,
                                       "expires_at": expires_at, "models": models_text})
            made = await auth_repo.owned_key(conn, actor.account_id, row.id)
            assert made is not None     # made in this transaction
            view = _view(made)
        return secret, view

    async def revoke(self, actor: Actor, key_id: str) -> bool:
        """True when this revoked it, False when it was revoked already; KeyNotFound when the
        key is not the actor's."""
        async with self._engine.begin() as conn:
            if actor.account_id is None or await auth_repo.owned_key(conn, actor.account_id, key_id) is None:
                raise KeyNotFound(key_id)
            done = await keys_repo.revoke(conn, key_id)
            if done:
                await audit.append(conn, actor, audit.KEY_REVOKED, target=key_id)
        if done and self._on_revoked is not None:
            self._on_revoked(key_id)
        return done
