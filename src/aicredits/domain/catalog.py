"""The model catalog: what can be called, from which provider, at which price.

Entries come from the built-in data file (aicredits/catalog/models.toml) merged with the
operator's TOML `[[models]]` (same fields; an entry with an existing id overrides it).

Prompt-size tiers: a token-priced entry may carry `tiers`, a list of tables each with
`above_prompt_tokens` (a positive int, strictly increasing along the list) and any of the
token price keys. A call whose total prompt (uncached + cache reads + cache writes) has more
than `above_prompt_tokens` tokens is priced, input, output and cache alike, at the last such
tier's prices; a key the tier omits keeps the entry's base value.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from aicredits.domain.money import to_fraction

ENDPOINTS = ("chat", "embeddings", "images", "speech", "transcription")
TOKEN_PRICE_FIELDS = ("input_cost_per_1m", "output_cost_per_1m", "cache_read_cost_per_1m",
                      "cache_write_cost_per_1m", "cache_write_1h_cost_per_1m")


@dataclass(frozen=True)
class Deployment:
    """One place a model is served: a configured provider, the id it takes, a weight."""
    provider: str
    upstream_id: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.upstream_id}"


@dataclass(frozen=True)
class PriceTier:
    """The per-1M prices of a whole call whose prompt has more than `above_prompt_tokens`
    tokens (base values filled in where the catalog tier omits a key; None as in ModelSpec:
    a cache price that is None bills at the tier's input price)."""
    above_prompt_tokens: int
    input: Fraction | None = None
    output: Fraction | None = None
    cache_read: Fraction | None = None
    cache_write: Fraction | None = None
    cache_write_1h: Fraction | None = None


TIER_KEYS = ("above_prompt_tokens",) + TOKEN_PRICE_FIELDS
# every key a catalog entry (models.toml, or the operator's [[models]]) may have
ENTRY_KEYS = ("id", "name", "provider", "upstream_id", "endpoint", "currency", "context_window",
              "max_output_tokens", "modalities") + TOKEN_PRICE_FIELDS + (
              "cost_per_1m_chars", "cost_per_minute", "cost_per_image", "tiers", "fallbacks", "deployments")
# models.toml key -> ModelSpec / PriceTier attribute
TOKEN_PRICE_ATTRS = dict(zip(TOKEN_PRICE_FIELDS, ("input", "output", "cache_read", "cache_write", "cache_write_1h")))


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    provider: str
    upstream_id: str
    endpoint: str = "chat"
    currency: str = "USD"
    context_window: int | None = None
    max_output_tokens: int | None = None
    modalities: tuple[str, ...] = ("text",)
    # prices per 1M units, in `currency`, exact
    input: Fraction | None = None
    output: Fraction | None = None
    cache_read: Fraction | None = None
    cache_write: Fraction | None = None
    cache_write_1h: Fraction | None = None
    per_1m_chars: Fraction | None = None
    per_minute: Fraction | None = None
    per_image: Mapping[str, Mapping[str, Fraction]] = field(default_factory=dict)
    tiers: tuple[PriceTier, ...] = ()     # prompt-size tiers, thresholds increasing
    fallbacks: tuple[str, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.deployments:
            object.__setattr__(self, "deployments", (Deployment(self.provider, self.upstream_id, 1.0),))

    @property
    def priced(self) -> bool:
        """A model is served only when every price its endpoint bills by is known."""
        if self.endpoint == "chat":
            return self.input is not None and self.output is not None
        if self.endpoint == "embeddings":
            return self.input is not None
        if self.endpoint == "speech":
            return self.per_1m_chars is not None
        if self.endpoint == "transcription":
            return self.per_minute is not None
        if self.endpoint == "images":
            return bool(self.per_image)
        return False


def _price(entry: Mapping[str, Any], key: str, model_id: str) -> Fraction | None:
    value = entry.get(key)
    if value is None:
        return None
    try:
        price = to_fraction(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"model {model_id}: {key} is not a number") from exc
    if price < 0:
        raise ValueError(f"model {model_id}: {key} must not be negative")
    return price


def _image_price(value: object, model_id: str) -> Fraction:
    price = _price({"p": value}, "p", model_id)
    if price is None:
        raise ValueError(f"model {model_id}: cost_per_image has a size or quality without a price")
    return price


def _tiers(entry: Mapping[str, Any], model_id: str, endpoint: str) -> tuple[PriceTier, ...]:
    raw = entry.get("tiers")
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(t, Mapping) for t in raw):
        raise ValueError(f"model {model_id}: tiers must be a list of tables "
                         f"({{above_prompt_tokens = N, input_cost_per_1m = ..., ...}})")
    if raw and endpoint not in ("chat", "embeddings"):
        raise ValueError(f"model {model_id}: tiers apply only to token-priced endpoints (chat, embeddings)")
    base = {key: _price(entry, key, model_id) for key in TOKEN_PRICE_FIELDS}
    tiers: list[PriceTier] = []
    for i, tier in enumerate(raw):
        where = f"model {model_id}: tiers[{i}]"
        unknown = sorted(str(k) for k in tier if k not in TIER_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; a tier takes "
                             f"{', '.join(TIER_KEYS)}")
        above = tier.get("above_prompt_tokens")
        if not isinstance(above, int) or isinstance(above, bool) or above < 1:
            raise ValueError(f"{where}: above_prompt_tokens must be a positive integer")
        if tiers and above <= tiers[-1].above_prompt_tokens:
            raise ValueError(f"{where}: above_prompt_tokens must be strictly increasing "
                             f"({above} after {tiers[-1].above_prompt_tokens})")
        if not any(k in tier for k in TOKEN_PRICE_FIELDS):
            raise ValueError(f"{where}: a tier must set at least one price")
        prices = {}
        for key in TOKEN_PRICE_FIELDS:
            own = _price(tier, key, f"{model_id} tiers[{i}]") if key in tier else None
            prices[TOKEN_PRICE_ATTRS[key]] = own if own is not None else base[key]
        tiers.append(PriceTier(above, **prices))
    return tuple(tiers)


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key.lower(), ENTRY_KEYS, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def spec_from_entry(entry: Mapping[str, Any]) -> ModelSpec:
    model_id = entry.get("id")
    if not isinstance(model_id, str) or "/" not in model_id:
        raise ValueError(f"catalog entry needs an id of the form provider/model: {entry!r}")
    unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if unknown:   # a misspelt price key would otherwise leave the model silently unpriced
        raise ValueError(f"model {model_id}: unknown key(s) {', '.join(unknown)}{_did_you_mean(unknown[0])}")
    endpoint = entry.get("endpoint", "chat")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"model {model_id}: endpoint must be one of {', '.join(ENDPOINTS)}")
    currency = str(entry.get("currency", "USD")).upper()
    if currency not in {"USD", "INR"}:
        raise ValueError(f"model {model_id}: currency must be USD or INR")
    per_image: dict[str, dict[str, Fraction]] = {}
    images = entry.get("cost_per_image") or {}
    if not isinstance(images, Mapping) or not all(isinstance(q, Mapping) for q in images.values()):
        raise ValueError(f"model {model_id}: cost_per_image must map size -> quality -> price")
    for size, qualities in images.items():
        per_image[str(size)] = {str(q): _image_price(v, model_id) for q, v in qualities.items()}
    for key in ("context_window", "max_output_tokens"):
        v = entry.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"model {model_id}: {key} must be a positive integer")
    provider = entry.get("provider") or model_id.split("/", 1)[0]
    upstream_id = entry.get("upstream_id") or model_id.split("/", 1)[1]
    deployments = []
    for d in entry.get("deployments") or ():
        if not isinstance(d, Mapping) or not d.get("provider"):
            raise ValueError(f"model {model_id}: each deployment needs a provider")
        weight = d.get("weight", 1)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f"model {model_id}: a deployment's weight must be a positive number")
        deployments.append(Deployment(str(d["provider"]), str(d.get("upstream_id") or upstream_id), float(weight)))
    fallbacks = entry.get("fallbacks") or ()
    if not isinstance(fallbacks, (list, tuple)) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"model {model_id}: fallbacks must be a list of model ids")
    return ModelSpec(
        id=model_id,
        name=entry.get("name") or model_id.split("/", 1)[1],
        provider=provider,
        upstream_id=upstream_id,
        endpoint=endpoint,
        currency=currency,
        context_window=entry.get("context_window"),
        max_output_tokens=entry.get("max_output_tokens"),
        modalities=tuple(entry.get("modalities") or ("text",)),
        input=_price(entry, "input_cost_per_1m", model_id),
        output=_price(entry, "output_cost_per_1m", model_id),
        cache_read=_price(entry, "cache_read_cost_per_1m", model_id),
        cache_write=_price(entry, "cache_write_cost_per_1m", model_id),
        cache_write_1h=_price(entry, "cache_write_1h_cost_per_1m", model_id),
        per_1m_chars=_price(entry, "cost_per_1m_chars", model_id),
        per_minute=_price(entry, "cost_per_minute", model_id),
        per_image=per_image,
        tiers=_tiers(entry, model_id, endpoint),
        fallbacks=tuple(fallbacks),
        deployments=tuple(deployments),
        raw=dict(entry),
    )


class Catalog:
    """Models by id, with bare OpenAI names resolving to their openai/ entry."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._by_id: dict[str, ModelSpec] = {}
        for spec in specs:
            self._by_id[spec.id] = spec

    @classmethod
    def from_entries(cls, builtin: Iterable[Mapping[str, Any]],
                     overrides: Iterable[Mapping[str, Any]] = ()) -> Catalog:
        merged: dict[str, dict] = {}
        for entry in builtin:
            merged[entry["id"]] = dict(entry)
        for entry in overrides:
            model_id = entry.get("id")
            if not isinstance(model_id, str):
                raise ValueError(f"[[models]] entry without an id: {entry!r}")  # noqa: TRY004 - a config error
            base = merged.get(model_id, {})
            merged[model_id] = {**base, **entry}
        return cls(spec_from_entry(e) for e in merged.values())

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, model: str) -> ModelSpec | None:
        spec = self._by_id.get(model)
        if spec is None:
            if "/" not in model:
                spec = self._by_id.get("openai/" + model)
            elif model.startswith("gemini/"):   # Google's models answer to gemini/... too
                spec = self._by_id.get("google/" + model[7:])
        return spec
