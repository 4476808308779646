"""Models, credits and health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from fractions import Fraction

import orjson

from aicredits.api.chat import call_headers
from aicredits.api.http import Handler, Request, Send, send_bytes, send_json
from aicredits.domain.catalog import TOKEN_PRICE_ATTRS, TOKEN_PRICE_FIELDS, Catalog, PriceTier
from aicredits.domain.keys import model_allowed
from aicredits.domain.money import micros_to_inr
from aicredits.domain.pricing import Rates
from aicredits.errors import NotFound
from aicredits.ports import BillingStore
from aicredits.services.cache import CacheService
from aicredits.services.keys import KeyAuthenticator
from aicredits.services.metering import Metering


def _number(price: Fraction | None) -> float:
    """A catalog price as a JSON number; 0 where the model has no such cost."""
    return float(price) if price is not None else 0.0


def catalog_document(catalog: Catalog, rates: Rates, served: AbstractSet[str]) -> bytes:
    """GET /api/models. Every price field is a number: `input_cost_per_1m` and
    `output_cost_per_1m` are in every entry (0 where the model bills no such unit, e.g. an
    embedding model's output), the cache prices where the catalog gives them, and the price of
    a speech, transcription or image model's own unit. `priced` is false for an entry missing a
    price its endpoint needs (it is never served; its missing prices show as 0)."""
    data = []
    for spec in catalog:
        entry: dict[str, object] = {
            "id": spec.id, "name": spec.name, "provider": spec.provider, "endpoint": spec.endpoint,
            "modalities": list(spec.modalities), "currency": spec.currency, "context_window": spec.context_window,
            "input_cost_per_1m": _number(spec.input), "output_cost_per_1m": _number(spec.output)}
        for key, price in (("cache_read_cost_per_1m", spec.cache_read), ("cache_write_cost_per_1m", spec.cache_write),
                           ("cache_write_1h_cost_per_1m", spec.cache_write_1h)):
            if price is not None:
                entry[key] = _number(price)
        if spec.endpoint == "chat":
            entry["max_output_tokens"] = spec.max_output_tokens
        elif spec.endpoint == "speech":
            entry["cost_per_1m_chars"] = _number(spec.per_1m_chars)
        elif spec.endpoint == "transcription":
            entry["cost_per_minute"] = _number(spec.per_minute)
        elif spec.endpoint == "images":
            entry["cost_per_image"] = {size: {q: _number(p) for q, p in qualities.items()}
                                       for size, qualities in spec.per_image.items()}
        if spec.tiers:
            entry["tiers"] = [_tier(t) for t in spec.tiers]
        entry["priced"] = spec.priced
        entry["available"] = spec.id in served
        data.append(entry)
    return orjson.dumps({"object": "list", "data": data, "usd_inr_rate": float(rates.usd_inr),
                         "markup": float(rates.markup)})


def _tier(tier: PriceTier) -> dict:
    """A prompt-size tier complete: its threshold and every token price of the entry, the tier's
    own value or, where the catalog tier omits the key, the base value (a cache price absent
    here, as at the base, bills at that tier's input price)."""
    shown: dict = {"above_prompt_tokens": tier.above_prompt_tokens}
    for key in TOKEN_PRICE_FIELDS:
        price = getattr(tier, TOKEN_PRICE_ATTRS[key])
        if price is not None:
            shown[key] = _number(price)
    return shown


def model_objects(catalog: Catalog, served: AbstractSet[str]) -> dict[str, dict]:
    """Every served model as OpenAI's model object, by id (GET /v1/models and /v1/models/{id})."""
    created = int(time.time())
    return {s.id: {"id": s.id, "object": "model", "created": created, "owned_by": s.provider}
            for s in catalog if s.id in served}


def models_list(objects: dict[str, dict]) -> bytes:
    return orjson.dumps({"object": "list", "data": list(objects.values())})


def api_models(document: bytes) -> Handler:
    """GET /api/models: `document` (catalog_document, built once at start)."""
    async def handle(req: Request, send: Send) -> None:
        await send_bytes(send, 200, document, [])
    return handle


def v1_models(keys: KeyAuthenticator, metering: Metering, objects: dict[str, dict]) -> Handler:
    models_json = models_list(objects)

    async def handle(req: Request, send: Send) -> None:
        auth = await keys.authenticate(req.authorization())
        await metering.show_limits(auth)
        if auth.models:   # a key with an allow-list sees the models it may call
            body = models_list({k: v for k, v in objects.items() if model_allowed(auth.models, k)})
        else:
            body = models_json
        await send_bytes(send, 200, body, call_headers(req.request_id))
    return handle


MODEL_PREFIX = "/v1/models/"


def v1_model(keys: KeyAuthenticator, metering: Metering, objects: dict[str, dict]) -> Handler:
    """GET /v1/models/{id}: one served model in OpenAI's shape (the id may hold slashes:
    /v1/models/openai/gpt-4o-mini); 404 for an id the gateway does not serve to this key."""
    async def handle(req: Request, send: Send) -> None:
        auth = await keys.authenticate(req.authorization())
        await metering.show_limits(auth)
        model = req.scope["path"][len(MODEL_PREFIX):]
        found = objects.get(model)
        if found is None or (auth.models and not model_allowed(auth.models, model)):
            raise NotFound(f"The model '{model}' does not exist or is not served by this gateway; "
                           f"GET /v1/models lists the models you can use.", param="model")
        await send_json(send, 200, found, call_headers(req.request_id))
    return handle


def v1_credits(keys: KeyAuthenticator, metering: Metering, store: BillingStore,
               cache: CacheService | None) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        auth = await keys.authenticate(req.authorization())
        await metering.show_limits(auth)
        view = await store.credits(auth.account_id, auth.key_id)
        key = view["key"]
        body = {"object": "credits", "balance": micros_to_inr(view["balance"] - view["held"]), "currency": "INR",
                "held": micros_to_inr(view["held"]), "total_added": micros_to_inr(view["total_added"]),
                "total_spent": micros_to_inr(view["total_spent"]),
                "key": {"id": auth.key_id, "name": key["name"],
                        "limit": micros_to_inr(key["limit"]) if key["limit"] is not None else None,
                        "spent": micros_to_inr(key["spent"]), "held": micros_to_inr(key["held"])} if key else None}
        if cache is not None:    # what the response caches saved this account (docs/caching.md)
            saved = await cache.savings(auth.account_id)
            body["cache"] = {"hits": saved["hits"],
                             "tokens_saved": saved["prompt_tokens"] + saved["completion_tokens"],
                             "saved": micros_to_inr(saved["saved"])}
        await send_json(send, 200, body, call_headers(req.request_id))
    return handle


def health() -> Handler:
    async def handle(req: Request, send: Send) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}', [])
    return handle


Ping = Callable[[], Awaitable[object]]


async def _check(ping: Ping, timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            await ping()
    except Exception:  # noqa: BLE001 - whatever the failure (a timeout included), it is not ready
        return "unavailable"
    return "ok"


def ready(db_ping: Ping, redis_ping: Ping | None, timeout: float) -> Handler:
    """Both dependencies checked at once, each within AICREDITS_READY_TIMEOUT: a database or Redis
    that does not answer (a partition) is reported unavailable in that time, not waited for."""
    async def handle(req: Request, send: Send) -> None:
        checks = [_check(db_ping, timeout)]
        if redis_ping is not None:
            checks.append(_check(redis_ping, timeout))
        db, *redis = await asyncio.gather(*checks)
        status = {"status": "ready", "db": db, "redis": redis[0] if redis else "disabled"}
        if "unavailable" in (db, *redis):
            status["status"] = "unavailable"
            await send_json(send, 503, status, [(b"retry-after", b"5")])
            return
        await send_json(send, 200, status)
    return handle
