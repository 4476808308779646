"""Admin pages in-process: only admins see them (everyone else gets 404, for pages and forms);
a grant and a debit with a reason land in the ledger and the audit log with who, what, when
and the IP; a debit never takes more than is available; disabling an account ends its
sessions, refuses its sign-in and its keys at once; the catalog shows INR prices, provider
status the breakers and recent calls; the audit log pages and exports; admin keys are shown
once and revoked."""

from __future__ import annotations

import contextlib
import csv
import io
import re

import pytest

from tests.web.conftest import PASSWORD, client_for, csrf_of, signed_up
from tests.web.test_history_pages import call, grant, make_key

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = "boss@example.in"


async def sign_in(client, email: str, password: str = PASSWORD):
    page = await client.get("/dashboard/signin")
    return await client.post("/dashboard/signin", data={"csrf_token": csrf_of(page.text), "email": email,
                                                        "password": password, "next": ""})


@contextlib.asynccontextmanager
async def admin_client(gw, ip: str = "192.0.2.50"):
    """(a client signed in as an admin, its CSRF token)."""
    from aicredits.services.admin import Admin
    await Admin(gw.services.engine).create_user(ADMIN, password=PASSWORD, role="admin")
    async with client_for(gw, ip) as client:
        r = await sign_in(client, ADMIN)
        assert r.status_code == 303, r.text
        yield client, csrf_of((await client.get("/dashboard/admin/users")).text)


async def user_id_of(admin, email: str) -> int:
    page = await admin.get("/dashboard/admin/users", params={"q": email})
    return int(re.search(r'href="/dashboard/admin/users/(\d+)">' + re.escape(email), page.text).group(1))


ADMIN_GETS = ["/dashboard/admin/users", "/dashboard/admin/users/1", "/dashboard/admin/models",
              "/dashboard/admin/providers", "/dashboard/admin/audit", "/dashboard/admin/audit.csv",
              "/dashboard/admin/keys"]


async def test_only_admins_see_admin_pages(web_client):
    csrf = await signed_up(web_client, "plain@example.in")
    home = await web_client.get("/dashboard/")
    assert "/dashboard/admin/users" not in home.text
    for path in ADMIN_GETS:
        r = await web_client.get(path)
        assert r.status_code == 404, path
    for path in ["/dashboard/admin/users/1/credits", "/dashboard/admin/users/1/disable", "/dashboard/admin/keys"]:
        r = await web_client.post(path, data={"csrf_token": csrf, "kind": "grant", "amount": "5", "reason": "x",
                                              "name": "n"})
        assert r.status_code == 404, path


async def test_grant_and_debit_with_a_reason_are_in_the_ledger_and_the_audit_log(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as user:
        await signed_up(user, "ravi@example.in")
        async with admin_client(gw) as (admin, csrf):
            uid = await user_id_of(admin, "ravi@example.in")
            r = await admin.post(f"/dashboard/admin/users/{uid}/credits",
                                 data={"csrf_token": csrf, "kind": "grant", "amount": "1,250.50", "reason": "pilot"})
            assert r.status_code == 303
            page = await admin.get(f"/dashboard/admin/users/{uid}")
            assert "Granted INR 1,250.50" in page.text and "₹1,250.50" in page.text
            # more than is available: refused, nothing changes
            r = await admin.post(f"/dashboard/admin/users/{uid}/credits",
                                 data={"csrf_token": csrf, "kind": "debit", "amount": "1250.51", "reason": "oops"})
            assert r.status_code == 400 and "cannot take more than the available balance" in r.text
            r = await admin.post(f"/dashboard/admin/users/{uid}/credits",
                                 data={"csrf_token": csrf, "kind": "debit", "amount": "0.50", "reason": "correction"})
            assert r.status_code == 303
            for bad in ({"amount": "0", "reason": "x"}, {"amount": "abc", "reason": "x"},
                        {"amount": "5", "reason": " "}, {"amount": "1.0000001", "reason": "x"}):
                r = await admin.post(f"/dashboard/admin/users/{uid}/credits",
                                     data={"csrf_token": csrf, "kind": "grant", **bad})
                assert r.status_code == 400, bad
            r = await admin.post(f"/dashboard/admin/users/{uid}/credits",
                                 data={"kind": "grant", "amount": "5", "reason": "no csrf"})
            assert r.status_code == 403

            # the user sees both entries with their reasons; the balance is right to the paisa
            history = (await user.get("/dashboard/billing?view=entries")).text
            assert "pilot" in history and "correction" in history
            assert "₹1,250.00" in (await user.get("/dashboard/")).text

            audit = (await admin.get("/dashboard/admin/audit", params={"actor": ADMIN})).text
            assert "credits.granted" in audit and "credits.debited" in audit and "192.0.2.50" in audit
            assert "ravi@example.in" in audit and "pilot" in audit
            export = (await admin.get("/dashboard/admin/audit.csv", params={"action": "credits.debited"})).text
            rows = list(csv.DictReader(io.StringIO(export)))
            assert [r["action"] for r in rows] == ["credits.debited"]
            assert rows[0]["actor"] == ADMIN and rows[0]["ip"] == "192.0.2.50" and '"amount":500000' in rows[0]["detail"]
            only_granted = (await admin.get("/dashboard/admin/audit", params={"action": "credits.granted"})).text
            assert "credits.debited" not in only_granted.split("<tbody>")[1]
            assert (await admin.get("/dashboard/admin/audit", params={"action": "DROP TABLE"})).status_code == 400
            assert "No events match" in (await admin.get("/dashboard/admin/audit",
                                                          params={"action": "topup.refunded"})).text


async def test_a_disabled_account_cannot_sign_in_and_its_keys_stop_at_once(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as user:
        csrf = await signed_up(user, "gone@example.in")
        await grant(gw, "gone@example.in", "10")
        secret = await make_key(user, csrf)
        await call(user, secret)
        async with admin_client(gw) as (admin, admin_csrf):
            uid = await user_id_of(admin, "gone@example.in")
            r = await admin.post(f"/dashboard/admin/users/{uid}/disable", data={"csrf_token": admin_csrf})
            assert r.status_code == 303
            refused = await user.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                      json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]})
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
            # the session ended; signing in again is refused
            assert (await user.get("/dashboard/billing")).status_code == 303
            r = await sign_in(user, "gone@example.in")
            assert r.status_code in (400, 403) and "disabled" in r.text
            # admins cannot lock themselves out
            me = await user_id_of(admin, ADMIN)
            r = await admin.post(f"/dashboard/admin/users/{me}/disable", data={"csrf_token": admin_csrf})
            assert r.status_code == 400 and "your own account" in r.text
            # enabled again: the same key works
            r = await admin.post(f"/dashboard/admin/users/{uid}/enable", data={"csrf_token": admin_csrf})
            assert r.status_code == 303
            await call(user, secret)
            audit = (await admin.get("/dashboard/admin/audit")).text
            assert "account.disabled" in audit and "account.enabled" in audit
            assert (await admin.get("/dashboard/admin/users/999999")).status_code == 404


async def test_admin_revokes_a_users_key_and_manages_admin_keys(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as user:
        csrf = await signed_up(user, "k@example.in")
        await grant(gw, "k@example.in", "10")
        secret = await make_key(user, csrf, "phone")
        async with admin_client(gw) as (admin, admin_csrf):
            uid = await user_id_of(admin, "k@example.in")
            page = (await admin.get(f"/dashboard/admin/users/{uid}")).text
            key_id = re.search(rf'/dashboard/admin/users/{uid}/keys/([^/]+)/revoke', page).group(1)
            # the key id under another account's URL is not found
            me = await user_id_of(admin, ADMIN)
            r = await admin.post(f"/dashboard/admin/users/{me}/keys/{key_id}/revoke", data={"csrf_token": admin_csrf})
            assert r.status_code == 404
            r = await admin.post(f"/dashboard/admin/users/{uid}/keys/{key_id}/revoke", data={"csrf_token": admin_csrf})
            assert r.status_code == 303
            refused = await user.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                      json={"model": "demo/echo", "messages": [{"role": "user", "content": "x"}]})
            assert refused.status_code == 401

            r = await admin.post("/dashboard/admin/keys", data={"csrf_token": admin_csrf, "name": "provisioning"})
            assert r.status_code == 201
            admin_secret = re.search(r'value="(sk-admin-[0-9a-f]{64})"', r.text).group(1)
            listing = (await admin.get("/dashboard/admin/keys")).text
            assert admin_secret not in listing and "provisioning" in listing
            ok = await admin.get("/admin/api/users", headers={"authorization": f"Bearer {admin_secret}"})
            assert ok.status_code == 200
            admin_key_id = re.search(r'/dashboard/admin/keys/([^/]+)/revoke', listing).group(1)
            r = await admin.post(f"/dashboard/admin/keys/{admin_key_id}/revoke", data={"csrf_token": admin_csrf})
            assert r.status_code == 303
            gw.services.admin_api.state.services.keys.forget()      # this process's 1 s cache, as the next second would
            gone = await admin.get("/admin/api/users", headers={"authorization": f"Bearer {admin_secret}"})
            assert gone.status_code == 401


async def test_catalog_prices_and_provider_status(web_gateway):
    from fractions import Fraction

    from aicredits.domain.money import ceil_fraction
    gw = await web_gateway()
    async with client_for(gw) as user:
        csrf = await signed_up(user, "s@example.in")
        await grant(gw, "s@example.in", "10")
        await call(user, await make_key(user, csrf))
        async with admin_client(gw) as (admin, _):
            models = (await admin.get("/dashboard/admin/models")).text
            per_1m = ceil_fraction(Fraction("0.15") * gw.services.rates.usd_inr * (1 + gw.services.rates.markup) * 1_000_000)
            from aicredits.web.formatting import inr
            row = models.split("<strong>demo/echo</strong>")[1].split("</tr>")[0]
            assert inr(per_1m, exact=True) in row and "$0.150000" in row and "built-in" in row
            providers = (await admin.get("/dashboard/admin/providers")).text
            demo = providers.split("<strong>demo</strong>")[1].split("</tr>")[0]
            assert re.search(r'class="num">1</td>', demo)           # one call in the last hour
            assert "0.0 %" in demo and "closed" in demo
