"""What OpenAI clients rely on (issue 13, points 6-11): GET /v1/models/{id}, the `model` of every
answer, the 402's "would fit" agreeing with what is accepted, the x-ratelimit-* headers, keys with
an expiry and a model allow-list, and refused calls in `usage`. In process (httpx.ASGITransport),
the official `openai` SDK where the point is the SDK's behaviour, and one served gateway for
`client.models.retrieve` over a real socket."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from aicredits.domain.keys import expiry_text, parse_expiry, parse_model_patterns
from aicredits.domain.ratelimit import duration_text
from aicredits.services.rejected import FLUSH_SECONDS
from tests.inproc import running, sse_data


@pytest.fixture
def db_url(migrated_db_url):
    """SQLite and PostgreSQL with the schema at head already (a copy of the suite's migrated
    template): these tests are of what runs on the schema, not of the migrations."""
    return migrated_db_url


HI = [{"role": "user", "content": "hi"}]
RATE_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


def sdk(g, key: dict) -> openai.AsyncOpenAI:
    """The official SDK, talking to the in-process gateway."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=g.gw), base_url="http://gateway.test")
    return openai.AsyncOpenAI(api_key=key["key"], base_url="http://gateway.test/v1", http_client=http,
                              max_retries=0)


def assert_error(r: httpx.Response, status: int, kind: str) -> str:
    """The reference's error shape; its message."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert {"message", "type", "code"} <= set(err) <= {"message", "type", "code", "param"}
    assert (err["type"], err["code"]) == (kind, status)
    return err["message"]


async def key_with(g, credits: int = 100_000_000, **fields) -> dict:
    email = f"conv-{uuid.uuid4().hex[:10]}@example.com"
    out = await g.admin.create_key(email, name="test", credits=credits, **fields)
    return {**out, "email": email, "headers": {"Authorization": f"Bearer {out['key']}"}}


async def rows_of(g, key: dict, n: int) -> list[dict]:
    """The key's usage rows once there are `n` (refused calls are written within FLUSH_SECONDS)."""
    deadline = time.monotonic() + 10 * FLUSH_SECONDS + 5
    while True:
        rows = await g.usage(key)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(FLUSH_SECONDS / 2)


# ---------------------------------------------------------------- 6. GET /v1/models/{id}
async def test_every_listed_model_is_retrieved_by_its_id_with_the_sdk_and_an_unknown_one_is_404(upstream,
                                                                                               tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        key = await g.new_key(1_000_000)
        client = sdk(g, key)
        listed = [m async for m in client.models.list()]
        ids = [m.id for m in listed]
        assert "openai/gpt-4o-mini" in ids and "demo/echo" in ids
        for m in listed:   # ids with a slash included
            got = await client.models.retrieve(m.id)
            assert (got.id, got.object, got.owned_by, got.created) == (m.id, "model", m.owned_by, m.created)
        r = await g.client.get("/v1/models/openai/gpt-4o-mini", headers=key["headers"])
        assert r.json() == {"id": "openai/gpt-4o-mini", "object": "model", "created": r.json()["created"],
                            "owned_by": "openai"}
        assert r.headers["x-request-id"]
        with pytest.raises(openai.NotFoundError) as nf:
            await client.models.retrieve("openai/no-such-model")
        assert nf.value.body["type"] == "not_found_error"
        for path in ("/v1/models/openai/no-such-model", "/v1/models/gpt-4o-mini"):   # the upstream's own id: not ours
            assert "does not exist" in assert_error(await g.client.get(path, headers=key["headers"]),
                                                    404, "not_found_error")
        assert_error(await g.client.get("/v1/models/demo/echo"), 401, "authentication_error")
        r = await g.client.post("/v1/models/demo/echo", headers=key["headers"])
        assert_error(r, 405, "invalid_request_error")
        assert r.headers["allow"] == "GET"


def test_the_sdk_retrieves_a_slashed_model_id_from_a_served_gateway(gateway):
    """Over a real socket (uvicorn): the SDK's path with a slash in the id reaches the route."""
    key = gateway.create_key(credits="1")
    client = openai.OpenAI(api_key=key["key"], base_url=gateway.v1, max_retries=0)
    got = client.models.retrieve("openai/gpt-4o-mini")
    assert (got.id, got.owned_by) == ("openai/gpt-4o-mini", "openai")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openai/no-such-model")


# ---------------------------------------------------------------- 7. the model of every answer
async def test_every_answer_names_the_model_id_the_client_asked_for(upstream, tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        key = await g.new_key(100_000_000)
        client = sdk(g, key)
        for model in ("demo/echo", "openai/gpt-4o-mini"):
            done = await client.chat.completions.create(model=model, messages=HI)
            assert done.model == model
            chunks = [c async for c in await client.chat.completions.create(
                model=model, messages=HI, stream=True, stream_options={"include_usage": True})]
            assert chunks and {c.model for c in chunks} == {model}
            resp = await client.responses.create(model=model, input="hi")
            assert resp.model == model
            events = [e async for e in await client.responses.create(model=model, input="hi", stream=True)]
            assert {e.response.model for e in events if hasattr(e, "response")} == {model}
        emb = await client.embeddings.create(model="openai/text-embedding-3-small", input="hello")
        assert emb.model == "openai/text-embedding-3-small"
        # the upstream's own name stays in the usage record (provider:upstream id)
        by_model = {}
        for row in await g.usage(key):
            by_model.setdefault(row["model"], set()).add(row["deployment"])
        assert by_model["demo/echo"] == {"demo:echo"}
        assert by_model["openai/gpt-4o-mini"] == {"openai:gpt-4o-mini"}
        assert by_model["openai/text-embedding-3-small"] == {"openai:text-embedding-3-small"}
        assert await g.admin.verify() == []


# ---------------------------------------------------------------- 8. the 402 and what it says fits
async def test_what_the_402_says_fits_is_exactly_what_is_accepted(upstream, tmp_path):
    """The reproduction: a 402 said "max_tokens <= 4096 would fit" (demo/echo's cap) and a call
    with max_tokens 16,000 then succeeded on the same wallet, because the message capped the
    value at the model's max_output_tokens and the hold did not. A value above the cap is now
    held, and sent upstream, as the cap."""
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        cap = g.gw.services.catalog.get("demo/echo").max_output_tokens
        assert cap == 4096
        rich = await g.new_key(1_000_000)   # 1 INR: more than 16,000 output tokens of demo/echo
        poor = await g.new_key(60_000)      # about a thousand
        for key in (rich, poor):
            for asked in (16_000, 100_000):
                r = await g.client.post("/v1/chat/completions", headers=key["headers"], json={
                    "model": "demo/echo", "messages": HI, "max_tokens": asked})
                if key is rich:
                    assert r.status_code == 200, r.text
                    continue
                message = assert_error(r, 402, "insufficient_credits")
                assert f"max_tokens={asked} (the model writes at most {cap})" in message
                fit = int(re.search(r"max_tokens <= (\d+) would fit", message).group(1))
                assert 1 <= fit < cap
        # docs/billing.md ("The 402 messages") quotes these two answers word for word
        doc = " ".join((Path(__file__).parents[2] / "docs" / "billing.md").read_text().split())
        for asked in (4000, 16_000):
            r = await g.client.post("/v1/chat/completions", headers=poor["headers"], json={
                "model": "demo/echo", "messages": HI, "max_tokens": asked})
            assert assert_error(r, 402, "insufficient_credits") in doc
        for asked, status in ((fit, 200), (fit + 1, 402), (cap, 402), (16_000, 402)):
            r = await g.client.post("/v1/chat/completions", headers=poor["headers"], json={
                "model": "demo/echo", "messages": HI, "max_tokens": asked})
            assert r.status_code == status, (asked, r.text)
        # the rich wallet's 16,000 was held as the cap: what reaches the upstream is the cap too
        upstream.reset()
        r = await g.client.post("/v1/chat/completions", headers=rich["headers"], json={
            "model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 100_000})
        assert r.status_code == 200, r.text
        (sent,) = upstream.chat_requests()
        assert sent.body["max_completion_tokens"] == 16384 and "max_tokens" not in sent.body
        (row,) = [x for x in await g.usage(rich) if x["model"] == "openai/gpt-4o-mini"]
        entry = {e["id"]: e for e in (await g.client.get("/api/models")).json()["data"]}["openai/gpt-4o-mini"]
        assert row["hold"] < 16385 * entry["output_cost_per_1m"] * 83.5 * 1.15 + 10_000
        assert await g.admin.verify() == []


# ---------------------------------------------------------------- 9. x-ratelimit-* headers
async def test_a_rate_limited_key_gets_openais_rate_limit_headers_on_every_answer(upstream, tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        key = await key_with(g, credits=500_000, rpm=3, tpm=100_000)   # 0.5 INR
        body = {"model": "demo/echo", "messages": HI}
        first = await g.client.post("/v1/chat/completions", headers=key["headers"], json=body)
        assert first.status_code == 200
        h = first.headers
        assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("3", "2")
        assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("100000", "100000")
        assert GO_DURATION.match(h["x-ratelimit-reset-requests"]) and h["x-ratelimit-reset-tokens"] == "0s"
        for path in ("/v1/credits", "/v1/models", "/v1/models/demo/echo"):   # shown, not counted
            r = await g.client.get(path, headers=key["headers"])
            assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "2", path
            assert r.headers["x-ratelimit-limit-tokens"] == "100000"
        stream = await g.client.post("/v1/chat/completions", headers=key["headers"], json={**body, "stream": True})
        assert stream.status_code == 200 and sse_data(stream.text)[-1] == "[DONE]"
        assert stream.headers["x-ratelimit-remaining-requests"] == "1"
        used = int(stream.headers["x-ratelimit-limit-tokens"]) - int(stream.headers["x-ratelimit-remaining-tokens"])
        assert used > 0   # the first call's billed tokens
        refused = await g.client.post("/v1/chat/completions", headers=key["headers"], json={
            "model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 16384})   # admitted, then a 402
        assert refused.status_code == 402 and refused.headers["x-ratelimit-remaining-requests"] == "0"
        limited = await g.client.post("/v1/chat/completions", headers=key["headers"], json=body)
        assert_error(limited, 429, "rate_limit_error")
        assert set(RATE_HEADERS) <= set(limited.headers)
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert GO_DURATION.match(limited.headers["x-ratelimit-reset-requests"])
        only_rpm = await key_with(g, rpm=5)
        r = await g.client.post("/v1/embeddings", headers=only_rpm["headers"], json={
            "model": "openai/text-embedding-3-small", "input": "x"})
        assert r.headers["x-ratelimit-remaining-requests"] == "4" and "x-ratelimit-limit-tokens" not in r.headers
        unlimited = await g.new_key(1_000_000)
        r = await g.client.post("/v1/chat/completions", headers=unlimited["headers"], json=body)
        assert not any(name in r.headers for name in RATE_HEADERS)


def test_reset_durations_are_written_as_openai_writes_them():
    assert [duration_text(ms) for ms in (0, 20, 999, 1000, 1500, 59_999, 60_000, 90_500, 360_000, 3_600_000)] == [
        "0s", "20ms", "999ms", "1s", "1.5s", "59.999s", "1m0s", "1m30.5s", "6m0s", "1h0m0s"]


# ---------------------------------------------------------------- 10. expiry and model allow-list
def test_expiry_and_model_patterns_are_read_as_documented():
    now = 1_700_000_000_000
    assert parse_expiry("30d", now) == now + 30 * 86_400_000
    assert parse_expiry("12h", now) == now + 12 * 3_600_000
    assert parse_expiry("2099-01-01", now) == 4_070_908_800_000
    assert parse_expiry("2099-01-01T05:30:00+05:30", now) == 4_070_908_800_000
    assert parse_expiry(None, now) is None
    for bad, why in (("soon", "neither a duration"), ("2001-01-01", "in the past"), ("0d", "at least 1")):
        with pytest.raises(ValueError, match=why):
            parse_expiry(bad, now)
    assert expiry_text(4_070_908_800_000) == "2099-01-01T00:00:00Z"
    assert parse_model_patterns("openai/*, demo/*,openai/*") == ("openai/*", "demo/*")
    assert parse_model_patterns(" ") is None
    with pytest.raises(ValueError, match="not a model id"):
        parse_model_patterns("openai/* demo")


async def test_an_expired_key_is_401_and_a_model_outside_its_list_403_and_both_are_in_usage(db_url, upstream,
                                                                                          tmp_path):
    async with running(db_url, upstream, tmp_path) as g:
        scoped = await key_with(g, models=("openai/*", "demo/*"),
                                expires_at=int(time.time() * 1000) + 86_400_000)
        assert (await g.key_row(scoped))["models"] == ["openai/*", "demo/*"]
        ok = await g.client.post("/v1/chat/completions", headers=scoped["headers"], json={
            "model": "demo/echo", "messages": HI})
        assert ok.status_code == 200
        for body in ({"model": "anthropic/claude-3-5-haiku", "messages": HI},
                     {"model": "demo/echo", "messages": HI, "models": ["anthropic/claude-3-5-haiku"]}):
            message = assert_error(await g.client.post("/v1/chat/completions", headers=scoped["headers"],
                                                       json=body), 403, "permission_error")
            assert "may not call the model 'anthropic/claude-3-5-haiku'" in message and "openai/*, demo/*" in message
        r = await g.client.post("/v1/responses", headers=scoped["headers"], json={
            "model": "anthropic/claude-3-5-haiku", "input": "hi"})
        assert_error(r, 403, "permission_error")
        listed = {m["id"] for m in (await g.client.get("/v1/models", headers=scoped["headers"])).json()["data"]}
        assert listed and all(m.startswith(("openai/", "demo/")) for m in listed)
        assert (await g.client.get("/v1/models/anthropic/claude-3-5-haiku", headers=scoped["headers"])
                ).status_code == 404

        expired = await key_with(g, expires_at=int(time.time() * 1000) + 300)
        assert (await g.client.get("/v1/credits", headers=expired["headers"])).status_code == 200
        await asyncio.sleep(0.4)
        message = assert_error(await g.client.post("/v1/chat/completions", headers=expired["headers"], json={
            "model": "demo/echo", "messages": HI}), 401, "authentication_error")
        assert "expired at" in message
        assert_error(await g.client.get("/v1/models", headers=expired["headers"]), 401, "authentication_error")

        rows = await rows_of(g, scoped, 4)
        assert sorted((r["status"], r["end_state"]) for r in rows) == [(200, "completed")] + [(403, "rejected")] * 3
        refused = [r for r in rows if r["status"] == 403]
        assert all((r["cost"], r["hold"]) == (0, 0) for r in refused)
        assert {r["model"] for r in refused} == {"anthropic/claude-3-5-haiku", "demo/echo"}
        assert all("may not call" in r["error"] for r in refused)
        rows = await rows_of(g, expired, 2)
        assert sorted((r["status"], r["end_state"], r["cost"], r["endpoint"]) for r in rows) == [
            (401, "rejected", 0, "chat"), (401, "rejected", 0, "models")]
        assert await g.admin.verify() == []


async def test_the_admin_api_creates_keys_with_an_expiry_and_models(upstream, tmp_path):
    from aicredits.api import admin_schemas as schemas
    from aicredits.services.audit import Actor
    from aicredits.services.operator import Operator

    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        user = await g.new_key(1_000_000)
        await g.admin.create_user("root@example.com", password="long enough password", role="admin")
        secret, _ = await Operator(g.engine).create_admin_key(Actor.system("test"), "ops",
                                                              owner_email="root@example.com")
        hdr = {"Authorization": f"Bearer {secret}"}
        users = (await g.client.get("/admin/api/users", headers=hdr)).json()["data"]
        user_id = next(u["id"] for u in users if u["email"] == user["email"])
        r = await g.client.post(f"/admin/api/users/{user_id}/keys", headers=hdr, json={
            "name": "ci", "expires": "2099-01-01", "models": ["demo/*"]})
        assert r.status_code == 201, r.text
        made = schemas.AdminKey.model_validate(r.json()).model_dump()   # the document's schema holds
        assert (made["expires_at"], made["models"]) == (4_070_908_800_000, ["demo/*"])
        call = await g.client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {made['key']}"},
                                   json={"model": "openai/gpt-4o-mini", "messages": HI})
        assert_error(call, 403, "permission_error")
        for bad in ({"expires": "yesterday"}, {"models": "demo/*"}, {"expires": "2001-01-01"}):
            r = await g.client.post(f"/admin/api/users/{user_id}/keys", headers=hdr, json={"name": "x", **bad})
            assert_error(r, 400, "invalid_request_error")


# ---------------------------------------------------------------- 11. refused calls in usage
async def test_refused_calls_are_usage_rows_with_their_status_and_no_money(db_url, upstream, tmp_path):
    async with running(db_url, upstream, tmp_path, AICREDITS_KEY_MAX_CONCURRENT="1") as g:
        key = await key_with(g, credits=10_000, rpm=3)
        poor = await g.client.post("/v1/chat/completions", headers=key["headers"], json={
            "model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 10**6})
        assert_error(poor, 402, "insufficient_credits")
        assert (await g.client.post("/v1/chat/completions", headers=key["headers"], json={
            "model": "demo/echo", "messages": HI, "max_tokens": 5})).status_code == 200
        assert (await g.client.post("/v1/embeddings", headers=key["headers"], json={
            "model": "openai/text-embedding-3-small", "input": "x"})).status_code == 200
        limited = await g.client.post("/v1/chat/completions", headers=key["headers"], json={
            "model": "demo/echo", "messages": HI})
        assert_error(limited, 429, "rate_limit_error")
        before = await g.client.get("/v1/credits", headers=key["headers"])
        rows = await rows_of(g, key, 4)
        seen = sorted((r["status"], r["end_state"], r["endpoint"], r["model"]) for r in rows)
        assert seen == [(200, "completed", "chat", "demo/echo"),
                        (200, "completed", "embeddings", "openai/text-embedding-3-small"),
                        (402, "rejected", "chat", "openai/gpt-4o-mini"),
                        (429, "rejected", "chat", "demo/echo")]
        for r in rows:
            if r["end_state"] == "rejected":
                assert (r["cost"], r["hold"], r["prompt_tokens"], r["completion_tokens"]) == (0, 0, 0, 0)
                assert r["error"] and r["request_id"] and r["key_id"] == key["id"]
        assert {r["request_id"] for r in rows} >= {poor.headers["x-request-id"], limited.headers["x-request-id"]}
        charged = sum(r["cost"] for r in rows)
        assert before.json()["total_spent"] * 1_000_000 == pytest.approx(charged, abs=1)
        # an unknown key has no account to record against: nothing is written for it
        r = await g.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-" + "0" * 64},
                                json={"model": "demo/echo", "messages": HI})
        assert_error(r, 401, "authentication_error")
        # refused rows are written in order, in batches: once a later refusal (of another key) is
        # written, a row of the unknown key's call would have been too
        later = await key_with(g, credits=0)
        assert_error(await g.client.post("/v1/chat/completions", headers=later["headers"], json={
            "model": "openai/gpt-4o-mini", "messages": HI}), 402, "insufficient_credits")
        assert [r["status"] for r in await rows_of(g, later, 1)] == [402]
        assert len(await g.usage(key)) == 4
        assert await g.admin.verify() == []
