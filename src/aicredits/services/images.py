"""POST /v1/images/generations: priced per image by model, size and quality.

Hold = n x the image price (the dearest over the fallback chain); charge = the images actually
returned x the price of the model that answered. gpt-image-1's `quality: "auto"` (its
default) and `size: "auto"` are held at the dearest priced choice and charged at the quality
and size the upstream reports, else at that dearest choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import orjson

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.pricing import images_cost
from aicredits.errors import GatewayError, InvalidRequest
from aicredits.ports import KeyAuth
from aicredits.providers.base import ImagesProvider
from aicredits.services.fixed_price import FixedPriceService
from aicredits.services.metering import Meter
from aicredits.services.validation import whole_number

log = logging.getLogger("aicredits.images")

DEFAULT_MODEL = "dall-e-3"
DEFAULT_SIZE = "1024x1024"
PROMPT_MAX = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt-image": 32000, "other": 32000}
QUALITIES = {"dall-e-2": ("standard",), "dall-e-3": ("standard", "hd"),
             "gpt-image": ("low", "medium", "high", "auto")}
DEFAULT_QUALITY = {"dall-e-2": "standard", "dall-e-3": "standard", "gpt-image": "auto"}


def family(spec: ModelSpec) -> str:
    uid = spec.upstream_id.lower()
    for fam in ("gpt-image", "dall-e-3", "dall-e-2"):
        if uid.startswith(fam):
            return fam
    return "other"


@dataclass(frozen=True)
class ImagePlan:
    spec: ModelSpec
    family: str
    size: str            # as sent upstream ("auto" allowed for gpt-image)
    quality: str | None  # as sent upstream (None: not sent)
    price: Fraction      # catalog price of one image for the hold (the dearest when "auto")

    def charge_price(self, reported: dict) -> Fraction:
        """The price of one returned image: what the upstream says it made when we asked "auto"."""
        size = self.size
        quality = self.quality
        if size == "auto" and isinstance(reported.get("size"), str) and reported["size"] in self.spec.per_image:
            size = reported["size"]
        if quality in (None, "auto") and isinstance(reported.get("quality"), str):
            quality = reported["quality"]
        by_quality = self.spec.per_image.get(size) if size != "auto" else None
        if by_quality and quality is not None and quality in by_quality:
            return by_quality[quality]
        return self.price


def _int(body: dict, key: str, default: int) -> int:
    whole_number(body, key)
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be an integer.", param=key)
    return value


def validate_images(body: object) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        body = {**body, "model": DEFAULT_MODEL}
    elif not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a string.", param="model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("'prompt' is required and must be a non-empty string.", param="prompt")
    for key in ("size", "quality", "style", "response_format"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidRequest(f"'{key}' must be a string.", param=key)
    if body.get("response_format") not in (None, "url", "b64_json"):
        raise InvalidRequest("'response_format' must be 'url' or 'b64_json'.", param="response_format")
    if body.get("style") not in (None, "vivid", "natural"):
        raise InvalidRequest("'style' must be 'vivid' or 'natural'.", param="style")
    if body.get("stream"):
        raise InvalidRequest("Streaming image generation is not supported by this gateway.", param="stream")
    return body


def plan_for(spec: ModelSpec, body: dict, n: int) -> ImagePlan:
    """How this model makes the request's images, and their price; a 400 when it cannot."""
    fam = family(spec)
    if len(body["prompt"]) > PROMPT_MAX[fam]:
        raise InvalidRequest(f"'prompt' is too long for {spec.id}: at most {PROMPT_MAX[fam]} characters.",
                             param="prompt")
    if fam == "dall-e-3" and n != 1:
        raise InvalidRequest(f"{spec.id} makes one image per request: 'n' must be 1.", param="n")
    if not 1 <= n <= 10:
        raise InvalidRequest("'n' must be between 1 and 10.", param="n")
    if body.get("style") is not None and fam not in ("dall-e-3", "other"):
        raise InvalidRequest(f"'style' is only supported by dall-e-3, not {spec.id}.", param="style")
    size = body.get("size") or DEFAULT_SIZE
    if size == "auto" and fam == "gpt-image":
        sizes = list(spec.per_image)
    elif size in spec.per_image:
        sizes = [size]
    else:
        raise InvalidRequest(f"The size '{size}' is not priced for {spec.id}; priced sizes: "
                             f"{', '.join(spec.per_image)}.", param="size")
    given = body.get("quality")
    quality = given or DEFAULT_QUALITY.get(fam)
    allowed = QUALITIES.get(fam)
    if allowed is not None and quality not in allowed:
        raise InvalidRequest(f"'quality' must be one of {', '.join(allowed)} for {spec.id}.", param="quality")
    prices: list[Fraction] = []
    for s in sizes:
        by_quality = spec.per_image[s]
        if quality in (None, "auto"):       # the dearest the upstream may choose
            prices.extend(by_quality.values())
        elif quality in by_quality:
            prices.append(by_quality[quality])
        else:
            raise InvalidRequest(f"The quality '{quality}' is not priced for {spec.id} at {s}; priced: "
                                 f"{', '.join(by_quality)}.", param="quality")
    send_quality = quality if (fam in ("dall-e-3", "gpt-image") or given) else None
    return ImagePlan(spec, fam, size, send_quality, max(prices))


def upstream_body(body: dict, plan: ImagePlan, n: int) -> dict:
    out = {k: v for k, v in body.items() if k not in ("models", "quality", "style", "response_format")}
    out["n"], out["size"] = n, plan.size
    if plan.quality is not None:
        out["quality"] = plan.quality
    if body.get("style") is not None and plan.family in ("dall-e-3", "other"):
        out["style"] = body["style"]
    if body.get("response_format") is not None and plan.family != "gpt-image":   # gpt-image: always b64
        out["response_format"] = body["response_format"]
    return out


class ImagesService(FixedPriceService):
    def _plans(self, chain: list[ModelSpec], body: dict, n: int) -> dict[str, ImagePlan]:
        plans = {chain[0].id: plan_for(chain[0], body, n)}
        for spec in chain[1:]:
            try:
                plans[spec.id] = plan_for(spec, body, n)
            except GatewayError as exc:
                log.warning("skipping fallback %s of %s: %s", spec.id, chain[0].id, exc.message)
        return plans

    async def create(self, body: object, auth: KeyAuth, request_id: str, started: float) -> tuple[bytes, Meter]:
        body = validate_images(body)
        n = _int(body, "n", 1)
        chain = self._router.chain(body["model"], "images", body.get("models"))
        plans = self._plans(chain, body, n)
        chain = [s for s in chain if s.id in plans]
        worst = max(images_cost(p.spec, self._rates, p.price, n) for p in plans.values())
        meter = Meter(request_id, auth, "images", started)
        result, target = await self._call(meter, chain, worst,
                                          lambda t: cast(ImagesProvider, t.provider).images(
                                              upstream_body(body, plans[t.spec.id], n), t))
        data = result.data
        images = data.get("data")
        images = images if isinstance(images, list) else []
        meter.units = count = min(len(images), n)
        price = plans[target.spec.id].charge_price(data)
        await self._metering.settle(meter, images_cost(target.spec, self._rates, price, count) if count else 0)
        return (result.raw if result.raw is not None else orjson.dumps(data)), meter
