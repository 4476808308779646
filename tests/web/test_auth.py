"""Signing in to the dashboard, in process: sessions, cookies, CSRF, security headers,
throttling without user enumeration, sign-up modes, password change and reset (with a real
SMTP server), disabled accounts."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.web.conftest import PASSWORD, client_for, csrf_of, signed_up


async def session_rows(url: str, ended: bool = False) -> int:
    """Rows of web_sessions (ended: only those past their expiry)."""
    from sqlalchemy import text

    from aicredits.store.db import make_engine
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM web_sessions"
                                           + (" WHERE expires_at < :now" if ended else "")),
                                      {"now": int(time.time() * 1000)})).scalar_one()
    finally:
        await engine.dispose()


async def stored_hash(url: str, email: str) -> str:
    from sqlalchemy import text

    from aicredits.store.db import make_engine
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT password_hash FROM accounts WHERE email = :e"),
                                       {"e": email})).scalar_one()
    finally:
        await engine.dispose()


async def sign_in(client, email: str, password: str = PASSWORD, next_: str = ""):
    page = await client.get("/dashboard/signin")
    return await client.post("/dashboard/signin", data={"csrf_token": csrf_of(page.text), "email": email,
                                                        "password": password, "next": next_})


async def test_pages_carry_the_security_headers_and_cookies_are_httponly_lax(web_client):
    r = await web_client.get("/dashboard/signin")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie          # plain http on 127.0.0.1
    css = await web_client.get("/dashboard/static/app.css")
    assert css.status_code == 200 and css.headers["x-content-type-options"] == "nosniff"


async def test_cookies_are_secure_behind_https(web_gateway):
    gw = await web_gateway({"AICREDITS_PUBLIC_URL": "https://credits.example.in"})
    async with client_for(gw, base_url="https://credits.example.in") as client:
        page = await client.get("/dashboard/signup")
        assert "Secure" in page.headers["set-cookie"]                       # the anonymous CSRF cookie
        r = await client.post("/dashboard/signup", data={"csrf_token": csrf_of(page.text), "email": "s@example.in",
                                                         "password": PASSWORD})
        assert r.status_code == 303
        assert all(x in r.headers["set-cookie"] for x in ("aic_session=", "Secure", "HttpOnly", "SameSite=lax"))


async def test_the_api_pays_nothing_and_other_paths_stay_json(web_client):
    miss = await web_client.get("/dashboardx")
    assert miss.status_code == 404 and miss.json()["error"]["type"] == "not_found_error"
    root = await web_client.get("/")
    assert root.status_code == 302 and root.headers["location"] == "/dashboard/"
    assert (await web_client.get("/health")).status_code == 200


async def test_forms_without_or_with_a_wrong_csrf_token_are_refused(web_client):
    page = await web_client.get("/dashboard/signin")
    for data in ({"email": "a@b.in", "password": "x"}, {"csrf_token": "forged", "email": "a@b.in", "password": "x"}):
        r = await web_client.post("/dashboard/signin", data=data)
        assert r.status_code == 403 and "expired or was sent from another site" in r.text
    csrf = await signed_up(web_client, "csrf@example.in")
    assert csrf != csrf_of(page.text)                    # a signed-in session has its own token
    r = await web_client.post("/dashboard/keys", data={"csrf_token": csrf_of(page.text), "name": "x"})
    assert r.status_code == 403
    assert (await web_client.post("/dashboard/keys", data={"name": "x"})).status_code == 403


async def test_wrong_password_and_unknown_email_read_the_same(web_client):
    await signed_up(web_client, "known@example.in")
    web_client.cookies.clear()
    known = await sign_in(web_client, "known@example.in", "wrong password!")
    unknown = await sign_in(web_client, "nobody@example.in", "wrong password!")
    assert known.status_code == unknown.status_code == 400
    strip = lambda html: re.sub(r'value="[^"]*"', "", html)   # the email typed and the token differ
    assert strip(known.text) == strip(unknown.text)


async def test_sign_in_is_throttled_per_account_and_per_ip(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as client:
        await signed_up(client, "target@example.in")
    async with client_for(gw, ip="198.51.100.1") as a, client_for(gw, ip="198.51.100.2") as b:
        for _ in range(5):
            assert (await sign_in(a, "target@example.in", "guess guess")).status_code == 400
        throttled = await sign_in(b, "target@example.in", PASSWORD)    # per account: any IP
        assert throttled.status_code == 429 and "Try again in 15 minutes" in throttled.text
        assert int(throttled.headers["retry-after"]) > 800
    async with client_for(gw, ip="198.51.100.9") as spray:                # per IP: any email
        for i in range(20):
            assert (await sign_in(spray, f"user{i}@example.in", "guess guess")).status_code == 400
        assert (await sign_in(spray, "fresh@example.in", "guess guess")).status_code == 429
    failures = await gw.services.web_context.audit.recent(action="signin.failed", limit=100)
    assert len(failures) == 25 and failures[-1]["ip"] == "198.51.100.1"


async def test_sign_out_ends_the_session_server_side(web_client):
    await signed_up(web_client, "out@example.in")
    cookie = web_client.cookies.get("aic_session")
    page = await web_client.get("/dashboard/")
    r = await web_client.post("/dashboard/signout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    web_client.cookies.set("aic_session", cookie, path="/dashboard")      # replay the old cookie
    assert (await web_client.get("/dashboard/keys")).status_code == 303


async def test_sessions_expire(web_gateway):
    gw = await web_gateway({"AICREDITS_SESSION_HOURS": "0.0003"})       # about a second
    async with client_for(gw) as client:
        await signed_up(client, "brief@example.in")
        assert (await client.get("/dashboard/keys")).status_code == 200
        await asyncio.sleep(1.3)
        r = await client.get("/dashboard/keys")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/signin?next=/dashboard/keys"
        # the ended session is deleted when the next one opens: the table keeps only live sessions
        url = gw.services.settings.database_url
        assert await session_rows(url, ended=True) == 1
        assert (await sign_in(client, "brief@example.in")).status_code == 303
        assert await session_rows(url, ended=True) == 0 and await session_rows(url) >= 1


async def test_next_goes_back_to_a_dashboard_page_only(web_client):
    await signed_up(web_client, "next@example.in")
    web_client.cookies.delete("aic_session", path="/dashboard")
    r = await sign_in(web_client, "next@example.in", next_="/dashboard/keys")
    assert r.headers["location"] == "/dashboard/keys"
    for evil in ("https://evil.example/", "//evil.example/dashboard"):
        web_client.cookies.delete("aic_session", path="/dashboard")
        assert (await sign_in(web_client, "next@example.in", next_=evil)).headers["location"] == "/dashboard/"


@pytest.mark.parametrize("mode", ["closed", "invite"])
async def test_sign_up_modes(web_gateway, mode):
    gw = await web_gateway({"AICREDITS_SIGNUP": mode})
    async with client_for(gw) as client:
        page = await client.get("/dashboard/signup")
        assert "form" not in page.text.split("<main")[1].split("</main>")[0].replace("<form class", "")
        r = await client.post("/dashboard/signup", data={"csrf_token": csrf_of((await client.get(
            "/dashboard/signin")).text), "email": "x@example.in", "password": PASSWORD})
        assert r.status_code == 400
        if mode == "invite":
            from aicredits.services.audit import Actor
            token = await gw.services.web_context.auth.invite("x@example.in", Actor.system("test"))
            page = await client.get(f"/dashboard/signup?invite={token}&email=x@example.in")
            form = {"csrf_token": csrf_of(page.text), "invite": token, "password": PASSWORD}
            wrong = await client.post("/dashboard/signup", data={**form, "email": "other@example.in"})
            assert wrong.status_code == 400 and "invitation" in wrong.text
            ok = await client.post("/dashboard/signup", data={**form, "email": "x@example.in"})
            assert ok.status_code == 303
            client.cookies.clear()
            page = await client.get("/dashboard/signin")
            again = await client.post("/dashboard/signup", data={**form, "csrf_token": csrf_of(page.text),
                                                                  "email": "x@example.in"})
            assert again.status_code == 400 and "needs an invitation" in again.text   # one use


async def test_sign_up_refuses_a_taken_email_and_short_passwords(web_client):
    await signed_up(web_client, "taken@example.in")
    # stored as argon2id at the library's own parameters (RFC 9106's low-memory profile)
    from argon2 import PasswordHasher, Type, extract_parameters, profiles
    stored = extract_parameters(await stored_hash(web_client.gateway.services.settings.database_url, "taken@example.in"))
    assert stored == PasswordHasher()._parameters == profiles.RFC_9106_LOW_MEMORY and stored.type is Type.ID
    web_client.cookies.clear()
    page = await web_client.get("/dashboard/signup")
    form = {"csrf_token": csrf_of(page.text), "email": "TAKEN@example.in", "password": PASSWORD}
    assert "exists already" in (await web_client.post("/dashboard/signup", data=form)).text
    short = await web_client.post("/dashboard/signup", data={**form, "email": "new@example.in", "password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text


async def test_change_password_ends_the_other_sessions(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as laptop, client_for(gw) as phone:
        csrf = await signed_up(laptop, "change@example.in")
        assert (await sign_in(phone, "change@example.in")).status_code == 303
        bad = await laptop.post("/dashboard/account/password", data={
            "csrf_token": csrf, "current_password": "not it at all", "new_password": "a new password 1",
            "new_password_again": "a new password 1"})
        assert bad.status_code == 400 and "current password is wrong" in bad.text
        ok = await laptop.post("/dashboard/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD, "new_password": "a new password 1",
            "new_password_again": "a new password 1"})
        assert ok.status_code == 303
        assert (await laptop.get("/dashboard/account")).status_code == 200
        assert (await phone.get("/dashboard/account")).status_code == 303
    async with client_for(gw) as fresh:
        assert (await sign_in(fresh, "change@example.in", "a new password 1")).status_code == 303
    actions = [e["action"] for e in await gw.services.web_context.audit.recent()]
    assert "password.changed" in actions


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    from tests.conftest import free_port
    controller = Controller(Keep(), hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.received = received
    yield controller
    controller.stop()


async def test_password_reset_by_mail(web_gateway, smtp_server):
    gw = await web_gateway({"AICREDITS_SMTP_HOST": "127.0.0.1", "AICREDITS_SMTP_PORT": str(smtp_server.port),
                            "AICREDITS_SMTP_TLS": "none", "AICREDITS_SMTP_FROM": "credits@example.in",
                            "AICREDITS_PUBLIC_URL": "https://credits.example.in"})
    async with client_for(gw, base_url="https://credits.example.in") as client:
        await signed_up(client, "forgot@example.in")
        client.cookies.clear()
        page = await client.get("/dashboard/reset")
        for email in ("forgot@example.in", "nobody@example.in"):
            r = await client.post("/dashboard/reset", data={"csrf_token": csrf_of(page.text), "email": email})
            assert "If an account uses that address" in r.text
        for _ in range(50):
            if smtp_server.received:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert len(smtp_server.received) == 1                           # none for the unknown address
        mail = smtp_server.received[0]
        assert mail["To"] == "forgot@example.in" and mail["From"] == "credits@example.in"
        link = re.search(r"https://credits\.example\.in(/dashboard/reset/new\?token=\S+)", mail.get_payload(decode=True).decode()).group(1)
        form_page = await client.get(link)
        assert form_page.status_code == 200
        token = link.split("token=")[1]
        data = {"csrf_token": csrf_of(form_page.text), "token": token, "new_password": "brand new secret",
                "new_password_again": "brand new secret"}
        assert (await client.post("/dashboard/reset/new", data=data)).status_code == 303
        assert (await client.post("/dashboard/reset/new", data=data)).status_code == 400      # one use
        assert (await sign_in(client, "forgot@example.in", "brand new secret")).status_code == 303


async def test_without_smtp_the_reset_page_points_to_the_cli(web_client):
    r = await web_client.get("/dashboard/reset")
    assert "aicredits users reset-link" in r.text


async def test_a_disabled_user_cannot_sign_in_and_their_keys_stop_within_a_second(web_gateway):
    from aicredits.services.audit import Actor

    gw = await web_gateway()
    async with client_for(gw) as client:
        csrf = await signed_up(client, "gone@example.in")
        created = await client.post("/dashboard/keys", data={"csrf_token": csrf, "name": "k"})
        secret = re.search(r'value="(sk-[0-9a-f]{64})"', created.text).group(1)
        auth = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/v1/credits", headers=auth)).status_code == 200     # cached now
        await gw.services.web_context.auth.set_disabled("gone@example.in", True, Actor.system("test"))
        await asyncio.sleep(1.05)
        assert (await client.get("/v1/credits", headers=auth)).status_code == 401
        assert (await client.get("/dashboard/keys")).status_code == 303                 # session ended
        r = await sign_in(client, "gone@example.in")
        assert r.status_code == 400 and "disabled" in r.text
        await gw.services.web_context.auth.set_disabled("gone@example.in", False, Actor.system("test"))
        await asyncio.sleep(1.05)
        assert (await client.get("/v1/credits", headers=auth)).status_code == 200
