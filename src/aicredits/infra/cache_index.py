"""The semantic layer's in-process vector index (numpy): per context key, the unit vectors of
the stored questions. Small partitions are searched exactly (one matrix-vector product);
large ones first by the Hamming distance of 256-bit SimHash codes (random hyperplanes, the
same in every process), then exactly over the closest candidates (~1.3 ms of CPU at 100,000
entries in one context). Searches of large
partitions run in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

# a vector as embedders give it (an array) or as it is stored (float32 little-endian bytes)
Vector = np.ndarray | bytes | bytearray | memoryview

BITS = 256
EXACT_UP_TO = 4096       # partitions this small are searched exactly
CANDIDATES = 256         # how many SimHash neighbours are re-scored exactly
TOP = 4                  # candidates above the threshold returned, best first
_PLANES_SEED = 20_240_601


class _Partition:
    __slots__ = ("centre", "codes", "dead", "expires", "keys", "n", "texts", "vecs")

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.centre: np.ndarray | None = None    # set (and the codes made) once the partition is large
        self.vecs = np.zeros((16, dim), np.float32)
        self.codes = np.zeros((16, BITS // 64), np.uint64)
        self.expires = np.zeros(16, np.int64)
        self.keys: list[str | None] = []
        self.texts: list[str | None] = []
        self.dead = 0

    def grow(self) -> None:
        cap = len(self.vecs) * 2
        for name in ("vecs", "codes", "expires"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)


class VectorIndex:
    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim          # None: the first vector's (a catalog embedder's dimension is learnt)
        self._parts: dict[str, _Partition] = {}
        self._where: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._planes = np.zeros((0, BITS), np.float32)     # set with the dimension
        self._weights = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)
        if dim is not None:
            self._set_dim(dim)

    def _set_dim(self, dim: int) -> None:
        self.dim = dim
        self._planes = np.random.default_rng(_PLANES_SEED).standard_normal((dim, BITS)).astype(np.float32)

    def __len__(self) -> int:
        return len(self._where)

    def _code(self, vecs: np.ndarray) -> np.ndarray:
        bits = (vecs @ self._planes) > 0                       # (n, BITS)
        bits = bits.reshape(len(vecs), BITS // 64, 64).astype(np.uint64)
        return (bits * self._weights).sum(axis=2, dtype=np.uint64)

    @staticmethod
    def as_vector(vector: Vector) -> np.ndarray:
        v = np.frombuffer(vector, dtype="<f4") if isinstance(vector, (bytes, bytearray, memoryview)) else vector
        return np.asarray(v, dtype=np.float32)

    def add(self, context: str, key: str, text: str, vector: Vector, expires_at: int) -> None:
        v = self.as_vector(vector)
        with self._lock:
            if self.dim is None and v.ndim == 1:
                self._set_dim(v.shape[0])
            if v.shape != (self.dim,):
                return      # another embedder's vector (its dimension): never compared
            dim = len(v)
            if key in self._where:
                self._discard(key)
            p = self._parts.get(context)
            if p is None:
                p = self._parts[context] = _Partition(dim)
            if p.n == len(p.vecs):
                p.grow()
            p.vecs[p.n] = v
            if p.centre is not None:
                p.codes[p.n] = self._code(v[None, :] - p.centre)[0]
            p.expires[p.n] = expires_at
            p.keys.append(key)
            p.texts.append(text)
            self._where[key] = (context, p.n)
            p.n += 1
            if p.centre is None and p.n > EXACT_UP_TO:
                self._start_codes(p)

    def _start_codes(self, p: _Partition) -> None:
        """The partition is now searched through codes. A sentence embedder's vectors share a large
        common direction, so the hyperplanes cut the vectors minus their mean (the mean of the
        entries at this moment, kept from then on): many more bits tell entries apart, and the
        nearest codes are much more often the nearest vectors (for tests/infra/test_cache_index.py's
        clustered set the four best were found for 58 questions of 60 instead of 41)."""
        live = [i for i in range(p.n) if p.keys[i] is not None]
        p.centre = p.vecs[live].mean(axis=0).astype(np.float32)
        for a in range(0, p.n, 8192):
            b = min(p.n, a + 8192)
            p.codes[a:b] = self._code(p.vecs[a:b] - p.centre)

    def _discard(self, key: str) -> None:
        where = self._where.pop(key, None)
        if where is None:
            return
        p = self._parts[where[0]]
        i = where[1]
        p.expires[i] = 0
        p.keys[i] = None
        p.texts[i] = None
        p.dead += 1
        if p.dead > 1024 and p.dead * 2 > p.n:
            self._compact(where[0], p)

    def _compact(self, context: str, p: _Partition) -> None:
        live = [i for i in range(p.n) if p.keys[i] is not None]
        q = _Partition(p.vecs.shape[1])
        while len(q.vecs) < len(live):
            q.grow()
        q.n = len(live)
        q.centre = p.centre
        q.vecs[: q.n] = p.vecs[live]
        q.codes[: q.n] = p.codes[live]
        q.expires[: q.n] = p.expires[live]
        q.keys = [p.keys[i] for i in live]
        q.texts = [p.texts[i] for i in live]
        if q.n == 0:
            del self._parts[context]
            return
        self._parts[context] = q
        for j, k in enumerate(q.keys):
            if k is not None:       # (all are: `live`)
                self._where[k] = (context, j)

    def has(self, context: str) -> bool:
        """Whether any live entry shares this context (if none, a lookup need not embed)."""
        p = self._parts.get(context)
        return p is not None and p.n > p.dead

    def discard(self, key: str) -> None:
        with self._lock:
            self._discard(key)

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._where.clear()

    @staticmethod
    def _nearest_codes(p: _Partition, q: np.ndarray) -> np.ndarray:
        """The rows of the CANDIDATES (or a few more, on ties) codes nearest to q in Hamming
        distance: XOR, popcount per byte-sized count of each 64-bit word, the four counts summed
        by one multiplication of their bytes seen as a 32-bit word, then a histogram of the
        distances gives the cut-off (cheaper than a partial sort of 100,000 distances)."""
        n = p.n
        counts = np.bitwise_count(np.bitwise_xor(p.codes[:n], q))            # (n, 4) uint8, each <= 64
        dist = (counts.view(np.uint32).ravel() * np.uint32(0x01010101)) >> np.uint32(24)
        # (a distance of 256, two opposite vectors, wraps to 0: one more candidate, re-scored exactly)
        cum = np.cumsum(np.bincount(dist, minlength=BITS + 1))
        cut = int(np.searchsorted(cum, CANDIDATES))
        idx = np.flatnonzero(dist <= cut)
        if len(idx) > 8 * CANDIDATES:       # many ties at the cut-off: the nearest, ties broken by row
            idx = idx[np.argpartition(dist[idx], 8 * CANDIDATES)[: 8 * CANDIDATES]]
        return idx

    def search_sync(self, context: str, vector: Vector, threshold: float, now_ms: int) -> list[tuple[float, str, str]]:
        """(cosine, key, text) of the live entries at or above `threshold`, best first."""
        v = self.as_vector(vector)
        with self._lock:
            p = self._parts.get(context)
            if p is None or p.n == 0 or v.shape != (self.dim,):
                return []
            n = p.n
            if p.centre is None:
                idx = np.arange(n)
            else:   # SimHash: the CANDIDATES codes nearest in Hamming distance
                idx = self._nearest_codes(p, self._code(v[None, :] - p.centre)[0])
            scores = p.vecs[idx] @ v
            ok = (scores >= threshold) & (p.expires[idx] > now_ms)
            sel = idx[ok]
            order = np.argsort(-scores[ok])[:TOP]
            return [(float(scores[ok][o]), p.keys[sel[o]], p.texts[sel[o]]) for o in order]

    async def search(self, context: str, vector: Vector, threshold: float, now_ms: int) -> list[tuple[float, str, str]]:
        p = self._parts.get(context)
        if p is not None and p.n > EXACT_UP_TO:
            return await asyncio.get_running_loop().run_in_executor(
                None, self.search_sync, context, vector, threshold, now_ms)
        return self.search_sync(context, vector, threshold, now_ms)
