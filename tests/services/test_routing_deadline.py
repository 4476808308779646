"""Router.run with the call's own limit (`until`), which Metering.route passes instead of a timer
of its own: each attempt runs under one timer, at the sooner of the attempts' deadline and the
call's limit; the limit raises PastDeadline (a 504 "ran longer than the gateway's limit"), never a
provider failure, whether it passes during an attempt or in the wait before a retry."""

from __future__ import annotations

import asyncio
import random
from fractions import Fraction

import pytest

from aicredits.domain.catalog import Catalog, ModelSpec
from aicredits.errors import ServiceUnavailable, UpstreamTimeout
from aicredits.services.routing import PastDeadline, RoutePolicy, Router, Target


def router(**policy: float) -> tuple[Router, list[ModelSpec]]:
    spec = ModelSpec(id="m", name="m", provider="p", upstream_id="u", input=Fraction(1), output=Fraction(1))
    r = Router(Catalog([spec]), {"p": object()}, RoutePolicy(**policy), rng=random.Random(1))
    return r, r.chain("m", "chat")


async def test_the_calls_limit_cuts_an_attempt_and_is_no_provider_failure():
    r, chain = router(deadline=30.0)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def attempt(target: Target) -> str:
        await asyncio.sleep(5)
        return "late"
    with pytest.raises(PastDeadline):
        await r.run(chain, attempt, until=started + 0.2)
    assert 0.15 < loop.time() - started < 1.0
    assert r.breaker_states()["p:u"] == (0, 0.0)   # the provider did nothing wrong


async def test_the_attempts_deadline_when_it_comes_first_is_the_providers_timeout():
    r, chain = router(deadline=0.2)
    loop = asyncio.get_running_loop()

    async def attempt(target: Target) -> str:
        await asyncio.sleep(5)
        return "late"
    with pytest.raises(UpstreamTimeout, match="did not answer in time"):
        await r.run(chain, attempt, until=loop.time() + 30)
    assert r.breaker_states()["p:u"][0] == 1


async def test_the_calls_limit_passing_in_the_wait_before_a_retry_ends_the_call_then():
    """A retry 0.5 s away, the call's limit 0.2 s away: the call ends at its limit, as it did
    when the limit was a timer around the whole routing."""
    r, chain = router(deadline=30.0, base_delay=0.5, retries=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    calls = 0

    async def attempt(target: Target) -> str:
        nonlocal calls
        calls += 1
        exc = ServiceUnavailable("busy")
        exc.retryable = exc.fallback = exc.provider_fault = True
        exc.retry_hint = None
        raise exc
    r._delay = lambda attempt, retry_after: 0.5    # type: ignore[method-assign]   # no jitter
    with pytest.raises(PastDeadline):
        await r.run(chain, attempt, until=started + 0.2)
    assert calls == 1
    assert 0.15 < loop.time() - started < 0.45


async def test_without_a_limit_the_router_is_as_it_was():
    r, chain = router()

    async def attempt(target: Target) -> str:
        return target.name
    assert (await r.run(chain, attempt))[0] == "p:u"
