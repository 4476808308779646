"""The dashboard in a real browser (Debian's chromium through Playwright) against a real
gateway on a socket (served from a thread of the test process; accounts set up through the
services the CLI calls, in-process): sign-up, sign-in, keys used through the official openai SDK and revoked,
CSRF, isolation between accounts, sign-in throttling, OpenID Connect. The screenshots
docs/dashboard.md shows go to docs/img/ when
AICREDITS_TEST_SCREENSHOTS=docs."""

from __future__ import annotations

import re
import time
import uuid

import openai
import pytest
from playwright.sync_api import expect

from aicredits.domain.money import inr_to_micros
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.timeout(180)


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@example.in"


def sign_up(page, email: str, password: str = PASSWORD, name: str = "Asha Rao") -> None:
    page.goto("/dashboard/signup")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def sign_in(page, email: str, password: str = PASSWORD) -> int:
    page.goto("/dashboard/signin")
    return submit_sign_in(page, email, password)


def submit_sign_in(page, email: str, password: str) -> int:
    """Fill in and send the sign-in form of the page shown now (after a failed attempt: the form
    again, with its message), as a person trying again does; returns the status of the page the
    browser got back (waited for: the next checks read the new page, not the last one)."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation() as answer:
        page.get_by_role("button", name="Sign in", exact=True).click()
    return answer.value.status


def create_key(page, name: str, limit: str = "") -> str:
    page.goto("/dashboard/keys")
    page.get_by_label("Name").fill(name)
    if limit:
        page.get_by_label("Credit limit").fill(limit)
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Your new key").input_value()
    assert re.fullmatch(r"sk-[0-9a-f]{64}", secret)
    return secret


def test_sign_up_sign_in_create_key_call_it_revoke_it(page, dashboard, shot):
    email = unique_email("asha")
    sign_up(page, email)
    dashboard.admin(lambda a: a.grant(email, inr_to_micros("250"), note="admin grant"))

    # sign out, then back in
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.get_by_label("Email").fill(email)
    shot(page, "signin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("₹250.00").first).to_be_visible()

    secret = create_key(page, "laptop", limit="1,00,000")
    expect(page.get_by_text("this is the only time it is shown")).to_be_visible()
    expect(page.get_by_role("cell", name="₹1,00,000.00")).to_be_visible()
    shot(page, "key-created")

    client = openai.OpenAI(base_url=dashboard.v1, api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model="demo/echo", messages=[{"role": "user", "content": "namaste"}])
    assert answer.choices[0].message.content

    page.goto("/dashboard/keys")
    expect(page.get_by_role("cell", name=re.compile(r"\d+ \w+ \d{4}, \d\d:\d\d")).nth(1)).to_be_visible()
    shot(page, "keys")
    page.get_by_role("button", name="Revoke key laptop").click()
    expect(page.get_by_text("revoked: calls with it are refused within a second")).to_be_visible()
    revoked_at = time.monotonic()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo/echo", messages=[{"role": "user", "content": "again"}])
    assert time.monotonic() - revoked_at < 1.0

    page.goto("/dashboard/")
    shot(page, "overview")
    page.goto("/dashboard/account")
    shot(page, "account")


def test_a_form_without_its_csrf_token_is_refused(page, dashboard):
    sign_up(page, unique_email("csrf"))
    page.goto("/dashboard/keys")
    # the browser's own cookies, a form posted without the token
    response = page.request.post(dashboard.base_url + "/dashboard/keys", form={"name": "sneaky"})
    assert response.status == 403
    assert "expired or was sent from another site" in response.text()
    page.goto("/dashboard/keys")
    expect(page.get_by_text("No keys yet")).to_be_visible()


def test_another_accounts_key_id_gives_404(page, browser, dashboard):
    owner = browser.new_context(base_url=dashboard.base_url)
    owner_page = owner.new_page()
    sign_up(owner_page, unique_email("owner"))
    create_key(owner_page, "owner key")
    owner_page.goto("/dashboard/keys")
    action = owner_page.locator("form[action*='/revoke']").first.get_attribute("action")
    key_id = action.split("/")[-2]
    owner.close()

    sign_up(page, unique_email("intruder"))
    page.goto("/dashboard/keys")
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    by_url = page.request.post(dashboard.base_url + action, form={"csrf_token": csrf})
    assert by_url.status == 404
    assert "owner key" not in by_url.text()
    create_key(page, "mine")
    page.goto("/dashboard/keys")
    mine = page.locator("form[action*='/revoke']").first.get_attribute("action")
    by_form = page.request.post(dashboard.base_url + mine, form={"csrf_token": csrf, "key_id": key_id})
    assert by_form.status == 404
    owner_key = next(k for k in dashboard.admin(lambda a: a.list_keys()) if k["id"] == key_id)
    assert owner_key["revoked"] is False          # neither attempt touched it


def test_repeated_wrong_passwords_get_a_clear_throttle_message(page, dashboard, shot):
    email = unique_email("throttle")
    sign_up(page, email)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    for _ in range(5):                      # each attempt from the page the last one showed
        assert submit_sign_in(page, email, "not the password") == 400
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    assert submit_sign_in(page, email, PASSWORD) == 429     # even the right password waits now
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-in attempts")
    expect(page.get_by_role("alert")).to_contain_text("Try again in 15 minutes.")
    shot(page, "signin-throttled")
    # an email with no account is throttled the same way (no hint that it does not exist)
    ghost = unique_email("ghost")
    assert sign_in(page, ghost, "whatever it is") == 400
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    for _ in range(4):
        assert submit_sign_in(page, ghost, "whatever it is") == 400
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    assert submit_sign_in(page, ghost, "whatever it is") == 429
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-in attempts")


def test_sign_in_with_openid_connect(page, dashboard, fake_issuer, shot):
    fake_issuer.reset()
    fake_issuer.user = {"sub": "kc-" + uuid.uuid4().hex[:6], "email": unique_email("sso"), "email_verified": True,
                        "name": "Meera SSO"}
    page.goto("/dashboard/signin")
    page.get_by_role("button", name="Sign in with FakeID").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text(fake_issuer.user["email"])).to_be_visible()
    sent = fake_issuer.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256" and sent["nonce"]
    assert fake_issuer.token_requests[-1]["code_verifier"]

    # the same identity again: the linked account, not a new one
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with FakeID").click()
    expect(page.get_by_text(fake_issuer.user["email"])).to_be_visible()


def test_an_id_token_not_signed_by_the_issuers_keys_is_refused(page, dashboard, fake_issuer):
    fake_issuer.reset()
    fake_issuer.user = {"sub": "evil", "email": unique_email("forged"), "email_verified": True}
    fake_issuer.sign_with_stranger_key = True
    try:
        page.goto("/dashboard/signin")
        page.get_by_role("button", name="Sign in with FakeID").click()
        expect(page.get_by_role("alert")).to_have_text("Sign-in with FakeID failed; try again.")
        page.goto("/dashboard/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        fake_issuer.reset()
