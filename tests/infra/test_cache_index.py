"""The semantic layer's in-process vector index (infra/cache_index.py): a large partition is
searched through SimHash codes, then exactly; what it returns must be what an exact search over
every live entry of the context returns."""

from __future__ import annotations

import numpy as np

from aicredits.infra.cache_index import CANDIDATES, EXACT_UP_TO, VectorIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng, n: int, dim: int = 384) -> np.ndarray:
    """Anisotropic vectors like a sentence embedder's: a shared direction plus mixtures of a few
    hundred topics, so that many entries are close to each other."""
    common = rng.standard_normal(dim)
    topics = rng.standard_normal((300, dim))
    i, j = rng.integers(0, 300, n), rng.integers(0, 300, n)
    w = rng.uniform(0.2, 0.8, (n, 1))
    return _unit(2.0 * common + w * topics[i] + (1 - w) * topics[j] + 0.3 * rng.standard_normal((n, dim)))


def test_a_large_partition_finds_what_an_exact_search_finds():
    """Every entry returned is a live entry of the context, with its exact cosine, at or above the
    threshold, best first; and the pre-filter finds the nearest entry of a reworded question
    (cosine ~0.93 to the stored one) nearly always: a candidate it misses is a miss, never a
    wrong answer; and the four best nearly always."""
    rng = np.random.default_rng(3)
    n = 4 * EXACT_UP_TO + 123
    vecs = _clustered(rng, n)
    idx = VectorIndex(384)
    for k in range(n):
        idx.add("ctx", f"k{k}", f"q{k}", vecs[k], 2**62)
    idx.add("other", "o1", "other context", vecs[0], 2**62)
    best_found = all_found = 0
    for _ in range(60):
        q = _unit(vecs[rng.integers(0, n)] + 0.02 * rng.standard_normal(384))
        exact = vecs @ q
        thr = float(np.sort(exact)[-5])
        got = idx.search_sync("ctx", q, thr, 0)
        assert 1 <= len(got) <= 4
        scores = [s for s, _k, _t in got]
        assert scores == sorted(scores, reverse=True) and min(scores) >= thr - 1e-6
        for s, key, text in got:
            assert key.startswith("k") and text == "q" + key[1:] and abs(s - exact[int(key[1:])]) < 1e-5
        best_found += got[0][1] == f"k{int(np.argmax(exact))}"
        all_found += [key for _s, key, _t in got] == [f"k{i}" for i in np.argsort(-exact)[:4]]
    # (with the hyperplanes cutting the raw vectors instead of the vectors minus their mean,
    # this set gave 59 and 41 of 60)
    assert best_found == 60 and all_found >= 55, (best_found, all_found)


def test_expired_and_discarded_entries_are_never_returned():
    rng = np.random.default_rng(4)
    n = EXACT_UP_TO + 500
    vecs = _clustered(rng, n)
    idx = VectorIndex(384)
    for k in range(n):
        idx.add("ctx", f"k{k}", f"q{k}", vecs[k], 1_000 if k % 2 else 2**62)
    q = vecs[10]
    assert idx.search_sync("ctx", q, 0.999, 0)[0][1] == "k10"
    idx.discard("k10")
    assert all(key != "k10" for _s, key, _t in idx.search_sync("ctx", q, -1.0, 0))
    q = vecs[11]                         # expires at 1,000 ms
    assert idx.search_sync("ctx", q, 0.999, 999)[0][1] == "k11"
    assert all(key != "k11" for _s, key, _t in idx.search_sync("ctx", q, -1.0, 1_000))


def test_many_equally_near_codes_still_give_a_bounded_candidate_set():
    """Identical vectors tie at Hamming distance 0: the search still answers, from at most
    8 x CANDIDATES exact comparisons."""
    v = _unit(np.random.default_rng(5).standard_normal(384))
    idx = VectorIndex(384)
    for k in range(EXACT_UP_TO + 3000):
        idx.add("ctx", f"k{k}", "same", v, 2**62)
    p = idx._parts["ctx"]
    assert len(idx._nearest_codes(p, idx._code(v[None, :])[0])) == 8 * CANDIDATES
    got = idx.search_sync("ctx", v, 0.99, 0)
    assert len(got) == 4 and all(abs(s - 1.0) < 1e-5 for s, _k, _t in got)


def test_a_vector_of_another_dimension_is_never_compared():
    idx = VectorIndex(384)
    idx.add("ctx", "a", "a", np.ones(384, np.float32) / np.sqrt(384), 2**62)
    idx.add("ctx", "b", "b", np.ones(1536, np.float32), 2**62)
    assert len(idx) == 1
    assert idx.search_sync("ctx", np.ones(1536, np.float32), -1.0, 0) == []
