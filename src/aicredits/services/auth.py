"""Signing in to the dashboard: accounts' passwords (argon2id), server-side sessions
(revocable, expiring), throttled sign-in, sign-up modes, one-time reset and invite links,
and accounts found through OpenID Connect. Every sensitive step is audited in the same
transaction. Messages never tell whether an email has an account (except sign-up, which
must refuse a taken address)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from aicredits.services import audit
from aicredits.services.audit import Actor
from aicredits.store import accounts as accounts_repo
from aicredits.store import audit as audit_repo
from aicredits.store import auth as auth_repo
from aicredits.store.auth import Principal, SessionRow
from aicredits.store.db import Conn, Engine, now_ms

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
THROTTLE_WINDOW_MS = 15 * 60 * 1000
ACCOUNT_FAILURES = 5          # failed sign-ins per email in the window
IP_FAILURES = 20              # failed sign-ins from one IP in the window
RESET_TTL_MS = 60 * 60 * 1000
INVITE_TTL_MS = 7 * 24 * 60 * 60 * 1000
TOUCH_EVERY_MS = 60 * 1000
BAD_CREDENTIALS = "Wrong email or password."


class AuthError(Exception):
    """A refusal with a message fit to show the person."""


class Throttled(AuthError):
    def __init__(self, retry_after_s: int) -> None:
        minutes = max(1, -(-retry_after_s // 60))
        super().__init__(f"Too many failed sign-in attempts for this account or from your network. "
                         f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class OpenedSession:
    token: str                  # the cookie's value; only its hash is stored
    csrf_token: str
    principal: Principal | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normal_email(email: str) -> str:
    return (email or "").strip().lower()


def check_email(email: str) -> str:
    email = normal_email(email)
    if len(email) > 320 or not EMAIL_RE.match(email):
        raise AuthError("Enter a valid email address.")
    return email


def check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AuthError(f"Choose a password of at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"Passwords are at most {MAX_PASSWORD} characters.")


async def _principal(conn: Conn, account_id: int) -> Principal:
    """An account a row of ours refers to (a token, an identity) or one just made."""
    principal = await auth_repo.principal_by_id(conn, account_id)
    if principal is None:
        raise AuthError("This account no longer exists.")
    return principal


class Auth:
    def __init__(self, engine: Engine, *, signup: str = "open", session_seconds: float = 7 * 86400) -> None:
        self._engine = engine
        self.signup = signup
        self._session_ms = int(session_seconds * 1000)
        self._hasher = PasswordHasher()          # argon2id with the library's current parameters
        self._dummy_hash: str | None = None      # made on first need, off the event loop (_dummy)
        self._dummy_lock = threading.Lock()

    # ------------------------------------------------------------ passwords
    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def _dummy(self) -> str:
        """The hash an account without a password is checked against, with the same parameters as
        a real one. Made by the first check that needs it (in a worker thread), not at start: one
        argon2 hash is about a second of a busy machine, which every start and CLI command paid."""
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    async def _verify(self, stored: str | None, password: str) -> bool:
        """Constant work whether or not the account has a password (no timing oracle; the dummy
        hash itself is made once per process, by the first sign-in without one)."""
        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy(), password) and stored is not None
            except (VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(check)

    # ------------------------------------------------------------ sessions
    async def _open(self, conn: Conn, account_id: int | None, ip: str | None, user_agent: str | None,
                    data: dict | None = None) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await auth_repo.purge_sessions(conn, now_ms())     # sessions that ended go as new ones open
        await auth_repo.create_session(conn, session_id=token_hash(token), account_id=account_id, csrf_token=csrf,
                                       data=json.dumps(data or {}), ip=ip, user_agent=user_agent,
                                       expires_at=now_ms() + self._session_ms)
        return token, csrf

    async def open_anonymous(self, ip: str | None, user_agent: str | None, data: dict) -> OpenedSession:
        """A session with no account yet: holds an OpenID Connect flow's state until its callback."""
        async with self._engine.begin() as conn:
            token, csrf = await self._open(conn, None, ip, user_agent, data)
        return OpenedSession(token, csrf, None)

    async def session(self, token: str) -> tuple[SessionRow, Principal | None] | None:
        """The live session behind a cookie value (None: expired, revoked, unknown, or its
        account disabled). Notes the visit at most once a minute."""
        if not token or len(token) > 100:
            return None
        now = now_ms()
        sid = token_hash(token)
        async with self._engine.connect() as conn:
            found = await auth_repo.live_session(conn, sid, now)
        if found and now - found[0].last_seen_at > TOUCH_EVERY_MS:
            async with self._engine.begin() as conn:
                await auth_repo.touch_session(conn, sid, now)
        return found

    async def set_session_data(self, token: str, data: dict) -> None:
        async with self._engine.begin() as conn:
            await auth_repo.set_session_data(conn, token_hash(token), json.dumps(data))

    async def end_session(self, token: str) -> None:
        async with self._engine.begin() as conn:
            await auth_repo.revoke_session(conn, token_hash(token))

    async def sign_out(self, token: str, principal: Principal, ip: str | None) -> None:
        async with self._engine.begin() as conn:
            await auth_repo.revoke_session(conn, token_hash(token))
            await audit.append(conn, Actor.of(principal, ip), audit.SIGNOUT)

    # ------------------------------------------------------------ sign-in
    async def _throttle(self, conn: Conn, email: str, ip: str | None) -> None:
        now = now_ms()
        since = now - THROTTLE_WINDOW_MS
        for kind, limit in (("target", ACCOUNT_FAILURES), ("ip", IP_FAILURES)):
            value = email if kind == "target" else ip
            if value is None:
                continue
            n = await audit_repo.count_since(conn, audit.SIGNIN_FAILED, since, **{kind: value})
            if n >= limit:
                oldest = await audit_repo.oldest_since(conn, audit.SIGNIN_FAILED, since, **{kind: value})
                first = oldest if oldest is not None else since     # (n > 0: there is one)
                raise Throttled(max(1, (first + THROTTLE_WINDOW_MS - now + 999) // 1000))

    async def sign_in(self, email: str, password: str, ip: str | None, user_agent: str | None) -> OpenedSession:
        email = normal_email(email)[:320]
        async with self._engine.connect() as conn:
            await self._throttle(conn, email, ip)
            principal = await auth_repo.principal_by_email(conn, email)
        ok = await self._verify(principal.password_hash if principal else None, password or "")
        async with self._engine.begin() as conn:
            if not ok or principal is None:
                await audit.append(conn, Actor(principal.id if principal else None, email, ip),
                                   audit.SIGNIN_FAILED, target=email)
            elif principal.disabled_at is not None:
                await audit.append(conn, Actor.of(principal, ip), audit.SIGNIN_FAILED, target=email,
                                   detail={"reason": "disabled"})
            else:
                token, csrf = await self._open(conn, principal.id, ip, user_agent)
                await audit.append(conn, Actor.of(principal, ip), audit.SIGNIN, target=email,
                                   detail={"method": "password"})
                return OpenedSession(token, csrf, principal)
        if not ok or principal is None:
            raise AuthError(BAD_CREDENTIALS)
        raise AuthError("This account is disabled. Ask the operator to enable it.")

    # ------------------------------------------------------------ sign-up and invites
    async def sign_up(self, email: str, password: str, *, name: str = "", invite: str | None = None,
                      ip: str | None = None, user_agent: str | None = None) -> OpenedSession:
        if self.signup == "closed":
            raise AuthError("Sign-up is closed on this server: ask the operator for an account.")
        email = check_email(email)
        check_password(password)
        hashed = await self._hash(password)
        now = now_ms()
        async with self._engine.begin() as conn:
            if self.signup == "invite":
                found = await auth_repo.usable_token(conn, token_hash(invite or ""), "invite", now)
                if found is None or found["email"] != email:
                    raise AuthError("Sign-up needs an invitation: open the link you were sent, with the "
                                    "email it was sent to.")
                if not await auth_repo.use_token(conn, token_hash(invite or ""), now):
                    raise AuthError("This invitation has been used already.")
            if await auth_repo.principal_by_email(conn, email) is not None:
                raise AuthError("An account with this email exists already: sign in, or reset its password.")
            acct = await accounts_repo.create(conn, email, name=name.strip()[:200], password_hash=hashed)
            principal = await _principal(conn, acct.id)
            token, csrf = await self._open(conn, acct.id, ip, user_agent)
            actor = Actor.of(principal, ip)
            await audit.append(conn, actor, audit.SIGNUP, target=email, detail={"mode": self.signup})
            await audit.append(conn, actor, audit.SIGNIN, target=email, detail={"method": "signup"})
        return OpenedSession(token, csrf, principal)

    async def invite(self, email: str, actor: Actor) -> str:
        """A one-time sign-up token for this email (7 days)."""
        email = check_email(email)
        token = secrets.token_urlsafe(32)
        async with self._engine.begin() as conn:
            await auth_repo.create_token(conn, token_id=token_hash(token), purpose="invite", account_id=None,
                                         email=email, expires_at=now_ms() + INVITE_TTL_MS)
            await audit.append(conn, actor, audit.INVITE, target=email)
        return token

    # ------------------------------------------------------------ passwords: change and reset
    async def change_password(self, principal: Principal, current: str, new: str, *, session_token: str,
                              ip: str | None) -> None:
        """Other sessions of the account end; this one stays."""
        if principal.password_hash is not None and not await self._verify(principal.password_hash, current or ""):
            raise AuthError("The current password is wrong.")
        check_password(new)
        hashed = await self._hash(new)
        async with self._engine.begin() as conn:
            await accounts_repo.set_password(conn, principal.id, hashed)
            ended = await auth_repo.revoke_sessions_of(conn, principal.id, keep=token_hash(session_token))
            await audit.append(conn, Actor.of(principal, ip), audit.PASSWORD_CHANGED, target=principal.email,
                               detail={"other_sessions_ended": ended})

    async def reset_token(self, email: str, actor: Actor) -> str | None:
        """A one-time password-reset token (1 hour) for the account with this email, or None
        when there is none (say nothing about that to an anonymous asker)."""
        email = normal_email(email)
        token = secrets.token_urlsafe(32)
        async with self._engine.begin() as conn:
            principal = await auth_repo.principal_by_email(conn, email)
            if principal is None or principal.disabled_at is not None:
                return None
            await auth_repo.create_token(conn, token_id=token_hash(token), purpose="reset", account_id=principal.id,
                                         email=email, expires_at=now_ms() + RESET_TTL_MS)
            await audit.append(conn, actor, audit.RESET_LINK, target=email)
        return token

    async def reset_token_valid(self, token: str) -> bool:
        async with self._engine.connect() as conn:
            return await auth_repo.usable_token(conn, token_hash(token or ""), "reset", now_ms()) is not None

    async def reset_password(self, token: str, new: str, ip: str | None) -> None:
        """Sets the password and ends every session of the account."""
        check_password(new)
        hashed = await self._hash(new)
        now = now_ms()
        async with self._engine.begin() as conn:
            found = await auth_repo.usable_token(conn, token_hash(token or ""), "reset", now)
            if found is None or not await auth_repo.use_token(conn, token_hash(token), now):
                raise AuthError("This reset link is invalid, used or expired: ask for a new one.")
            principal = await _principal(conn, found["account_id"])
            await accounts_repo.set_password(conn, principal.id, hashed)
            await auth_repo.revoke_sessions_of(conn, principal.id)
            await audit.append(conn, Actor.of(principal, ip), audit.PASSWORD_RESET, target=principal.email)

    # ------------------------------------------------------------ OpenID Connect
    async def oidc_sign_in(self, issuer: str, claims: dict, ip: str | None, user_agent: str | None) -> OpenedSession:
        """Sign in the account linked to (issuer, sub); else link the account with the token's
        verified email; else create one when sign-up is open."""
        subject = str(claims.get("sub") or "")
        email = normal_email(str(claims.get("email") or ""))
        verified = claims.get("email_verified") in (True, "true")
        if not subject:
            raise AuthError("The identity provider sent no subject.")
        async with self._engine.begin() as conn:
            account_id = await auth_repo.identity_account(conn, issuer, subject)
            if account_id is None:
                if not email or not verified:
                    raise AuthError("The identity provider did not confirm a verified email address.")
                principal = await auth_repo.principal_by_email(conn, email)
                if principal is None:
                    if self.signup != "open":
                        raise AuthError("No account uses this email, and sign-up is not open: ask the operator.")
                    acct = await accounts_repo.create(conn, email, name=str(claims.get("name") or "")[:200])
                    principal = await _principal(conn, acct.id)
                    await audit.append(conn, Actor.of(principal, ip), audit.SIGNUP, target=email,
                                       detail={"mode": "oidc"})
                await auth_repo.link_identity(conn, issuer=issuer, subject=subject, account_id=principal.id,
                                              email=email)
                await audit.append(conn, Actor.of(principal, ip), audit.OIDC_LINKED, target=email,
                                   detail={"issuer": issuer})
            else:
                principal = await _principal(conn, account_id)
            if principal.disabled_at is not None:
                raise AuthError("This account is disabled. Ask the operator to enable it.")
            token, csrf = await self._open(conn, principal.id, ip, user_agent)
            await audit.append(conn, Actor.of(principal, ip), audit.SIGNIN, target=principal.email,
                               detail={"method": "oidc", "issuer": issuer})
        return OpenedSession(token, csrf, principal)

    async def set_timezone(self, principal: Principal, tz: str | None) -> None:
        async with self._engine.begin() as conn:
            await auth_repo.set_timezone(conn, principal.id, tz)

    # ------------------------------------------------------------ operator
    async def set_disabled(self, email: str, disabled: bool, actor: Actor) -> bool:
        """Disable (no sign-in; sessions end; keys refused within the key cache's 1 s) or enable."""
        async with self._engine.begin() as conn:
            principal = await auth_repo.principal_by_email(conn, normal_email(email))
            if principal is None:
                raise AuthError(f"no account with email {email}")
            await auth_repo.set_disabled(conn, principal.id, disabled)
            if disabled:
                await auth_repo.revoke_sessions_of(conn, principal.id)
            await audit.append(conn, actor, audit.ACCOUNT_DISABLED if disabled else audit.ACCOUNT_ENABLED,
                               target=principal.email)
        return True
