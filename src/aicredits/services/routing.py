"""Routing: which deployments serve a call, in which order, with retries, fallbacks and a
circuit breaker per deployment.

A model may be served by several deployments (weighted at random). Only a request the provider
cannot have processed is sent again (docs/errors.md, "Retries"): after no connection, or a 429 or
5xx answered before any body, the same deployment is retried with exponential backoff and jitter,
then the next deployment, then the next model of the chain: the request's `models` list
(OpenRouter's convention), then the model's configured `fallbacks` (refused credentials and
unknown models move on without a retry). A timeout, a connection lost after the request went out,
or a partly read answer ends the call: the provider may be working on it, and may bill it.
All attempts share one deadline, so retries never make a client wait longer than one attempt
could. Nothing is retried once a byte reached the client: the router only wraps what happens
before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aicredits.domain.catalog import Catalog, Deployment, ModelSpec
from aicredits.domain.keys import model_allowed
from aicredits.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    UpstreamTimeout,
)
from aicredits.telemetry import NO_METRICS, Metrics, current_request

log = logging.getLogger("aicredits.routing")
T = TypeVar("T")
MAX_CHAIN = 8


@dataclass(frozen=True)
class Target:
    spec: ModelSpec
    deployment: Deployment
    provider: object

    @property
    def upstream_id(self) -> str:
        return self.deployment.upstream_id

    @property
    def name(self) -> str:
        return self.deployment.name


@dataclass(frozen=True)
class RoutePolicy:
    retries: int = 2                 # further attempts on the same deployment
    base_delay: float = 0.2          # seconds; doubled per attempt, with +-50% jitter
    max_delay: float = 2.0           # a longer Retry-After moves on instead of waiting
    breaker_failures: int = 5        # consecutive failures that open a deployment's breaker
    breaker_cooldown: float = 30.0   # seconds a breaker stays open before one trial call
    deadline: float = 120.0          # seconds all attempts share (a provider's longer first-byte timeout wins)


class PastDeadline(Exception):
    """The call's own limit (`Router.run`'s `until`) passed during its attempts."""


class Breaker:
    __slots__ = ("failures", "open_until")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def closed(self, now: float) -> bool:
        return self.open_until <= now

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def failure(self, now: float, policy: RoutePolicy) -> None:
        self.failures += 1
        if self.failures >= policy.breaker_failures:
            self.open_until = now + policy.breaker_cooldown


class Router:
    def __init__(self, catalog: Catalog, providers: Mapping[str, object], policy: RoutePolicy | None = None,
                 rng: random.Random | None = None, metrics: Metrics = NO_METRICS) -> None:
        self.catalog = catalog
        self.providers = providers
        self.policy = policy or RoutePolicy()
        self._rng = rng or random.Random()
        self._breakers: dict[str, Breaker] = {}
        self.metrics = metrics   # counts failed attempts (telemetry.py)

    # ------------------------------------------------------------------ which models
    def _check(self, model: str, endpoint: str) -> ModelSpec:
        spec = self.catalog.get(model)
        if spec is None:
            raise NotFound(f"The model '{model}' does not exist. GET /api/models lists the models.", param="model")
        if spec.endpoint != endpoint:
            raise InvalidRequest(f"The model '{spec.id}' is a {spec.endpoint} model and cannot be used with "
                                 f"this endpoint.", param="model")
        if not spec.priced:
            log.error("refused unpriced model %s: the catalog has no price for it", spec.id)
            raise InvalidRequest(f"The model '{spec.id}' has no price in this gateway's catalog, so it is not "
                                 "served.", param="model")
        if not any(d.provider in self.providers for d in spec.deployments):
            raise NotFound(f"The model '{spec.id}' is not served here: no provider of it is configured.",
                           param="model")
        return spec

    def chain(self, model: str, endpoint: str, extra: object = None) -> list[ModelSpec]:
        """The requested model, then the request's `models`, then configured fallbacks."""
        if extra is not None and (not isinstance(extra, list) or not all(isinstance(m, str) for m in extra)):
            raise InvalidRequest("'models' must be an array of model ids.", param="models")
        state = current_request()
        allow = state.allow if state is not None else None   # the key's model allow-list, if any
        if state is not None and isinstance(model, str):
            state.model = model[:200]
        for name in (model, *(extra or [])) if allow else ():
            if allow and isinstance(name, str) and not model_allowed(allow, name):
                raise PermissionDenied(f"This API key may not call the model '{name}': it is limited to "
                                       f"{', '.join(allow)}.", param="model")
        first = self._check(model, endpoint)
        out, seen = [first], {first.id}
        for name in [*(extra or []), *first.fallbacks]:
            if len(out) >= MAX_CHAIN:
                break
            if allow and not model_allowed(allow, name):   # a configured fallback the key may not use
                continue
            try:
                spec = self._check(name, endpoint)
            except GatewayError as exc:
                if name in (extra or []):
                    raise
                log.warning("skipping fallback %s of %s: %s", name, first.id, exc.message)
                continue
            if spec.id not in seen:
                seen.add(spec.id)
                out.append(spec)
        return out

    # ------------------------------------------------------------------ which deployments
    def _breaker(self, name: str) -> Breaker:
        b = self._breakers.get(name)
        if b is None:
            b = self._breakers[name] = Breaker()
        return b

    def targets(self, spec: ModelSpec) -> list[Target]:
        """Configured deployments, weighted-random order; open breakers last."""
        pool = [d for d in spec.deployments if d.provider in self.providers]
        if len(pool) > 1:
            ordered = []
            while pool:
                pick = self._rng.choices(range(len(pool)), weights=[d.weight for d in pool])[0]
                ordered.append(pool.pop(pick))
            pool = ordered
            now = time.monotonic()
            pool.sort(key=lambda d: not self._breaker(d.name).closed(now))
        return [Target(spec, d, self.providers[d.provider]) for d in pool]

    def breaker_states(self) -> dict[str, tuple[int, float]]:
        """deployment name -> (consecutive failures, seconds its breaker stays open; 0: closed),
        for the deployments that have been called."""
        now = time.monotonic()
        return {name: (b.failures, max(0.0, b.open_until - now)) for name, b in self._breakers.items()}

    # ------------------------------------------------------------------ the attempts
    def _delay(self, attempt: int, retry_after: int | None) -> float | None:
        p = self.policy
        if retry_after is not None:
            return float(retry_after) if retry_after <= p.max_delay else None
        return min(p.max_delay, p.base_delay * (2 ** attempt)) * self._rng.uniform(0.5, 1.5)

    def _budget(self, chain: list[ModelSpec]) -> float:
        """Seconds all attempts of a call share: the longest first-byte timeout among the chain's
        providers (each provider's own `timeout`, else AICREDITS_UPSTREAM_TIMEOUT)."""
        budget = self.policy.deadline
        for spec in chain:
            for d in spec.deployments:
                t = getattr(self.providers.get(d.provider), "first_byte_timeout", None)
                if isinstance(t, (int, float)) and t > budget:
                    budget = float(t)
        return budget

    async def run(self, chain: list[ModelSpec], attempt: Callable[[Target], Awaitable[T]],
                  until: float | None = None) -> tuple[T, Target]:
        """The first attempt that succeeds, and its target. `until` (the event loop's clock): the
        call's own limit; past it, during an attempt or a wait between two, PastDeadline is raised.
        Each attempt runs under one timer, at the sooner of the two deadlines."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget(chain)
        bound_at = deadline if until is None or until > deadline else until
        last: GatewayError | None = None
        for spec in chain:
            for target in self.targets(spec):
                breaker = self._breaker(target.name)
                if not breaker.closed(time.monotonic()) and last is not None:
                    continue
                for n in range(self.policy.retries + 1):
                    if last is not None and loop.time() >= deadline:
                        raise last
                    bound = asyncio.timeout_at(bound_at)
                    try:
                        async with bound:
                            result = await attempt(target)
                    except TimeoutError:
                        if not bound.expired():
                            raise
                        if bound_at != deadline:   # the call's limit, not the attempts' deadline
                            raise PastDeadline() from None
                        breaker.failure(time.monotonic(), self.policy)
                        self.metrics.upstream_failed(target.deployment.provider, target.name, UpstreamTimeout.status)
                        log.warning("attempt %d on %s passed the call's deadline", n + 1, target.name)
                        raise UpstreamTimeout(f"The {target.deployment.provider} provider did not answer in time.") \
                            from None
                    except GatewayError as exc:
                        self.metrics.upstream_failed(target.deployment.provider, target.name, exc.status)
                        if exc.retryable or exc.provider_fault:
                            breaker.failure(time.monotonic(), self.policy)
                        if not (exc.retryable or exc.fallback):
                            raise
                        last = exc
                        log.warning("attempt %d on %s failed: %s", n + 1, target.name, exc.message)
                        if not exc.retryable or n == self.policy.retries:
                            break
                        delay = self._delay(n, exc.retry_hint)
                        if delay is None or loop.time() + delay >= deadline:
                            break
                        if loop.time() + delay >= bound_at:   # the call's limit comes first
                            await asyncio.sleep(bound_at - loop.time())
                            raise PastDeadline()
                        await asyncio.sleep(delay)
                    else:
                        breaker.success()
                        return result, target
        if last is None:
            raise ServiceUnavailable("Every deployment of this model is failing right now; try again shortly.",
                                     retry_after=int(self.policy.breaker_cooldown))
        raise last
