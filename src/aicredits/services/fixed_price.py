"""The one metering path of the endpoints whose worst case is known before the call: images,
speech, transcription and embeddings. The hold is the dearest cost over the fallback chain (a
402 when it does not fit); the call runs through the router's retries and fallbacks; the charge
is what the answer costs at the prices of the model that gave it (at most the hold)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.pricing import Rates
from aicredits.services.metering import Meter, Metering
from aicredits.services.routing import Router, Target

T = TypeVar("T")


class FixedPriceService:
    def __init__(self, router: Router, rates: Rates, metering: Metering) -> None:
        self._router = router
        self._rates = rates
        self._metering = metering

    async def _call(self, meter: Meter, chain: list[ModelSpec], worst: int,
                    call: Callable[[Target], Awaitable[T]]) -> tuple[T, Target]:
        """Hold `worst`, then run `call(target)` (the provider's method for this endpoint) on each
        candidate in turn: (the answer, the routing target that gave it). The caller settles
        from the answer."""
        meter.model = chain[0].id
        await self._metering.hold_fixed(meter, worst)
        return await self._metering.route(meter, self._router, chain, call)

    async def _priced(self, meter: Meter, chain: list[ModelSpec], call: Callable[[Target], Awaitable[T]],
                      price: Callable[[ModelSpec], int]) -> T:
        """A call whose price depends only on the model (speech by characters, transcription by
        seconds): held at the dearest, charged exactly the price of the model that answered."""
        result, target = await self._call(meter, chain, max(price(s) for s in chain), call)
        await self._metering.settle(meter, price(target.spec))
        return result
