"""Usage rows of refused calls: a 401 for a known key (expired), a 402, a 403 (a model the key
may not call) and a 429 (rate limits, requests in flight), so an operator sees in `usage` why a
key's calls fail. Such a call moved no money: its row has zero cost and no hold, and nothing
else is written (no ledger entry). Rows are gathered in memory and written in one statement
half a second after the first of them, off the request's path; past MAX_PENDING waiting rows
(a flood of refusals while the database is slow) new ones are counted and dropped, not queued."""

from __future__ import annotations

import asyncio
import logging
import time
from os import urandom

from aicredits.domain.usage import usage_row
from aicredits.ports import BillingStore

log = logging.getLogger("aicredits.store")

RECORDED_STATUSES = frozenset({401, 402, 403, 429})
FLUSH_SECONDS = 0.5
MAX_PENDING = 10_000
REJECTED = "rejected"    # the usage row's end_state
# /v1 path -> the usage row's endpoint
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/embeddings": "embeddings",
             "/v1/images/generations": "images", "/v1/audio/speech": "speech",
             "/v1/audio/transcriptions": "transcription"}


class RejectedCalls:
    def __init__(self, store: BillingStore) -> None:
        self._store = store
        self._rows: list[dict] = []
        self.dropped = 0
        self._due = False                        # a flush is scheduled
        self._tasks: set[asyncio.Task] = set()   # flushes running

    def note(self, *, request_id: str, account_id: int, key_id: str | None, path: str, model: str, status: int,
             error: str | None, latency_ms: int) -> None:
        """A refused billable call (nothing is awaited here)."""
        if len(self._rows) >= MAX_PENDING:
            self.dropped += 1
            return
        now = int(time.time() * 1000)
        self._rows.append(usage_row(urandom(16).hex(), account_id, key_id, now, request_id=request_id,
                                    model=model[:200], status=status, end_state=REJECTED, error=error,
                                    endpoint=ENDPOINTS.get(path) or path.removeprefix("/v1/")[:32],
                                    latency_ms=latency_ms))
        if not self._due:   # one flush FLUSH_SECONDS after the first row waiting, on this loop
            self._due = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        self._due = False
        rows, self._rows = self._rows, []
        if self.dropped:
            log.warning("%d usage rows of refused calls were not recorded (too many waiting)", self.dropped)
            self.dropped = 0
        if not rows:
            return
        try:
            await self._store.record(rows)
        except Exception as exc:  # noqa: BLE001 - kept for the next flush (within the cap)
            log.warning("could not record %d refused calls yet: %s", len(rows), exc)
            self._rows[:0] = rows[: max(0, MAX_PENDING - len(self._rows))]
            if not self._due:   # tried again later
                self._due = True
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._start_flush)

    async def drain(self) -> None:
        """At shutdown: the flushes running, then what still waits."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()
