"""What the admin pages show of this process rather than the database: the catalog with the
INR prices in force (rate and markup applied; entries the operator's config overrides or adds
marked), and each provider's status: its deployments' circuit breakers (services/routing.py)
beside the error rate and latency of its most recent calls (usage records, every process)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from fractions import Fraction

from aicredits.domain.catalog import TOKEN_PRICE_FIELDS, Catalog, ModelSpec
from aicredits.domain.money import ceil_fraction
from aicredits.domain.pricing import Rates, inr_rate_view
from aicredits.services.routing import Router
from aicredits.store import history as history_repo
from aicredits.store.db import Engine

RECENT_CALLS = 5000            # the newest calls looked at
RECENT_MS = 60 * 60 * 1000     # ... within the last hour
TOKEN_LABELS = dict(zip(TOKEN_PRICE_FIELDS, ("input", "output", "cache read", "cache write (5 min)",
                                              "cache write (1 h)"), strict=True))


def _micros(v: Fraction | None) -> int | None:
    """INR as micro-INR, rounded up (as charges are)."""
    return None if v is None else ceil_fraction(v * 1_000_000)


def percentile(values: list[int], p: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class Runtime:
    def __init__(self, catalog: Catalog, rates: Rates, router: Router, served: set[str],
                 builtin_ids: Iterable[str] = (), configured: Iterable[str] = ()) -> None:
        self.catalog = catalog
        self.rates = rates
        self.router = router
        self.served = served
        self._builtin = set(builtin_ids)
        self._configured = set(configured)

    def _prices(self, spec: ModelSpec) -> list[tuple[str, str, int | None, int | None]]:
        """(what, unit, catalog price in micro-units of its currency, INR in micro-INR)."""
        out = []
        for field in TOKEN_PRICE_FIELDS:
            price = spec.raw.get(field)
            if price is None:
                continue
            attr = {"input_cost_per_1m": spec.input, "output_cost_per_1m": spec.output,
                    "cache_read_cost_per_1m": spec.cache_read, "cache_write_cost_per_1m": spec.cache_write,
                    "cache_write_1h_cost_per_1m": spec.cache_write_1h}[field]
            out.append((TOKEN_LABELS[field], "1M tokens", _micros(attr), _micros(inr_rate_view(attr, spec,
                                                                                                 self.rates))))
        if spec.per_1m_chars is not None:
            out.append(("speech", "1M characters", _micros(spec.per_1m_chars),
                        _micros(inr_rate_view(spec.per_1m_chars, spec, self.rates))))
        if spec.per_minute is not None:
            out.append(("audio", "minute", _micros(spec.per_minute),
                        _micros(inr_rate_view(spec.per_minute, spec, self.rates))))
        for size, by_quality in sorted(spec.per_image.items()):
            for quality, price in sorted(by_quality.items()):
                out.append((f"image {size} {quality}", "image", _micros(price),
                            _micros(inr_rate_view(price, spec, self.rates))))
        return out

    def catalog_rows(self) -> list[dict]:
        rows = []
        for spec in sorted(self.catalog, key=lambda s: s.id):
            origin = ("config" if spec.id not in self._builtin else "override") if spec.id in self._configured \
                else "built-in"
            rows.append({"id": spec.id, "name": spec.name, "provider": spec.provider, "endpoint": spec.endpoint,
                         "currency": spec.currency, "priced": spec.priced, "served": spec.id in self.served,
                         "origin": origin, "prices": self._prices(spec), "tiers": len(spec.tiers),
                         "fallbacks": list(spec.fallbacks), "context_window": spec.context_window})
        return rows

    async def provider_status(self, engine: Engine) -> list[dict]:
        """Per configured provider: its deployments' breakers and its recent calls' error rate
        and latency (p50, p95)."""
        since = int(time.time() * 1000) - RECENT_MS
        async with engine.connect() as conn:
            calls = await history_repo.recent_calls(conn, since=since, limit=RECENT_CALLS)
        breakers = self.router.breaker_states()
        out = []
        for name in sorted(self.router.providers):
            mine = [c for c in calls if c["provider"] == name]
            errors = sum(1 for c in mine if c["status"] >= 500 or c["status"] in (408, 429))
            ok_latency = [c["latency_ms"] for c in mine if c["status"] < 400]
            deployments = []
            for dep, (failures, open_for) in sorted(breakers.items()):
                if dep.split(":", 1)[0] == name:
                    deployments.append({"name": dep, "failures": failures, "open_for": open_for,
                                        "state": "open" if open_for > 0 else ("failing" if failures else "closed")})
            out.append({"name": name, "calls": len(mine), "errors": errors,
                        "error_rate": (errors / len(mine)) if mine else None,
                        "p50": percentile(ok_latency, 0.5), "p95": percentile(ok_latency, 0.95),
                        "deployments": deployments,
                        "state": "open" if any(d["state"] == "open" for d in deployments) else "closed"})
        return out
