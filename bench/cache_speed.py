"""What the response caches add to a call (not part of the tests; docs/performance.md).

    .venv/bin/python bench/cache_speed.py                 # both measurements
    taskset -c 0 .venv/bin/python bench/cache_speed.py    # pinned to one core, as reported

1. exact: the time `ChatService.open` spends in the cache for a request that misses (the cache's
   plan - eligibility, normalisation, the key's hash - and the lookup in the process's key dict),
   with a SQLite store holding 10,000 entries; p50 over 20,000 requests of ~200 bytes.
2. semantic: one lookup with the local embedder (embedding the question, searching one account's
   single context of 100,000 entries, the near-miss guard) for 200 real questions of
   bench/cache/*.tsv; the 100,000 stored vectors are the set's own embeddings each mixed with a
   random other one and renormalised (the embedder's real, anisotropic distribution; embedding
   100,000 questions would take the embedder ~20 minutes).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from aicredits.domain.cache_rules import CachePolicy
from aicredits.services.cache import CacheService


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def exact() -> dict:
    from aicredits.store.cache_sql import SqlCacheStore
    from aicredits.store.db import make_engine, migrate

    tmp = tempfile.mkdtemp()
    url = f"sqlite:///{tmp}/speed.db"
    engine = make_engine(url)
    await migrate(engine, url)
    svc = CacheService(CachePolicy(exact=True), SqlCacheStore(engine))
    for i in range(10_000):
        svc._known[f"{i:064x}"] = 2**62          # 10,000 known keys: the dict the lookup reads
    bodies = [{"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Question number {i}: what is the capital of France?"}],
        "temperature": 0.2} for i in range(20_000)]
    times = []
    for body in bodies:
        t = time.perf_counter_ns()
        plan = svc.plan(body, 7, "key1", "openai/gpt-4o-mini")
        state = await svc.lookup(plan)
        times.append(time.perf_counter_ns() - t)
        assert state == "miss"
    await engine.dispose()
    return {"requests": len(times), "p50_ms": pct(times, 0.5) / 1e6, "p99_ms": pct(times, 0.99) / 1e6}


async def semantic(n: int = 100_000) -> dict:
    from cache_quality import load_pairs

    from aicredits.domain.cache_guard import differs
    from aicredits.infra.cache_embed import LocalEmbedder
    from aicredits.infra.cache_index import VectorIndex

    emb = LocalEmbedder()
    pairs = load_pairs()
    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    base = np.stack([emb.embed_sync(t) for t in texts])
    rng = np.random.default_rng(7)
    idx = VectorIndex(base.shape[1])
    ctx = "c" * 64
    i = rng.integers(0, len(base), n)
    j = rng.integers(0, len(base), n)
    w = rng.uniform(0.3, 0.7, n)[:, None].astype(np.float32)
    mixed = w * base[i] + (1 - w) * base[j]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    t = time.perf_counter()
    for k in range(n):
        idx.add(ctx, f"k{k}", texts[i[k]], mixed[k], 2**62)
    load_s = time.perf_counter() - t
    queries = [p["b"] for p in pairs][:200]
    times, embed_times = [], []
    for q in queries:
        t = time.perf_counter_ns()
        v = await emb.embed(q)
        t1 = time.perf_counter_ns()
        for score, _key, text in await idx.search(ctx, v, 0.93, 0):
            if differs(q, text, score) is None:
                break
        times.append(time.perf_counter_ns() - t)
        embed_times.append(t1 - t)
    # the exact brute-force answer, to check what the SimHash pre-filter finds
    recall_ok = 0
    for q in queries[:50]:
        v = emb.embed_sync(q)
        best = int(np.argmax(mixed @ v))
        got = idx.search_sync(ctx, v, -1.0, 0)
        recall_ok += bool(got) and got[0][1] == f"k{best}"
    return {"entries": n, "queries": len(times), "p50_ms": pct(times, 0.5) / 1e6, "p90_ms": pct(times, 0.9) / 1e6,
            "embed_p50_ms": pct(embed_times, 0.5) / 1e6, "index_load_s": round(load_s, 1),
            "nearest_found_of_50": recall_ok}


async def main() -> None:
    e = await exact()
    print(f"exact lookup on a miss: p50 {e['p50_ms']:.4f} ms, p99 {e['p99_ms']:.4f} ms ({e['requests']} requests)")
    s = await semantic()
    print(f"semantic lookup at {s['entries']} entries: p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms "
          f"(embedding alone p50 {s['embed_p50_ms']:.2f} ms); nearest entry found for {s['nearest_found_of_50']}/50; "
          f"index filled in {s['index_load_s']} s")


if __name__ == "__main__":
    asyncio.run(main())
