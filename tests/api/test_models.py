"""GET /api/models in process (httpx.ASGITransport against the gateway app): the whole
catalog's shape, every price field of every entry a JSON number."""

from __future__ import annotations

import httpx

from aicredits.api.openapi import build
from aicredits.app import Gateway
from aicredits.settings import load_settings
from aicredits.store.db import make_engine, migrate

PRICE_KEYS = ("input_cost_per_1m", "output_cost_per_1m", "cache_read_cost_per_1m", "cache_write_cost_per_1m",
              "cache_write_1h_cost_per_1m", "cost_per_1m_chars", "cost_per_minute")
OPERATOR_MODELS = '''
[[models]]                      # listed, never served: no price at all
id = "openai/unpriced-x"
context_window = 8192

[[models]]                      # an embedding model of the operator's: no output price
id = "openai/my-embedder"
endpoint = "embeddings"
input_cost_per_1m = "0.02"
'''


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


async def _api_models(tmp_path) -> dict:
    url = f"sqlite:///{tmp_path}/aicredits.db"
    engine = make_engine(url)
    await migrate(engine, url)
    await engine.dispose()
    cfg = tmp_path / "aicredits.toml"
    cfg.write_text(OPERATOR_MODELS)
    gw = Gateway(load_settings({"AICREDITS_DATABASE_URL": url, "AICREDITS_CONFIG": str(cfg),
                                "OPENAI_API_KEY": "sk-test", "AICREDITS_USD_INR": "83.5"}))
    await gw.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw") as client:
            r = await client.get("/api/models")
    finally:
        await gw.shutdown()
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()


async def test_every_price_field_of_every_entry_is_a_number(tmp_path):
    doc = await _api_models(tmp_path)
    assert doc["object"] == "list" and doc["usd_inr_rate"] == 83.5 and doc["markup"] == 0
    schema = build()   # /openapi.json
    entry_schema = schema["components"]["schemas"]["CatalogEntry"]
    for key in ("input_cost_per_1m", "output_cost_per_1m"):   # the document says what the code does
        assert entry_schema["properties"][key]["type"] == "number" and key in entry_schema["required"]
    by_id = {}
    for e in doc["data"]:
        where = e["id"]
        assert set(entry_schema["required"]) <= set(e) <= set(entry_schema["properties"]), where
        assert e["currency"] in ("USD", "INR") and isinstance(e["priced"], bool), where
        for key in PRICE_KEYS:
            if key in e:
                assert is_number(e[key]) and e[key] >= 0, (where, key, e[key])
        for size, qualities in (e.get("cost_per_image") or {}).items():
            assert qualities and all(is_number(p) and p > 0 for p in qualities.values()), (where, size)
        for tier in e.get("tiers", ()):
            assert all(is_number(v) for v in tier.values()), (where, tier)
        own_unit = {"speech": "cost_per_1m_chars", "transcription": "cost_per_minute",
                    "images": "cost_per_image"}.get(e["endpoint"])
        if own_unit:
            assert own_unit in e, where
        by_id[e["id"]] = e

    emb = by_id["openai/text-embedding-3-small"]
    assert emb["input_cost_per_1m"] == 0.02 and emb["output_cost_per_1m"] == 0     # no such cost: 0, not null
    assert by_id["openai/my-embedder"]["output_cost_per_1m"] == 0
    assert by_id["openai/my-embedder"]["input_cost_per_1m"] == 0.02               # a number, though given as text
    assert by_id["openai/my-embedder"]["priced"] is True
    tts = by_id["openai/tts-1"]
    assert (tts["input_cost_per_1m"], tts["output_cost_per_1m"], tts["cost_per_1m_chars"]) == (0, 0, 15)
    assert by_id["openai/dall-e-3"]["cost_per_image"]["1024x1024"] == {"standard": 0.04, "hd": 0.08}
    unpriced = by_id["openai/unpriced-x"]
    assert (unpriced["priced"], unpriced["available"]) == (False, False)
    assert (unpriced["input_cost_per_1m"], unpriced["output_cost_per_1m"]) == (0, 0)
    mini = by_id["openai/gpt-4o-mini"]
    assert (mini["input_cost_per_1m"], mini["output_cost_per_1m"], mini["cache_read_cost_per_1m"]) == \
        (0.15, 0.6, 0.075)
    assert (mini["priced"], mini["available"]) == (True, True)
    assert by_id["sarvam/bulbul-v2"]["available"] is False     # no SARVAM_API_KEY
