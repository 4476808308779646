"""The keys pages, in process: create (secret once), list, revoke; another account's key ids
give 404 in every URL and form; revocation is immediate in this process; last use is shown."""

from __future__ import annotations

import html
import re

from tests.web.conftest import client_for, signed_up


async def create(client, csrf: str, **fields) -> tuple[str, str]:
    r = await client.post("/dashboard/keys", data={"csrf_token": csrf, "name": "k", **fields})
    assert r.status_code == 201, r.text
    secret = re.search(r'value="(sk-[0-9a-f]{64})"', r.text).group(1)
    key_id = re.findall(r'action="/dashboard/keys/(key_[0-9a-f]+)/revoke"', r.text)[0]
    return secret, key_id


async def test_the_secret_is_shown_once_and_never_again(web_client):
    csrf = await signed_up(web_client, "once@example.in")
    secret, key_id = await create(web_client, csrf, name="laptop", limit="1,23,456.78", rpm="60", tpm="")
    listing = await web_client.get("/dashboard/keys")
    assert secret not in listing.text and secret[-4:] in listing.text and "laptop" in listing.text
    assert "₹1,23,456.78" in listing.text
    keys = await web_client.gateway.services.web_context.keys.list(1)
    assert (keys[0].limit, keys[0].rpm, keys[0].tpm) == (123_456_780_000, 60, None)
    audit = await web_client.gateway.services.web_context.audit.recent(action="key.created")
    assert audit[0]["target"] == key_id and secret not in str(audit[0])


async def test_bad_fields_are_explained(web_client):
    csrf = await signed_up(web_client, "fields@example.in")
    for fields, message in (({"name": ""}, "name of 1 to 200"), ({"limit": "abc"}, "amount in rupees"),
                            ({"limit": "1.234"}, "2 decimal places"), ({"rpm": "-3"}, "whole number"),
                            ({"tpm": "0"}, "from 1 to")):
        r = await web_client.post("/dashboard/keys", data={"csrf_token": csrf, "name": "k", **fields})
        assert r.status_code == 400 and message in r.text, (fields, r.text[-600:])
    assert await web_client.gateway.services.web_context.keys.list(1) == []


async def test_another_accounts_key_is_404_everywhere(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as owner, client_for(gw) as other:
        owner_csrf = await signed_up(owner, "owner@example.in")
        secret, key_id = await create(owner, owner_csrf)
        other_csrf = await signed_up(other, "other@example.in")
        _, own_id = await create(other, other_csrf)
        attempts = [
            (f"/dashboard/keys/{key_id}/revoke", {"csrf_token": other_csrf}),
            (f"/dashboard/keys/{own_id}/revoke", {"csrf_token": other_csrf, "key_id": key_id}),
            ("/dashboard/keys/key_doesnotexist/revoke", {"csrf_token": other_csrf}),
        ]
        for path, form in attempts:
            r = await other.post(path, data=form)
            assert r.status_code == 404, path
            assert key_id not in r.text and "owner@example.in" not in r.text
        assert key_id not in (await other.get("/dashboard/keys")).text
        # the owner's key still works
        assert (await owner.get("/v1/credits", headers={"Authorization": f"Bearer {secret}"})).status_code == 200


async def test_revoke_is_immediate_in_this_process_and_last_use_is_shown(web_client):
    csrf = await signed_up(web_client, "revoke@example.in")
    from aicredits.services.admin import Admin
    await Admin(web_client.gateway.services.web_context.engine).grant("revoke@example.in", 5_000_000)
    secret, key_id = await create(web_client, csrf)
    auth = {"Authorization": f"Bearer {secret}"}
    assert "never" in (await web_client.get("/dashboard/keys")).text
    call = await web_client.post("/v1/chat/completions", headers=auth, json={
        "model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert call.status_code == 200, call.text
    listing = (await web_client.get("/dashboard/keys")).text
    assert "never" not in listing.split("<tbody>")[1]
    r = await web_client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert (await web_client.get("/v1/credits", headers=auth)).status_code == 401     # no 1 s wait here
    again = await web_client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert again.status_code == 303
    assert [e["action"] for e in await web_client.gateway.services.web_context.audit.recent()][:1] == ["key.revoked"]


async def test_signed_out_visitors_are_sent_to_sign_in(web_client):
    r = await web_client.get("/dashboard/keys")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/signin?next=/dashboard/keys"
    assert (await web_client.post("/dashboard/keys/key_x/revoke", data={})).status_code == 403


async def test_the_overview_shows_what_the_cache_saved(web_client):
    from sqlalchemy import insert

    from aicredits.store.tables import cache_savings
    await signed_up(web_client, "saver@example.in")
    page = await web_client.get("/dashboard/")
    assert "Saved by the cache" not in page.text
    async with web_client.gateway.services.web_context.engine.begin() as conn:
        await conn.execute(insert(cache_savings).values(account_id=1, hits=1234, prompt_tokens=100_000,
                                                        completion_tokens=23_456, saved=12_345_670_000,
                                                        updated_at=0))
    page = await web_client.get("/dashboard/")
    assert "Saved by the cache" in page.text and "₹12,345.67" in page.text
    assert "1,234 answers from the cache, 1,23,456 tokens not sent" in page.text


async def test_a_keys_expiry_and_models_are_listed(web_client):
    await signed_up(web_client, "scoped@example.in")
    from aicredits.services.admin import Admin
    await Admin(web_client.gateway.services.web_context.engine).create_key(
        "scoped@example.in", name="ci", expires_at=4_070_908_800_000, models=("openai/*", "demo/*"))
    row = (await web_client.get("/dashboard/keys")).text.split("<tbody>")[1]
    assert "Jan 2099" in row and "openai/*, demo/*" in row
    assert "no expiry" not in row


async def test_a_refused_call_is_in_the_request_log_with_its_status(web_client):
    """A call refused for its key's model list: a row with 403, `rejected` and no charge."""
    import asyncio

    await signed_up(web_client, "refused@example.in")
    from aicredits.services.admin import Admin
    made = await Admin(web_client.gateway.services.web_context.engine).create_key(
        "refused@example.in", name="narrow", credits=1_000_000, models=("demo/*",))
    call = await web_client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {made['key']}"},
                                 json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert call.status_code == 403
    for _ in range(50):   # written within 0.5 s
        page = (await web_client.get("/dashboard/usage/requests")).text
        if "rejected" in page:
            break
        await asyncio.sleep(0.1)
    rows = await Admin(web_client.gateway.services.web_context.engine).usage("refused@example.in", 10)
    assert [(r["status"], r["end_state"]) for r in rows] == [(403, "rejected")], page[-3000:]
    row = page.split("<tbody>")[1].split("</tr>")[0]
    assert "openai/gpt-4o-mini" in row and "403" in row and "rejected" in row and "not charged" in row


async def test_the_form_sets_an_expiry_and_a_model_list_that_are_enforced(web_client):
    import time

    csrf = await signed_up(web_client, "formscope@example.in")
    from aicredits.services.admin import Admin
    await Admin(web_client.gateway.services.web_context.engine).grant("formscope@example.in", 5_000_000)
    secret, key_id = await create(web_client, csrf, name="narrow", expires="30d", models=" demo/*, openai/gpt-4o* ")
    _, dated_id = await create(web_client, csrf, name="dated", expires_on="2099-01-01")
    keys = {k.id: k for k in await web_client.gateway.services.web_context.keys.list(1)}
    now = time.time() * 1000
    assert abs(keys[key_id].expires_at - (now + 30 * 86_400_000)) < 60_000
    assert keys[key_id].models == "demo/*,openai/gpt-4o*"
    assert (keys[dated_id].expires_at, keys[dated_id].models) == (4_070_908_800_000, None)
    audit = await web_client.gateway.services.web_context.audit.recent(action="key.created")
    assert {e["target"]: e["detail"]["models"] for e in audit}[key_id] == "demo/*,openai/gpt-4o*"
    auth = {"Authorization": f"Bearer {secret}"}
    ok = await web_client.post("/v1/chat/completions", headers=auth, json={
        "model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200, ok.text
    refused = await web_client.post("/v1/chat/completions", headers=auth, json={
        "model": "anthropic/claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 403, refused.text


async def test_a_bad_expiry_or_model_pattern_is_a_form_error(web_client):
    csrf = await signed_up(web_client, "badscope@example.in")
    for fields, message in (({"models": "openai/*, bad pattern"}, "'bad pattern' is not a model id"),
                            ({"models": "a$b"}, "is not a model id or glob pattern"),
                            ({"expires": "soon"}, "neither a duration"),
                            ({"expires_on": "2001-01-01"}, "is in the past"),
                            ({"expires_on": "31/12/2099"}, "neither a duration"),
                            ({"expires": "7d", "expires_on": "2099-01-01"}, "not both")):
        r = await web_client.post("/dashboard/keys", data={"csrf_token": csrf, "name": "k", **fields})
        assert r.status_code == 400 and message in html.unescape(r.text), (fields, r.text[-600:])
        if "models" in fields:      # what was typed is kept
            assert f'name="models" type="text" maxlength="2000" spellcheck="false" value="{fields["models"]}"' in r.text
    no_csrf = await web_client.post("/dashboard/keys", data={"name": "k", "models": "demo/*"})
    assert no_csrf.status_code == 403
    assert await web_client.gateway.services.web_context.keys.list(1) == []
