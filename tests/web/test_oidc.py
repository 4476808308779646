"""OpenID Connect sign-in, in process, against the fake issuer (a real HTTP server signing
real ID tokens): linking by verified email, refusals, and what the flow sends."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.oidc_issuer import CLIENT_ID, CLIENT_SECRET, FakeIssuer
from tests.web.conftest import client_for, csrf_of, signed_up


@pytest.fixture
def issuer(fake_issuer):
    """The session's fake issuer (its RSA keys made and its server started once), back to its
    default user and keys before and after each test."""
    fake_issuer.reset()
    yield fake_issuer
    fake_issuer.reset()


def oidc_env(fake: FakeIssuer, **extra) -> dict:
    return {"AICREDITS_OIDC_ISSUER": fake.url, "AICREDITS_OIDC_CLIENT_ID": CLIENT_ID,
            "AICREDITS_OIDC_CLIENT_SECRET": CLIENT_SECRET, "AICREDITS_OIDC_NAME": "FakeID", **extra}


async def provider_round_trip(client: httpx.AsyncClient) -> httpx.Response:
    """Press the button, let the provider consent, come back: the callback's response."""
    page = await client.get("/dashboard/signin")
    start = await client.post("/dashboard/oidc/start", data={"csrf_token": csrf_of(page.text)})
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as outside:
        consent = await outside.get(start.headers["location"])
    assert consent.status_code == 302, consent.text
    back = httpx.URL(consent.headers["location"])
    return await client.get(back.raw_path.decode())


async def test_a_new_verified_email_gets_an_account_and_the_next_sign_in_finds_it(web_gateway, issuer):
    gw = await web_gateway(oidc_env(issuer))
    async with client_for(gw) as client:
        r = await provider_round_trip(client)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
        home = await client.get("/dashboard/")
        assert "oidc.user@example.com" in home.text
    issuer.user = {**issuer.user, "email": "changed@example.com"}     # same subject, new email
    async with client_for(gw) as client:
        assert (await provider_round_trip(client)).status_code == 303
        assert "oidc.user@example.com" in (await client.get("/dashboard/")).text
    events = [e["action"] for e in await gw.services.web_context.audit.recent()]
    assert events.count("signin") == 2 and events.count("oidc.linked") == 1 and "signup" in events


async def test_an_existing_account_is_linked_by_its_verified_email(web_gateway, issuer):
    gw = await web_gateway(oidc_env(issuer))
    async with client_for(gw) as client:
        await signed_up(client, "oidc.user@example.com")
    async with client_for(gw) as client:
        assert (await provider_round_trip(client)).status_code == 303
        page = await client.get("/dashboard/account")
        assert "oidc.user@example.com" in page.text


@pytest.mark.parametrize("change, message", [
    ({"email_verified": False}, "did not confirm a verified email"),
    ({"sign_with_stranger_key": True}, "Sign-in with FakeID failed"),
])
async def test_refused(web_gateway, issuer, change, message):
    gw = await web_gateway(oidc_env(issuer))
    if "sign_with_stranger_key" in change:
        issuer.sign_with_stranger_key = True
    else:
        issuer.user = {**issuer.user, **change}
    async with client_for(gw) as client:
        r = await provider_round_trip(client)
        assert r.status_code == 400 and message in r.text
        assert (await client.get("/dashboard/")).status_code == 303       # not signed in


async def test_closed_sign_up_does_not_create_accounts_through_the_provider(web_gateway, issuer):
    gw = await web_gateway(oidc_env(issuer, AICREDITS_SIGNUP="closed"))
    async with client_for(gw) as client:
        r = await provider_round_trip(client)
        assert r.status_code == 400 and "sign-up is not open" in r.text


async def test_a_callback_without_the_flow_that_started_it_is_refused(web_gateway, issuer):
    gw = await web_gateway(oidc_env(issuer))
    async with client_for(gw) as victim, client_for(gw) as attacker:
        page = await attacker.get("/dashboard/signin")
        start = await attacker.post("/dashboard/oidc/start", data={"csrf_token": csrf_of(page.text)})
        async with httpx.AsyncClient() as outside:
            back = httpx.URL((await outside.get(start.headers["location"])).headers["location"])
        # the attacker's code and state, replayed in the victim's browser (login CSRF)
        r = await victim.get(back.raw_path.decode())
        assert r.status_code == 400
        assert (await victim.get("/dashboard/")).status_code == 303


async def test_the_start_button_needs_its_csrf_token_and_csp_allows_the_provider(web_gateway, issuer):
    gw = await web_gateway(oidc_env(issuer))
    async with client_for(gw) as client:
        page = await client.get("/dashboard/signin")
        assert f"form-action 'self' {issuer.url.rsplit('/', 1)[0]}" in page.headers["content-security-policy"]
        assert (await client.post("/dashboard/oidc/start", data={})).status_code == 403


async def test_a_provider_that_does_not_answer_gets_a_clear_page_not_a_server_error(web_gateway, issuer):
    from tests.conftest import free_port
    gw = await web_gateway(oidc_env(issuer, AICREDITS_OIDC_ISSUER=f"http://127.0.0.1:{free_port()}/issuer"))
    async with client_for(gw) as client:
        page = await client.get("/dashboard/signin")
        r = await client.post("/dashboard/oidc/start", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 400 and "FakeID is not answering" in r.text
        assert (await client.get("/dashboard/")).status_code == 303       # not signed in
