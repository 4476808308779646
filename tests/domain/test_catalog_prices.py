"""The built-in catalog's prices, checked against genai-prices (pydantic's price data).

genai-prices ships its price data inside the package; this test reads only that bundled
snapshot (it never calls UpdatePrices, which downloads). For every catalog model genai-prices
covers, our per-1M prices must equal its standard prices in force today (no batch/flex
variant), and where it prices a model by prompt-size tiers, every tier a prompt can reach
(one that starts below our context_window) must be in our `tiers` with the same threshold
and prices, and we may have no tier it lacks. A tier no prompt can reach is listed in
UNREACHABLE_TIERS with the reason. Models it does not cover, or that we deliberately price
differently, are in ALLOWED with the reason; where the reason rests on genai-prices' own
numbers, those numbers are recorded and checked too, so a change upstream still fails here.
See docs/providers.md, "How catalog prices are checked".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from importlib import resources

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.types import PriceCalculation, TieredPrices

from aicredits.catalog import load_catalog
from aicredits.domain.catalog import ModelSpec
from aicredits.domain.pricing import Rates, TokenUsage, token_prices

CATALOG = load_catalog()          # the built-in catalog, as the app loads it (no operator overrides)
GENAI = f"genai-prices {genai_prices.__version__}"

# our provider kind -> genai-prices provider id
GENAI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}

# (our ModelSpec field, models.toml key, genai-prices price key) for token-priced endpoints
TOKEN_PRICES = (
    ("input", "input_cost_per_1m", "input_mtok"),
    ("output", "output_cost_per_1m", "output_mtok"),
    ("cache_read", "cache_read_cost_per_1m", "cache_read_mtok"),
    ("cache_write", "cache_write_cost_per_1m", "cache_write_mtok"),
    ("cache_write_1h", "cache_write_1h_cost_per_1m", "cache_write_1h_mtok"),
)

# genai-prices tiers we leave out because no prompt can reach them: a tier applies to prompts
# of more than `start` tokens, and a prompt cannot exceed the model's context_window.
# model id -> (start, reason); each entry repeats the models.toml comment that explains it.
UNREACHABLE_TIERS: dict[str, tuple[int, str]] = {
    "anthropic/claude-sonnet-4.5": (200000, ("the >200k tier needed the 1M-context beta, which Anthropic "
                                             "retired; context_window 200000")),
}


@dataclass(frozen=True)
class Allowed:
    reason: str
    # genai-prices' standard prices the reason relies on ({price key: value}), checked so a
    # change upstream is noticed; None: genai-prices does not cover the model (checked too)
    upstream: dict[str, str] | None = field(default=None)


ALLOWED: dict[str, Allowed] = {
    "openai/gpt-4o-mini-tts": Allowed(
        "DERIVED per-character price ($20/1M chars) from OpenAI's token prices and its $0.015/min estimate; "
        "genai-prices bills it by tokens",
        {"input_mtok": "0.6", "output_mtok": "12"}),
    "openai/gpt-4o-transcribe": Allowed(
        "per-minute price is OpenAI's published estimate ($0.006/min); genai-prices bills it by tokens",
        {"input_mtok": "2.5", "output_mtok": "10", "input_audio_mtok": "6"}),
    "openai/gpt-4o-mini-transcribe": Allowed(
        "per-minute price is OpenAI's published estimate ($0.003/min); genai-prices bills it by tokens",
        {"input_mtok": "1.25", "output_mtok": "5", "input_audio_mtok": "3"}),
    "openai/gpt-image-1": Allowed(
        "priced per image by size and quality (OpenAI pricing page); genai-prices has token prices only, "
        "and the prompt's text tokens are not included in our per-image prices",
        {"input_mtok": "5", "output_mtok": "40"}),
    "openai/dall-e-2": Allowed("per-image prices (OpenAI's pricing page); not in genai-prices"),
    "openai/dall-e-3": Allowed("per-image prices (OpenAI's pricing page); not in genai-prices"),
    "sarvam/bulbul-v2": Allowed("INR-native price from Sarvam's pricing page; Sarvam is not in genai-prices"),
    "sarvam/saarika-v2": Allowed("INR-native price from Sarvam's pricing page; Sarvam is not in genai-prices"),
    "demo/echo": Allowed("offline demo model, priced like gpt-4o-mini on purpose; no upstream"),
}

CHECKED = [spec.id for spec in CATALOG if spec.id not in ALLOWED]


# ------------------------------------------------------------------ helpers
def _genai(spec: ModelSpec) -> PriceCalculation:
    """genai-prices' standard prices in force now for the model, from the bundled data only."""
    provider_id = GENAI_PROVIDER.get(spec.provider)
    if provider_id is None:
        raise LookupError(f"no genai-prices provider for our provider kind {spec.provider!r}")
    calc = calc_price(Usage(), model_ref=spec.upstream_id, provider_id=provider_id)
    assert calc.auto_update_timestamp is None, "genai-prices is not using its bundled data"
    return calc


def _fmt(value: Fraction | None) -> str:
    if value is None:
        return "none"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _flat(spec: ModelSpec, key: str, value: Decimal | TieredPrices | None) -> Fraction | None:
    """A price of an endpoint we price without tiers (speech, transcription)."""
    if isinstance(value, TieredPrices):
        pytest.fail(f"{spec.id}: {GENAI} prices {key} by prompt-size tiers ({value}); our "
                    f"{spec.endpoint} entries have no tiers: allow-list the model in ALLOWED with the reason")
    return None if value is None else Fraction(value)


def _genai_at(value: Decimal | TieredPrices | None, prompt_tokens: int) -> Fraction | None:
    """genai-prices' price for a call whose prompt (input_tokens) has this many tokens: the
    last tier whose start it exceeds, as genai_prices.types.calc_unit_price picks it."""
    if value is None:
        return None
    if not isinstance(value, TieredPrices):
        return Fraction(value)
    price = value.base
    for tier in value.tiers:
        if prompt_tokens > tier.start:
            price = tier.price
    return Fraction(price)


def _genai_starts(calc: PriceCalculation) -> set[int]:
    """Every tier start genai-prices has on any token price of the model."""
    return {t.start for _, _, key in TOKEN_PRICES
            if isinstance(v := getattr(calc.model_price, key), TieredPrices) for t in v.tiers}


def _reachable(spec: ModelSpec, start: int) -> bool:
    return spec.context_window is None or spec.context_window > start


def _ours_at(spec: ModelSpec, attr: str, level: int) -> Fraction | None:
    """Our per-1M price at a tier level: 0 is the base, else the tier with that threshold."""
    if level == 0:
        return getattr(spec, attr)
    return getattr(next(t for t in spec.tiers if t.above_prompt_tokens == level), attr)


def _comparisons(spec: ModelSpec, calc: PriceCalculation) -> list[tuple[str, Fraction | None, str,
                                                                          Fraction | None]]:
    """(what, our price, genai-prices key, its price, both per our unit) for the endpoint; for
    token prices one row per key and tier (our thresholds; that they match is checked apart)."""
    mp = calc.model_price
    if spec.endpoint in ("chat", "embeddings"):
        levels = [0] + [t.above_prompt_tokens for t in spec.tiers]
        return [(toml_key if level == 0 else f"tiers[above_prompt_tokens={level}].{toml_key}",
                 _ours_at(spec, attr, level), key if level == 0 else f"{key} (prompt > {level})",
                 _genai_at(getattr(mp, key), level + 1 if level else 0))
                for level in levels for attr, toml_key, key in TOKEN_PRICES]
    if spec.endpoint == "speech":
        return [("cost_per_1m_chars", spec.per_1m_chars, "input_mchars", _flat(spec, "input_mchars",
                                                                               mp.input_mchars))]
    if spec.endpoint == "transcription":
        hours = _flat(spec, "audio_hours", mp.audio_hours)
        return [("cost_per_minute", spec.per_minute, "audio_hours / 60", None if hours is None else hours / 60)]
    pytest.fail(f"{spec.id}: no genai-prices comparison for endpoint {spec.endpoint!r}; allow-list it in ALLOWED")


def _checked_calc(model_id: str) -> tuple[ModelSpec, PriceCalculation]:
    spec = CATALOG.get(model_id)
    try:
        return spec, _genai(spec)
    except LookupError as exc:
        pytest.fail(f"{model_id}: {GENAI} has no price for {spec.provider}/{spec.upstream_id} ({exc}); "
                    f"add it to ALLOWED with the reason")


# ------------------------------------------------------------------ the checks
def test_installed_genai_prices_is_the_version_models_toml_cites():
    text = resources.files("aicredits.catalog").joinpath("models.toml").read_text(encoding="utf-8")
    cited = set(re.findall(r"genai-prices (\d+\.\d+\.\d+)", text))
    assert cited == {genai_prices.__version__}, (
        f"models.toml cites genai-prices {sorted(cited)} but {genai_prices.__version__} is installed: "
        f"re-run this check against the installed data and update the source comments")


def test_every_catalog_model_is_checked_or_allow_listed():
    ids = {spec.id for spec in CATALOG}
    assert not set(ALLOWED) - ids, f"ALLOWED names models no longer in the catalog: {sorted(set(ALLOWED) - ids)}"
    assert not set(UNREACHABLE_TIERS) - ids, \
        f"UNREACHABLE_TIERS names models no longer in the catalog: {sorted(set(UNREACHABLE_TIERS) - ids)}"
    unmapped = [i for i in CHECKED if CATALOG.get(i).provider not in GENAI_PROVIDER]
    assert not unmapped, (f"no genai-prices provider for {unmapped}: map the provider in GENAI_PROVIDER or "
                          f"add the models to ALLOWED with the reason")


@pytest.mark.parametrize("model_id", CHECKED)
def test_catalog_price_equals_genai_prices(model_id):
    spec, calc = _checked_calc(model_id)
    assert spec.currency == "USD", f"{model_id}: genai-prices is in USD but the entry is in {spec.currency}"
    where = f"{GENAI} {calc.provider.id}/{calc.model.id}"
    wrong = [f"  {what}: ours {_fmt(ours)} USD, {where} {key} {_fmt(theirs)}"
             for what, ours, key, theirs in _comparisons(spec, calc) if ours != theirs]
    assert not wrong, (f"{model_id} (upstream_id {spec.upstream_id}) differs from {GENAI}:\n" + "\n".join(wrong)
                       + "\nfix models.toml (and its source comment), or allow-list the model in ALLOWED "
                         "with the reason")


@pytest.mark.parametrize("model_id", CHECKED)
def test_catalog_tiers_are_genai_prices_tiers(model_id):
    spec, calc = _checked_calc(model_id)
    where = f"{GENAI} {calc.provider.id}/{calc.model.id}"
    starts = _genai_starts(calc)
    reachable = sorted(s for s in starts if _reachable(spec, s))
    ours = [t.above_prompt_tokens for t in spec.tiers]
    assert ours == reachable, (
        f"{model_id}: our tiers start above {ours} prompt tokens but {where} has tiers above {reachable} "
        f"that a prompt within context_window {spec.context_window} can reach: add the missing tiers to "
        f"models.toml (tiers = [{{above_prompt_tokens = N, ...}}]) or remove ours that it lacks")
    unreachable = sorted(s for s in starts if not _reachable(spec, s))
    recorded = [UNREACHABLE_TIERS[model_id][0]] if model_id in UNREACHABLE_TIERS else []
    assert unreachable == recorded, (
        f"{model_id}: {where} tiers above {unreachable} prompt tokens are out of reach of context_window "
        f"{spec.context_window}, but UNREACHABLE_TIERS records {recorded}: record them with the reason, "
        f"or drop the stale record")


# Prompt sizes around every threshold either side knows, plus a small prompt: genai-prices'
# own calc_price and ours must give the same USD for the same usage, cache reads included.
def _sizes(spec: ModelSpec, calc: PriceCalculation) -> list[int]:
    edges = _genai_starts(calc) | {t.above_prompt_tokens for t in spec.tiers}
    sizes = {1_000} | {e for e in edges} | {e + 1 for e in edges}
    return sorted(n for n in sizes if spec.context_window is None or n <= spec.context_window)


TOKEN_CHECKED = [i for i in CHECKED if CATALOG.get(i).endpoint in ("chat", "embeddings")]


@pytest.mark.parametrize("model_id", TOKEN_CHECKED)
def test_a_calls_price_equals_genai_prices_calc_price(model_id):
    spec, calc = _checked_calc(model_id)
    prices = token_prices(spec, Rates(Fraction(1), Fraction(0)))    # micro-USD per token
    for prompt in _sizes(spec, calc):
        cached = prompt // 2 if spec.cache_read is not None else 0
        out = 1_000 if spec.endpoint == "chat" else 0
        theirs = calc_price(Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=out),
                            model_ref=spec.upstream_id, provider_id=calc.provider.id).total_price
        ours = prices.exact_cost(TokenUsage(prompt_tokens=prompt, cache_read_tokens=cached,
                                            completion_tokens=out))
        assert ours == Fraction(theirs) * 10**6, (
            f"{model_id}: a call of {prompt} prompt tokens ({cached} cached) and {out} output tokens costs "
            f"{_fmt(ours / 10**6)} USD here but {theirs} USD in {GENAI}")


@pytest.mark.parametrize("model_id", sorted(ALLOWED))
def test_allow_listed_model_still_needs_its_exception(model_id):
    spec, allowed = CATALOG.get(model_id), ALLOWED[model_id]
    try:
        calc = _genai(spec)
    except LookupError:
        assert allowed.upstream is None, (f"{model_id}: ALLOWED records {GENAI} prices {allowed.upstream} "
                                          f"but genai-prices no longer covers the model")
        return
    where = f"{GENAI} {calc.provider.id}/{calc.model.id}"
    assert allowed.upstream is not None, (
        f"{model_id}: {where} now prices it ({calc.model_price}); compare it with our entry, then fix "
        f"models.toml or record the upstream prices in ALLOWED (reason: {allowed.reason})")
    changed = [f"  {key}: recorded {want}, {where} {getattr(calc.model_price, key)}"
               for key, want in allowed.upstream.items()
               if getattr(calc.model_price, key) != Decimal(want)]
    assert not changed, (f"{model_id}: the prices our exception rests on changed:\n" + "\n".join(changed)
                         + f"\nre-derive our price (reason: {allowed.reason}) and update ALLOWED")
