"""Replaying the grant journals of processes that died (services/quota.py): each call's own
charge, or for a call that was still running its last recorded progress, charged as the sweeper
charges a per-call hold (`swept_usage`), grouped by slice, one `charge_slice` each. Run by any
process on the same state directory, at start and before every sweep; idempotent by call id."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from aicredits.ports import BillingStore, GrantLog, Settlement
from aicredits.store.billing_sql import swept_usage

log = logging.getLogger("aicredits.billing")


async def replay_grant_journals(journal: GrantLog, store: BillingStore) -> int:
    """Settle what the grant journals of dead processes hold (on this state directory); how
    many calls. Safe to repeat: settling is idempotent by call id."""
    files = await asyncio.to_thread(journal.orphans)
    if not files:
        return 0
    ok = False
    try:
        records: dict[str, dict] = {}
        for fd, path in files:
            for rec in await asyncio.to_thread(journal.read, fd, path):
                records[rec["call_id"]] = rec          # a call's last line counts
        now = int(time.time() * 1000)
        groups: dict[str, tuple[int, str | None, list[Settlement]]] = {}
        for rec in records.values():
            if rec["t"] == "c":
                st = Settlement(rec["call_id"], rec["account_id"], rec["key_id"], rec["charge"], rec["usage"],
                                rec.get("note", ""))
            else:   # still running when its process died: its last progress, as the sweeper charges it
                row = rec["row"]
                usage = swept_usage(rec["call_id"], rec["account_id"], rec["key_id"], orjson.dumps(row).decode(),
                                    int(row.get("created_at") or now), now)
                usage["hold"] = rec["hold"]
                st = Settlement(rec["call_id"], rec["account_id"], rec["key_id"], rec["accrued"], usage,
                                usage.get("model") or "")
            groups.setdefault(rec["slice"], (rec["account_id"], rec["key_id"], []))[2].append(st)
        for slice_id, (account_id, key_id, items) in groups.items():
            await store.charge_slice(slice_id, account_id, key_id, items)
        ok = True
        if records:
            log.warning("grant journal: %d call(s) of a stopped process settled", len(records))
        return len(records)
    finally:
        for fd, path in files:
            journal.done(fd, path, remove=ok)
