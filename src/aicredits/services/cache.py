"""Response caches (docs/caching.md): an exact layer and a semantic layer in front of the
upstream, per account unless the operator says otherwise.

Hot path: `recall` (request bytes read before for this key: what they were read as, so an exact
hit on them is found without parsing them again; then `lookup_exact`), `plan` (pure: eligibility
and keys), `lookup` (exact: a dict of the keys this process
knows, then one store read on a known key; semantic: an embedding and a search of the
in-process index, then the near-miss guard, then one store read). A miss is stored after the
answer completed cleanly (`remember`, in the background). Keys written by other processes
reach this one through the store's feed (`follow`), within a second.

The store is the truth: an entry the store no longer has (expired, evicted, purged) is never
served, whatever this process's index says. A store that fails makes the call a miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

import orjson

from aicredits.domain.cache_entry import CacheEntry, FeedRow, hit_bytes, hit_charge, storable
from aicredits.domain.cache_guard import differs
from aicredits.domain.cache_rules import (
    CachePolicy,
    Effective,
    bypass_reason,
    context_key,
    exact_key,
    last_user_text,
)
from aicredits.domain.pricing import TokenUsage

if TYPE_CHECKING:
    import numpy as np  # the optional extra aicredits[semantic]: only its embedders make vectors

    from aicredits.ports import KeyAuth

log = logging.getLogger("aicredits.cache")
# a vector as an embedder gives it, or as a store keeps it (float32 little-endian bytes)
Vector: TypeAlias = "np.ndarray | bytes"
_T = TypeVar("_T")


class CacheStore(Protocol):
    """Where entries live (store/cache_sql.py: the database; infra/cache_redis.py: Redis)."""

    async def get(self, key: str, now_ms: int) -> CacheEntry | None: ...
    async def touch(self, used: dict[str, tuple[int, int]]) -> None:
        """Record hits: key -> (last use ms, hits since the last call), for the LRU bound."""
    async def put(self, entry: CacheEntry, max_entries: int) -> None: ...
    async def feed(self, cursor: Any, now_ms: int) -> tuple[Any, list[FeedRow]]:  # noqa: ANN401 - each store's own
        """(new cursor, [(key, scope, context, query, vector, expires_at)]) written since `cursor`
        (the cursor is the store's own: a stream id, a time)."""
    async def purge(self, account_id: int | None, model: str | None) -> int: ...
    async def sweep(self, now_ms: int, max_entries: int) -> int: ...
    async def stats(self, now_ms: int) -> dict: ...
    async def close(self) -> None: ...


class SavingsStore(Protocol):
    async def add_savings(self, rows: dict[int, list[int]]) -> None:
        """account id -> [hits, prompt tokens, completion tokens, saved micro-INR] to add."""
    async def record_usage(self, rows: list[dict]) -> None:
        """Write usage_records rows (free hits)."""
    async def savings(self, account_id: int) -> dict: ...
    async def totals(self) -> dict: ...


class Embedder(Protocol):
    name: str

    async def embed(self, text: str) -> np.ndarray:
        """The text's unit-length float32 vector."""


@runtime_checkable
class ThreadEmbedder(Embedder, Protocol):
    """An embedder that runs on a thread of its own (the local one): the search that follows the
    embedding runs there too (`fn(vector, *args)`), one hop off the event loop instead of two."""

    async def embed_then(self, text: str, fn: Callable[..., _T], *args: object) -> tuple[np.ndarray, _T]: ...


class VectorIndex(Protocol):
    def add(self, context: str, key: str, text: str, vector: Vector, expires_at: int) -> None: ...
    def discard(self, key: str) -> None: ...
    def has(self, context: str) -> bool: ...
    def clear(self) -> None: ...
    def search_sync(self, context: str, vector: Vector, threshold: float,
                    now_ms: int) -> list[tuple[float, str, str]]: ...
    async def search(self, context: str, vector: Vector, threshold: float,
                     now_ms: int) -> list[tuple[float, str, str]]: ...


@dataclass
class CachePlan:
    eff: Effective
    model: str
    account_id: int
    key: str
    context: str | None = None
    text: str | None = None
    vector: np.ndarray | None = None
    entry: CacheEntry | None = None

    @property
    def hit(self) -> CacheEntry:
        """The entry of a hit (`lookup` said "hit")."""
        if self.entry is None:
            raise RuntimeError("not a cache hit")
        return self.entry


@dataclass(frozen=True, slots=True)
class Recalled:
    """What a request's bytes were read as, for one key (`CacheService.recall`): everything a hit
    needs of the request, so that the same bytes again are not parsed, validated and normalised."""
    asked: str              # the model as the request names it (the access log's)
    model: str              # the catalog id it resolved to (the key's allow-list passed)
    stream: bool
    include_usage: bool
    eff: Effective
    key: str                # the exact key


def now_ms() -> int:
    return int(time.time() * 1000)


HOT_SECONDS = 1.0     # an entry read from the store is served from memory this long (purges: within 1 s)
HOT_MAX = 4096
RECALL_MAX_BODY = 16 * 1024          # request bodies up to this size are recalled by their bytes
RECALL_MAX_BYTES = 16 * 1024 * 1024  # the recalled bodies' bytes in all (then forgotten at once)


class CacheService:
    def __init__(self, policy: CachePolicy, store: CacheStore, savings: SavingsStore | None = None, *,
                 embedder: Embedder | None = None, index: VectorIndex | None = None,
                 follow_every: float = 0.5) -> None:
        self.policy = policy
        self.store = store
        self.savings_store = savings
        self.embedder = embedder
        self.index = index
        self._known: dict[str, int] = {}        # exact keys this process knows -> expires_at (ms)
        self._hot: dict[str, tuple[CacheEntry, float]] = {}   # entries read in the last HOT_SECONDS
        self._used: dict[str, tuple[int, int]] = {}           # hits to record: key -> (last ms, count)
        self._saved: dict[int, list[int]] = {}                # savings to record, per account
        self._rows: list[dict] = []                           # usage records of free hits to write
        self._reading: dict[str, asyncio.Future] = {}         # store reads in flight, per key
        self._eff: dict[tuple, Effective] = {}                # the policy resolved per model, account, key
        # request bytes already read, per key: (body, account, key id, key's allow-list) -> Recalled
        self._recalled: dict[tuple, Recalled] = {}
        self._recalled_bytes = 0
        self._free = not policy.hit_price   # every hit is free (the default)
        self._cursor: Any = None
        self._follow_every = follow_every
        self._tasks: set[asyncio.Task] = set()
        self._failing_until = 0.0
        self.semantic_ready = embedder is not None and index is not None

    # ------------------------------------------------------------------ the hot path
    def plan(self, body: dict, account_id: int, key_id: str | None, model: str) -> CachePlan | None:
        """None: bypass (the request is neither looked up nor stored)."""
        eff = self._eff.get((model, account_id, key_id))
        if eff is None:
            if len(self._eff) > 10_000:
                self._eff.clear()
            eff = self._eff[(model, account_id, key_id)] = self.policy.resolve(model, account_id, key_id)
        if bypass_reason(body, eff, self.policy.max_temperature) is not None:
            return None
        plan = CachePlan(eff, model, account_id, exact_key(body, model, eff.scope))
        if eff.semantic and self.semantic_ready:
            plan.text = last_user_text(body)
            if plan.text is not None:
                plan.context = context_key(body, model, eff.scope)
        return plan

    # ------------------------------------------------------------------ the same bytes again
    def recall(self, raw: bytes, auth: KeyAuth) -> Recalled | None:
        """What these exact request bytes were read as for this key and account before, if they
        were (`memorise`): the same bytes always parse, validate and normalise the same way, so
        a hit on them needs none of that again. Keyed by the bytes themselves (no hash to
        collide), the account, the key and its allow-list: another key, or this key after its
        allow-list changed, reads them afresh."""
        if len(raw) > RECALL_MAX_BODY:
            return None
        return self._recalled.get((raw, auth.account_id, auth.key_id, auth.models))

    def memorise(self, raw: bytes, auth: KeyAuth, recalled: Recalled) -> None:
        if len(raw) > RECALL_MAX_BODY or not recalled.eff.exact:
            return
        k = (raw, auth.account_id, auth.key_id, auth.models)
        if k in self._recalled:
            return
        if self._recalled_bytes + len(raw) > RECALL_MAX_BYTES or len(self._recalled) >= HOT_MAX * 4:
            self._recalled.clear()
            self._recalled_bytes = 0
        self._recalled[k] = recalled
        self._recalled_bytes += len(raw)

    async def lookup_exact(self, plan: CachePlan) -> bool:
        """The exact layer alone (a request recalled by its bytes): True on a hit (plan.entry set).
        Never raises: a failing store is a miss."""
        if time.monotonic() < self._failing_until:
            return False
        try:
            return await self._exact(plan, now_ms())
        except Exception as exc:  # noqa: BLE001 - the cache never fails a call
            self._failed("lookup", exc)
            return False

    async def _exact(self, plan: CachePlan, now: int) -> bool:
        exp = self._known.get(plan.key)
        if exp is not None:
            if exp > now and await self._fetch(plan, plan.key, now):
                return True
            self._known.pop(plan.key, None)
        return False

    async def lookup(self, plan: CachePlan) -> str:
        """"hit" (plan.entry set) or "miss". Never raises: a failing store or embedder is a miss."""
        now = now_ms()
        if time.monotonic() < self._failing_until:
            return "miss"
        try:
            if plan.eff.exact and await self._exact(plan, now):
                return "hit"
            # (a context is set only when the semantic layer is ready: an index and an embedder)
            index, embedder, text = self.index, self.embedder, plan.text
            if plan.context is not None and index is not None and embedder is not None and text is not None \
                    and index.has(plan.context):
                # (with nothing stored in this context, the question is embedded only if its
                # answer is stored, after the call, off the request's path)
                found: list[tuple[float, str, str]]
                if isinstance(embedder, ThreadEmbedder):     # the local embedder: one thread hop for both
                    plan.vector, found = await embedder.embed_then(
                        text, self._search_sync, plan.context, plan.eff.threshold, now)
                else:
                    plan.vector = await embedder.embed(text)
                    found = await index.search(plan.context, plan.vector, plan.eff.threshold, now)
                for score, key, stored in found:
                    if differs(text, stored, score) is None and await self._fetch(plan, key, now, plan.context):
                        return "hit"
        except Exception as exc:  # noqa: BLE001 - the cache never fails a call
            self._failed("lookup", exc)
        return "miss"

    def _search_sync(self, vector: np.ndarray, context: str, threshold: float,
                     now: int) -> list[tuple[float, str, str]]:
        assert self.index is not None
        return self.index.search_sync(context, vector, threshold, now)

    async def _fetch(self, plan: CachePlan, key: str, now: int, context: str | None = None) -> bool:
        hot = self._hot.get(key)
        entry: CacheEntry | None
        if hot is not None and time.monotonic() - hot[1] < HOT_SECONDS and hot[0].expires_at > now:
            entry = hot[0]
        else:
            entry = await self._read(key, now)
        if entry is None or entry.scope != plan.eff.scope or entry.model != plan.model or \
                (context is not None and entry.context != context):
            self._known.pop(key, None)
            if self.index is not None and entry is None:
                self.index.discard(key)
            return False
        plan.entry = entry
        n = self._used.get(key, (0, 0))[1]
        self._used[key] = (now, n + 1)
        return True

    async def _read(self, key: str, now: int) -> CacheEntry | None:
        """One store read per key at a time: concurrent asks of one question share it."""
        fut = self._reading.get(key)
        if fut is None:
            fut = self._reading[key] = asyncio.ensure_future(self.store.get(key, now))
            fut.add_done_callback(lambda _f: self._reading.pop(key, None))
        entry = await asyncio.shield(fut)
        if entry is not None:
            if len(self._hot) >= HOT_MAX:
                self._hot.clear()
            self._hot[key] = (entry, time.monotonic())
        else:
            self._hot.pop(key, None)
        return entry

    def _failed(self, what: str, exc: BaseException) -> None:
        if time.monotonic() >= self._failing_until:
            log.warning("cache %s failed, serving without the cache for 1 s: %s", what, exc)
        self._failing_until = time.monotonic() + 1.0

    # ------------------------------------------------------------------ a hit
    def hit_charge(self, plan: CachePlan) -> int:
        return 0 if self._free else hit_charge(plan.hit.charge, self.policy.hit_price)

    def hit_usage(self, plan: CachePlan) -> TokenUsage:
        """What the hit saved, recorded in usage as its tokens."""
        entry = plan.hit
        return TokenUsage(prompt_tokens=entry.prompt_tokens, completion_tokens=entry.completion_tokens)

    def answer(self, plan: CachePlan, call_id: str, charged: int, stream: bool, include_usage: bool) -> bytes:
        """The hit's body: its chat.completion, or streamed, its SSE events (domain/cache_entry.py's
        `hit_bytes`); its savings are recorded with the next flush (within 0.5 s)."""
        entry = plan.hit
        row = self._saved.get(plan.account_id)
        if row is None:
            row = self._saved[plan.account_id] = [0, 0, 0, 0]
        row[0] += 1
        row[1] += entry.prompt_tokens
        row[2] += entry.completion_tokens
        row[3] += max(0, entry.charge - charged)
        return hit_bytes(entry, stream, include_usage, charged, call_id, int(time.time()))

    def record(self, usage_row: dict) -> None:
        """A free hit's usage record, written with the next flush (no money moved)."""
        self._rows.append(usage_row)

    # ------------------------------------------------------------------ a miss
    def remember(self, plan: CachePlan, data: dict | None, raw: bytes | None, *, served_by: str, provider: str,
                 usage: TokenUsage, charge: int) -> None:
        """Store a completed answer (in the background) if it may be stored."""
        if data is None or served_by != plan.model or not storable(data):
            return
        body = raw if raw is not None else orjson.dumps(data)
        if len(body) > self.policy.max_entry_bytes:
            return
        now = now_ms()
        entry = CacheEntry(
            key=plan.key, scope=plan.eff.scope, account_id=plan.account_id, model=plan.model, response=body,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, charge=charge,
            created_at=now, expires_at=now + int(plan.eff.ttl_seconds * 1000), provider=provider)
        self._spawn(self._put(plan, entry))

    async def _put(self, plan: CachePlan, entry: CacheEntry) -> None:
        if plan.context is not None and plan.text is not None and self.embedder is not None:
            try:
                vec = plan.vector if plan.vector is not None else await self.embedder.embed(plan.text)
                entry.context, entry.query, entry.vector = plan.context, plan.text, vec.astype("<f4").tobytes()
            except Exception as exc:  # noqa: BLE001 - stored for the exact layer only
                log.warning("cache: embedding failed, the entry is stored for the exact layer only: %s", exc)
        try:
            await self.store.put(entry, self.policy.max_entries)
        except Exception as exc:  # noqa: BLE001 - an answer not stored is a later miss
            self._failed("store", exc)
            return
        self._learn(entry.key, entry.scope, entry.context, entry.query, entry.vector, entry.expires_at)

    def _learn(self, key: str, scope: str, context: str | None, query: str | None, vector: bytes | None,
               expires_at: int) -> None:
        self._known[key] = expires_at
        if context is not None and query is not None and vector is not None and self.index is not None:
            self.index.add(context, key, query, vector, expires_at)

    def _spawn(self, aw: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ other processes, upkeep
    async def refresh(self) -> int:
        """Learn the keys other processes stored since the last call; returns how many."""
        cursor, rows = await self.store.feed(self._cursor, now_ms())
        self._cursor = cursor
        new = 0
        for key, scope, context, query, vector, expires_at in rows:
            if self._known.get(key) != expires_at:
                new += 1
                self._learn(key, scope, context, query, vector, expires_at)
        if len(self._known) > 2 * self.policy.max_entries:
            self.forget_expired()
        return new

    def forget_expired(self) -> None:
        now = now_ms()
        for k in [k for k, exp in self._known.items() if exp <= now]:
            del self._known[k]
            if self.index is not None:
                self.index.discard(k)

    async def flush(self) -> None:
        """Write the hits (LRU times) and savings gathered since the last flush."""
        used, self._used = self._used, {}
        saved, self._saved = self._saved, {}
        rows, self._rows = self._rows, []
        if rows and self.savings_store is not None:
            try:
                await self.savings_store.record_usage(rows)
            except Exception:
                self._rows[:0] = rows       # kept for the next flush
                raise
        if used:
            await self.store.touch(used)
        if saved and self.savings_store is not None:
            try:
                await self.savings_store.add_savings(saved)
            except Exception:
                for acct, row in saved.items():     # kept for the next flush
                    mine = self._saved.setdefault(acct, [0, 0, 0, 0])
                    for i in range(4):
                        mine[i] += row[i]
                raise

    async def follow_forever(self) -> None:
        sweep_at = 0.0
        while True:
            try:
                await self.flush()
                await self.refresh()
                if time.monotonic() >= sweep_at:
                    sweep_at = time.monotonic() + 30
                    await self.store.sweep(now_ms(), self.policy.max_entries)
                    self.forget_expired()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep following; the next round retries
                log.warning("cache feed failed: %s", exc)
                await asyncio.sleep(1.0)
            await asyncio.sleep(self._follow_every)

    async def sweep(self) -> int:
        await self.flush()
        n = await self.store.sweep(now_ms(), self.policy.max_entries)
        self.forget_expired()
        return n

    async def purge(self, account_id: int | None = None, model: str | None = None) -> int:
        n = await self.store.purge(account_id, model)
        self._known.clear()
        self._hot.clear()
        if self.index is not None:
            self.index.clear()
        self._cursor = None     # relearn what is left
        await self.refresh()
        return n

    async def stats(self) -> dict:
        out = await self.store.stats(now_ms())
        if self.savings_store is not None:
            out["savings"] = await self.savings_store.totals()
        return out

    async def savings(self, account_id: int) -> dict:
        """What hits saved the account: the database's sums plus what this process is yet to write."""
        out = {"hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "saved": 0}
        if self.savings_store is not None:
            out = await self.savings_store.savings(account_id)
        pending = self._saved.get(account_id)
        if pending:
            out = {k: out[k] + pending[i] for i, k in enumerate(("hits", "prompt_tokens", "completion_tokens",
                                                                  "saved"))}
        return out

    async def drain(self) -> None:
        """Finish the background stores and write what is gathered (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - at shutdown: logged, the answers were served
            log.warning("cache: could not record the last hits: %s", exc)
