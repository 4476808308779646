"""The admin API (/admin/api) in-process: admin API keys only (inference keys get 401 there,
admin keys get 401 on /v1, in the reference's error shape); a script provisions a user, a key
with limits and credits, reads the call back from usage and the ledger, debits, changes the
key's limits and revokes it, each step audited; ids of one user never reach another's data;
bad input is a 400, unknown ids a 404, never a 500; /openapi.json documents every route and the
answers match its schemas (api/admin_schemas.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aicredits.api import admin_schemas as schemas
from aicredits.api.admin_api import ROUTES
from aicredits.api.openapi import build
from tests.web.conftest import client_for, web_gateway  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = "ops@example.in"


async def setup(gw):
    """(admin key secret, an httpx client on the gateway)."""
    from aicredits.services.admin import Admin
    from aicredits.services.audit import Actor
    from aicredits.services.operator import Operator
    await Admin(gw.services.engine).create_user(ADMIN, password="long enough password", role="admin")
    secret, _ = await Operator(gw.services.engine).create_admin_key(Actor.system("test"), "script", owner_email=ADMIN)
    return secret, client_for(gw, "198.51.100.20")


def auth(secret: str) -> dict:
    return {"authorization": f"Bearer {secret}"}


def assert_error(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind and body["error"]["code"] == status
    return body["error"]


async def test_a_script_provisions_a_user_key_and_credits_and_reads_them_back(web_gateway):  # noqa: F811
    gw = await web_gateway()
    secret, client = await setup(gw)
    async with client:
        r = await client.post("/admin/api/users", headers=auth(secret),
                              json={"email": "Dev@Example.in", "name": "Dev", "credits": "100.25", "reason": "trial"})
        assert r.status_code == 201, r.text
        user = schemas.AdminUser.model_validate(r.json()).model_dump()     # the document's schema holds
        assert user["email"] == "dev@example.in" and user["balance"] == 100.25 and user["balance_micros"] == 100_250_000
        uid = user["id"]
        r = await client.post(f"/admin/api/users/{uid}/keys", headers=auth(secret),
                              json={"name": "ci", "limit": 50, "rpm": 60, "tpm": None})
        assert r.status_code == 201, r.text
        key = schemas.AdminKey.model_validate(r.json()).model_dump()
        assert key["key"].startswith("sk-") and key["limit"] == 50 and key["rpm"] == 60 and key["tpm"] is None
        listed = schemas.AdminKeyList.model_validate(
            (await client.get(f"/admin/api/users/{uid}/keys", headers=auth(secret))).json()).model_dump(
            exclude_none=True)
        assert [k["id"] for k in listed["data"]] == [key["id"]] and "key" not in listed["data"][0]

        call = await client.post("/v1/chat/completions", headers=auth(key["key"]),
                                 json={"model": "demo/echo", "messages": [{"role": "user", "content": "hello"}]})
        assert call.status_code == 200
        cost = Decimal(call.headers["x-aicredits-cost"])

        usage = schemas.AdminCallPage.model_validate(
            (await client.get(f"/admin/api/users/{uid}/usage", headers=auth(secret))).json()).model_dump()
        assert len(usage["data"]) == 1
        row = usage["data"][0]
        assert row["request_id"] == call.headers["x-request-id"] and row["model"] == "demo/echo"
        assert Decimal(row["cost_micros"]) / 1_000_000 == cost and row["ledger_entry_id"]
        ledger = schemas.AdminLedgerPage.model_validate(
            (await client.get(f"/admin/api/users/{uid}/ledger", headers=auth(secret))).json()).model_dump()
        assert [e["kind"] for e in ledger["data"]] == ["charge", "grant"]
        assert ledger["data"][0]["id"] == row["ledger_entry_id"]
        assert sum(e["amount_micros"] for e in ledger["data"]) == ledger["data"][0]["balance_after_micros"]
        assert ledger["data"][1]["note"] == "trial"
        daily = schemas.AdminUsageDays.model_validate(
            (await client.get(f"/admin/api/users/{uid}/usage/daily", headers=auth(secret))).json()).model_dump()
        assert sum(d["requests"] for d in daily["data"]) == 1 and daily["tz"] == "Asia/Kolkata"

        r = await client.post(f"/admin/api/users/{uid}/credits", headers=auth(secret),
                              json={"kind": "debit", "amount": 0.25, "reason": "rounding"})
        assert r.status_code == 201, r.text
        schemas.AdminCredits.model_validate(r.json())
        assert r.json()["entry"]["kind"] == "debit" and r.json()["entry"]["amount_micros"] == -250_000
        too_much = await client.post(f"/admin/api/users/{uid}/credits", headers=auth(secret),
                                     json={"kind": "debit", "amount": 1000, "reason": "x"})
        assert "available balance" in assert_error(too_much, 400, "invalid_request_error")["message"]

        r = await client.patch(f"/admin/api/keys/{key['id']}", headers=auth(secret), json={"limit": None, "rpm": 5})
        assert r.status_code == 200 and r.json()["limit"] is None and r.json()["rpm"] == 5
        schemas.AdminKey.model_validate(r.json())
        r = await client.post(f"/admin/api/keys/{key['id']}/revoke", headers=auth(secret))
        assert r.status_code == 200 and r.json()["revoked"] and r.json()["changed"]
        refused = await client.post("/v1/chat/completions", headers=auth(key["key"]),
                                    json={"model": "demo/echo", "messages": [{"role": "user", "content": "again"}]})
        assert_error(refused, 401, "authentication_error")

        r = await client.post(f"/admin/api/users/{uid}/disable", headers=auth(secret))
        assert r.status_code == 200 and r.json()["disabled"] is True
        found = schemas.AdminUserList.model_validate((await client.get(
            "/admin/api/users", headers=auth(secret), params={"q": "dev@"})).json()).model_dump()
        assert [u["id"] for u in found["data"]] == [uid] and found["data"][0]["disabled"]

        audit = schemas.AdminAuditPage.model_validate((await client.get(
            "/admin/api/audit", headers=auth(secret), params={"limit": 50})).json()).model_dump()
        actions = [a["action"] for a in audit["data"]]
        for action in ("user.created", "credits.granted", "key.created", "credits.debited", "key.limits",
                       "key.revoked", "account.disabled"):
            assert action in actions, action
        mine = next(a for a in audit["data"] if a["action"] == "credits.debited")
        assert mine["actor"].startswith(ADMIN + " (sk-admin-") and mine["ip"] == "198.51.100.20"
        assert mine["detail"]["reason"] == "rounding"
        # grants, the charge and the debit leave a ledger that `aicredits ledger verify` passes
        from aicredits.services.admin import Admin
        assert await Admin(gw.services.engine).verify() == []


async def test_each_endpoint_takes_only_its_own_kind_of_key(web_gateway):  # noqa: F811
    gw = await web_gateway()
    secret, client = await setup(gw)
    async with client:
        user = (await client.post("/admin/api/users", headers=auth(secret), json={"email": "u@example.in",
                                                                                  "credits": 5})).json()
        inference = (await client.post(f"/admin/api/users/{user['id']}/keys", headers=auth(secret),
                                       json={"name": "k"})).json()["key"]
        e = assert_error(await client.get("/admin/api/users", headers=auth(inference)), 401, "authentication_error")
        assert "Inference API keys are not accepted" in e["message"]
        e = assert_error(await client.get("/v1/credits", headers=auth(secret)), 401, "authentication_error")
        assert "Admin API keys are not accepted" in e["message"]
        e = assert_error(await client.post("/v1/chat/completions", headers=auth(secret),
                                           json={"model": "demo/echo", "messages": []}), 401, "authentication_error")
        for header in ({}, {"authorization": "Bearer"}, {"authorization": "Basic abc"},
                       {"authorization": "Bearer sk-admin-" + "0" * 64}, {"authorization": "Bearer sk-admin-xyz"}):
            assert_error(await client.get("/admin/api/users", headers=header), 401, "authentication_error")
        # an admin who is no longer an admin: the key stops (after the 1 s cache, dropped here)
        from sqlalchemy import update

        from aicredits.store.tables import accounts
        async with gw.services.engine.begin() as conn:
            await conn.execute(update(accounts).where(accounts.c.email == ADMIN).values(role="user"))
        gw.services.admin_api.state.services.keys.forget()
        assert_error(await client.get("/admin/api/users", headers=auth(secret)), 401, "authentication_error")


async def test_ids_of_one_user_never_reach_another_and_bad_input_is_400(web_gateway):  # noqa: F811
    gw = await web_gateway()
    secret, client = await setup(gw)
    async with client:
        a = (await client.post("/admin/api/users", headers=auth(secret), json={"email": "a@example.in",
                                                                               "credits": 10})).json()
        b = (await client.post("/admin/api/users", headers=auth(secret), json={"email": "b@example.in",
                                                                               "credits": 20})).json()
        b_key = (await client.post(f"/admin/api/users/{b['id']}/keys", headers=auth(secret),
                                   json={"name": "b"})).json()
        b_entry = (await client.get(f"/admin/api/users/{b['id']}/ledger", headers=auth(secret))).json()["data"][0]
        # b's cursor on a's ledger pages a's entries only; b's key as a's usage filter is not found
        page = (await client.get(f"/admin/api/users/{a['id']}/ledger", headers=auth(secret),
                                 params={"before": f"{b_entry['created_at'] + 10}.{b_entry['id'] + 1}"})).json()
        assert {e["user_id"] for e in page["data"]} == {a["id"]}
        assert_error(await client.get(f"/admin/api/users/{a['id']}/usage", headers=auth(secret),
                                      params={"key": b_key["id"]}), 404, "not_found_error")

        h = auth(secret)
        for method, path, body in [
            ("GET", "/admin/api/users/999999", None), ("GET", "/admin/api/users/abc", None),
            ("GET", "/admin/api/users/99999999999999999999/ledger", None),
            ("PATCH", "/admin/api/keys/key_nope", {"rpm": 1}), ("POST", "/admin/api/keys/key_nope/revoke", None),
            ("POST", "/admin/api/users/999999/credits", {"amount": 1, "reason": "x"}),
            ("GET", "/admin/api/nothing", None),
        ]:
            assert_error(await client.request(method, path, headers=h, json=body), 404, "not_found_error")
        uid = a["id"]
        for method, path, body in [
            ("POST", "/admin/api/users", {"email": "not-an-email"}), ("POST", "/admin/api/users", {"email": 5}),
            ("POST", "/admin/api/users", {"email": "a@example.in"}),
            ("POST", "/admin/api/users", {"email": "r@example.in", "role": "root"}),
            ("POST", "/admin/api/users", {"email": "c@example.in", "credits": "12e99"}),
            ("POST", "/admin/api/users", {"email": "c@example.in", "password": "short"}),
            ("POST", f"/admin/api/users/{uid}/credits", {"amount": -5, "reason": "x"}),
            ("POST", f"/admin/api/users/{uid}/credits", {"amount": "1e400", "reason": "x"}),
            ("POST", f"/admin/api/users/{uid}/credits", {"amount": 1.0000001, "reason": "x"}),
            ("POST", f"/admin/api/users/{uid}/credits", {"amount": 1, "reason": ""}),
            ("POST", f"/admin/api/users/{uid}/credits", {"amount": 1, "reason": "x", "kind": "topup"}),
            ("POST", f"/admin/api/users/{uid}/credits", [1, 2]),
            ("POST", f"/admin/api/users/{uid}/keys", {"name": ""}),
            ("POST", f"/admin/api/users/{uid}/keys", {"name": "x", "rpm": 0}),
            ("POST", f"/admin/api/users/{uid}/keys", {"name": "x", "rpm": True}),
            ("PATCH", f"/admin/api/keys/{b_key['id']}", {"color": "red"}),
            ("GET", f"/admin/api/users/{uid}/ledger?kind=bonus", None),
            ("GET", f"/admin/api/users/{uid}/ledger?before=x", None),
            ("GET", f"/admin/api/users/{uid}/ledger?limit=0", None),
            ("GET", f"/admin/api/users/{uid}/usage?status=weird", None),
            ("GET", f"/admin/api/users/{uid}/usage?from=2026-02-30", None),
            ("GET", f"/admin/api/users/{uid}/usage/daily?from=2020-01-01&to=2026-01-01", None),
            ("GET", f"/admin/api/users/{uid}/usage/daily?tz=Mars/Olympus", None),
            ("GET", "/admin/api/audit?action=Drop%20table", None),
        ]:
            assert_error(await client.request(method, path, headers=h, json=body), 400, "invalid_request_error")
        assert (await client.get("/admin/api/users", headers=h, params={"q": "c@example"})).json()["data"] == []
        r = await client.post(f"/admin/api/users/{uid}/credits", headers={**h, "content-type": "application/json"},
                              content=b"{not json")
        assert_error(r, 400, "invalid_request_error")
        not_allowed = await client.delete("/admin/api/users", headers=h)
        assert_error(not_allowed, 405, "invalid_request_error")
        assert set(not_allowed.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        assert (await client.head("/admin/api/users", headers=h)).status_code == 200


async def test_openapi_documents_every_admin_route():
    doc = build()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() if path.startswith("/admin/api")
                  for method in ops}
    served = {(r.path, m) for r in ROUTES for m in r.methods if m != "HEAD"}
    assert documented == served
    assert doc["components"]["securitySchemes"]["adminKey"]["bearerFormat"].startswith("sk-admin-")
    for path, method in documented:
        op = doc["paths"][path][method.lower()]
        assert op["security"] == [{"adminKey": []}], (path, method)
        assert "401" in op["responses"], (path, method)


async def test_patch_changes_and_clears_a_keys_expiry_and_models_and_every_gateway_obeys(web_gateway, tmp_path):  # noqa: F811
    """A PATCHed model list is enforced at once by the gateway that took it and within the key
    cache's 1 s by another gateway on the same database; the expiry is set, cleared, validated."""
    import asyncio
    import time

    gw = await web_gateway()
    other = await web_gateway(db_url=f"sqlite:///{tmp_path}/web-0.db")     # a second process, same DB
    secret, client = await setup(gw)
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    async with client, client_for(other) as elsewhere:
        h = auth(secret)
        uid = (await client.post("/admin/api/users", headers=h, json={
            "email": "scope@example.in", "credits": "10", "reason": "trial"})).json()["id"]
        made = (await client.post(f"/admin/api/users/{uid}/keys", headers=h, json={"name": "ci"})).json()
        key_h = auth(made["key"])
        for c in (client, elsewhere):       # both gateways have the key cached as allowed everything
            assert (await c.post("/v1/chat/completions", headers=key_h, json={"model": "demo/echo", **chat})
                    ).status_code == 200

        r = await client.patch(f"/admin/api/keys/{made['id']}", headers=h, json={"models": ["openai/*", "x/y?"]})
        assert r.status_code == 200, r.text
        assert schemas.AdminKey.model_validate(r.json()).models == ["openai/*", "x/y?"]
        here = await client.post("/v1/chat/completions", headers=key_h, json={"model": "demo/echo", **chat})
        assert_error(here, 403, "permission_error")                     # at once on this gateway
        started = time.monotonic()
        while True:
            there = await elsewhere.post("/v1/chat/completions", headers=key_h, json={"model": "demo/echo", **chat})
            if there.status_code == 403 or time.monotonic() - started > 1.5:
                break
            await asyncio.sleep(0.1)
        assert_error(there, 403, "permission_error")                    # within the cache's 1 s elsewhere

        r = await client.patch(f"/admin/api/keys/{made['id']}", headers=h, json={"models": None, "expires": "30d"})
        assert r.status_code == 200 and r.json()["models"] is None, r.text
        assert abs(r.json()["expires_at"] - (time.time() * 1000 + 30 * 86_400_000)) < 60_000
        assert (await client.post("/v1/chat/completions", headers=key_h, json={"model": "demo/echo", **chat})
                ).status_code == 200
        r = await client.patch(f"/admin/api/keys/{made['id']}", headers=h, json={"expires_at": None})
        assert r.status_code == 200 and r.json()["expires_at"] is None and r.json()["models"] is None

        soon = int(time.time() * 1000) + 600
        r = await client.patch(f"/admin/api/keys/{made['id']}", headers=h, json={"expires_at": soon})
        assert r.status_code == 200 and r.json()["expires_at"] == soon
        await asyncio.sleep(0.7)
        expired = await client.post("/v1/chat/completions", headers=key_h, json={"model": "demo/echo", **chat})
        assert "expired" in assert_error(expired, 401, "authentication_error")["message"]

        past = int(time.time() * 1000) - 1000
        for body, param in [({"models": ["bad pattern"]}, "models"), ({"models": "openai/*"}, "models"),
                            ({"models": ["a,b"]}, "models"), ({"expires": "soon"}, "expires"),
                            ({"expires": "2001-01-01"}, "expires"), ({"expires": 30}, "expires"),
                            ({"expires_at": past}, "expires_at"), ({"expires_at": "2099-01-01"}, "expires_at"),
                            ({"expires_at": True}, "expires_at"), ({"expires_at": 10**20}, "expires_at"),
                            ({"expires": "30d", "expires_at": None}, "expires")]:
            err = assert_error(await client.patch(f"/admin/api/keys/{made['id']}", headers=h, json=body),
                               400, "invalid_request_error")
            assert err["param"] == param, (body, err)
        assert (await client.get(f"/admin/api/users/{uid}/keys", headers=h)).json()["data"][0]["expires_at"] == soon

        audit = (await client.get("/admin/api/audit", headers=h, params={"action": "key.limits"})).json()["data"]
        details = [a["detail"] for a in reversed(audit) if a["target"] == made["id"]]
        assert details == [{"models": "openai/*,x/y?"}, {"models": None, "expires_at": details[1]["expires_at"]},
                           {"expires_at": None}, {"expires_at": soon}]
        assert all(a["actor"].startswith(ADMIN + " (sk-admin-") for a in audit)
