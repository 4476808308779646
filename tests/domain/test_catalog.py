"""The model catalog: the built-in data file, operator overrides, validation of entries."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest

from aicredits.catalog import builtin_entries, load_catalog
from aicredits.domain.catalog import ENDPOINTS, Catalog, ModelSpec, PriceTier, spec_from_entry

BUILTIN = builtin_entries()
BUILTIN_IDS = [e.get("id") for e in BUILTIN]


# ------------------------------------------------------------------ the built-in data
def test_builtin_ids_are_unique():
    dupes = [i for i, c in Counter(BUILTIN_IDS).items() if c > 1]
    assert dupes == []
    assert len(load_catalog()) == len(BUILTIN)


@pytest.mark.parametrize("entry", BUILTIN, ids=BUILTIN_IDS)
def test_every_builtin_entry_parses_and_is_priced(entry):
    spec = spec_from_entry(entry)
    assert isinstance(spec, ModelSpec)
    assert spec.id == entry["id"]
    assert spec.endpoint in ENDPOINTS
    assert spec.currency in ("USD", "INR")
    assert spec.provider and spec.upstream_id and spec.name
    assert spec.priced, f"{spec.id} has no price for its endpoint {spec.endpoint}"


@pytest.mark.parametrize("entry", BUILTIN, ids=BUILTIN_IDS)
def test_builtin_prices_are_exact_decimals(entry):
    spec = spec_from_entry(entry)
    for key, value in [("input_cost_per_1m", spec.input), ("output_cost_per_1m", spec.output),
                       ("cache_read_cost_per_1m", spec.cache_read),
                       ("cache_write_cost_per_1m", spec.cache_write),
                       ("cache_write_1h_cost_per_1m", spec.cache_write_1h),
                       ("cost_per_1m_chars", spec.per_1m_chars), ("cost_per_minute", spec.per_minute)]:
        if key in entry:
            assert value == Fraction(repr(entry[key])), key
            assert value >= 0
    for size, qualities in entry.get("cost_per_image", {}).items():
        for quality, price in qualities.items():
            assert spec.per_image[size][quality] == Fraction(repr(price))


CHAT = [e for e in BUILTIN if e.get("endpoint", "chat") == "chat"]


@pytest.mark.parametrize("entry", CHAT, ids=[e["id"] for e in CHAT])
def test_every_chat_model_has_an_output_cap_and_a_context_window(entry):
    spec = spec_from_entry(entry)
    assert isinstance(spec.context_window, int) and spec.context_window > 0
    assert isinstance(spec.max_output_tokens, int) and spec.max_output_tokens > 0
    assert spec.max_output_tokens <= spec.context_window
    assert spec.input is not None and spec.output is not None


def test_bare_openai_names_resolve_to_their_openai_entry():
    catalog = load_catalog()
    openai = [s for s in catalog if s.id.startswith("openai/")]
    assert openai
    for spec in openai:
        assert catalog.get(spec.id.split("/", 1)[1]) is spec
    assert catalog.get("gpt-4o-mini").id == "openai/gpt-4o-mini"


def test_bare_names_of_other_providers_and_unknown_ids_do_not_resolve():
    catalog = load_catalog()
    assert catalog.get("claude-sonnet-4.6") is None
    assert catalog.get("gemini-2.5-pro") is None
    assert catalog.get("no-such-model") is None
    assert catalog.get("openai/no-such-model") is None
    assert catalog.get("anthropic/claude-sonnet-4.6").id == "anthropic/claude-sonnet-4.6"


def test_anthropic_entries_carry_the_upstream_id_and_every_cache_bucket():
    catalog = load_catalog()
    assert catalog.get("anthropic/claude-sonnet-4.6").upstream_id == "claude-sonnet-4-6"
    claude = [s for s in catalog if s.provider == "anthropic"]
    assert claude
    for spec in claude:
        assert None not in (spec.cache_read, spec.cache_write, spec.cache_write_1h), spec.id


def test_sarvam_entries_are_priced_in_inr():
    sarvam = [s for s in load_catalog() if s.provider == "sarvam"]
    assert sarvam
    assert all(s.currency == "INR" for s in sarvam)


def test_known_builtin_prices():
    spec = load_catalog().get("openai/gpt-4o-mini")
    assert (spec.input, spec.output, spec.cache_read) == (Fraction(3, 20), Fraction(3, 5), Fraction(3, 40))
    assert load_catalog().get("openai/dall-e-3").per_image["1024x1024"] == \
        {"standard": Fraction(1, 25), "hd": Fraction(2, 25)}


# ------------------------------------------------------------------ overrides
def test_an_override_merges_into_the_builtin_entry():
    base = load_catalog().get("openai/gpt-4o-mini")
    catalog = load_catalog(({"id": "openai/gpt-4o-mini", "input_cost_per_1m": "0.2"},))
    spec = catalog.get("openai/gpt-4o-mini")
    assert spec.input == Fraction(1, 5)
    assert (spec.output, spec.cache_read, spec.context_window, spec.max_output_tokens, spec.name) == \
        (base.output, base.cache_read, base.context_window, base.max_output_tokens, base.name)
    assert len(catalog) == len(BUILTIN)
    assert catalog.get("gpt-4o-mini") is spec


def test_an_override_adds_a_new_model_with_fallbacks():
    extra = {"id": "local/llama", "provider": "local", "upstream_id": "llama-3.1-8b",
             "input_cost_per_1m": 0.05, "output_cost_per_1m": 0.1, "context_window": 8192,
             "max_output_tokens": 2048, "fallbacks": ["openai/gpt-4o-mini"]}
    catalog = load_catalog((extra,))
    spec = catalog.get("local/llama")
    assert spec.priced and spec.provider == "local" and spec.upstream_id == "llama-3.1-8b"
    assert spec.fallbacks == ("openai/gpt-4o-mini",)
    assert len(catalog) == len(BUILTIN) + 1


def test_a_later_override_wins():
    catalog = Catalog.from_entries(
        [{"id": "a/m", "input_cost_per_1m": 1, "output_cost_per_1m": 2}],
        [{"id": "a/m", "output_cost_per_1m": 3}, {"id": "a/m", "output_cost_per_1m": 4}])
    spec = catalog.get("a/m")
    assert (spec.input, spec.output) == (1, 4)


def test_an_override_can_price_a_listed_model():
    catalog = Catalog.from_entries([{"id": "a/m"}], [{"id": "a/m", "input_cost_per_1m": 1,
                                                      "output_cost_per_1m": 1}])
    assert catalog.get("a/m").priced


def test_an_override_without_an_id_is_refused():
    with pytest.raises(ValueError):
        load_catalog(({"input_cost_per_1m": 1},))


def test_defaults_follow_the_id():
    spec = spec_from_entry({"id": "acme/fast-1"})
    assert (spec.provider, spec.upstream_id, spec.name, spec.endpoint, spec.currency) == \
        ("acme", "fast-1", "fast-1", "chat", "USD")
    assert spec_from_entry({"id": "a/b", "currency": "inr"}).currency == "INR"


# ------------------------------------------------------------------ priced
@pytest.mark.parametrize("entry", [
    {"id": "x/chat"},
    {"id": "x/chat-in", "input_cost_per_1m": 1},
    {"id": "x/chat-out", "output_cost_per_1m": 1},
    {"id": "x/chat-cache", "cache_read_cost_per_1m": 1, "cache_write_cost_per_1m": 1},
    {"id": "x/emb", "endpoint": "embeddings", "output_cost_per_1m": 1},
    {"id": "x/tts", "endpoint": "speech", "input_cost_per_1m": 1},
    {"id": "x/stt", "endpoint": "transcription", "cost_per_1m_chars": 1},
    {"id": "x/img", "endpoint": "images", "input_cost_per_1m": 1},
    {"id": "x/img-empty", "endpoint": "images", "cost_per_image": {}},
], ids=lambda e: e["id"])
def test_an_entry_without_its_endpoints_prices_is_not_priced(entry):
    assert spec_from_entry(entry).priced is False
    assert Catalog.from_entries([entry]).get(entry["id"]).priced is False   # listed, not served


@pytest.mark.parametrize("entry", [
    {"id": "x/chat", "input_cost_per_1m": 0, "output_cost_per_1m": 0},
    {"id": "x/emb", "endpoint": "embeddings", "input_cost_per_1m": "0.02"},
    {"id": "x/tts", "endpoint": "speech", "cost_per_1m_chars": 15},
    {"id": "x/stt", "endpoint": "transcription", "cost_per_minute": 0.006},
    {"id": "x/img", "endpoint": "images", "cost_per_image": {"1024x1024": {"standard": 0.04}}},
], ids=lambda e: e["id"])
def test_an_entry_with_its_endpoints_prices_is_priced(entry):
    assert spec_from_entry(entry).priced is True


# ------------------------------------------------------------------ bad entries
BAD = [
    ("bad/endpoint", {"endpoint": "completions"}),
    ("bad/currency", {"currency": "EUR"}),
    ("bad/negative", {"input_cost_per_1m": -1}),
    ("bad/negative-str", {"output_cost_per_1m": "-0.5"}),
    ("bad/word", {"input_cost_per_1m": "cheap"}),
    ("bad/bool", {"input_cost_per_1m": True}),
    ("bad/list", {"output_cost_per_1m": [1]}),
    ("bad/nan", {"input_cost_per_1m": float("nan")}),
    ("bad/inf", {"input_cost_per_1m": float("inf")}),           # TOML allows `inf`
    ("bad/inf-str", {"output_cost_per_1m": "Infinity"}),
    ("bad/image-negative", {"endpoint": "images", "cost_per_image": {"1024x1024": {"hd": -1}}}),
    ("bad/image-word", {"endpoint": "images", "cost_per_image": {"1024x1024": {"hd": "x"}}}),
    ("bad/image-null", {"endpoint": "images", "cost_per_image": {"1024x1024": {"hd": None}}}),
    ("bad/image-flat", {"endpoint": "images", "cost_per_image": {"1024x1024": 0.04}}),
    ("bad/image-number", {"endpoint": "images", "cost_per_image": 0.04}),
    ("bad/ctx-str", {"context_window": "128k"}),
    ("bad/ctx-neg", {"context_window": -1}),
    ("bad/cap-float", {"max_output_tokens": 4096.5}),
    ("bad/cap-bool", {"max_output_tokens": True}),
    ("bad/fallbacks-str", {"fallbacks": "openai/gpt-4o-mini"}),
    # prompt-size tiers
    ("bad/tiers-table", {"tiers": {"above_prompt_tokens": 10, "input_cost_per_1m": 2}}),
    ("bad/tiers-number", {"tiers": 200000}),
    ("bad/tier-not-table", {"tiers": [200000]}),
    ("bad/tier-no-threshold", {"tiers": [{"input_cost_per_1m": 2}]}),
    ("bad/tier-zero", {"tiers": [{"above_prompt_tokens": 0, "input_cost_per_1m": 2}]}),
    ("bad/tier-negative", {"tiers": [{"above_prompt_tokens": -5, "input_cost_per_1m": 2}]}),
    ("bad/tier-float", {"tiers": [{"above_prompt_tokens": 200000.0, "input_cost_per_1m": 2}]}),
    ("bad/tier-str", {"tiers": [{"above_prompt_tokens": "200k", "input_cost_per_1m": 2}]}),
    ("bad/tier-bool", {"tiers": [{"above_prompt_tokens": True, "input_cost_per_1m": 2}]}),
    ("bad/tier-equal", {"tiers": [{"above_prompt_tokens": 100, "input_cost_per_1m": 2},
                                  {"above_prompt_tokens": 100, "input_cost_per_1m": 3}]}),
    ("bad/tier-decreasing", {"tiers": [{"above_prompt_tokens": 200, "input_cost_per_1m": 2},
                                       {"above_prompt_tokens": 100, "input_cost_per_1m": 3}]}),
    ("bad/tier-negative-price", {"tiers": [{"above_prompt_tokens": 100, "output_cost_per_1m": -1}]}),
    ("bad/tier-word-price", {"tiers": [{"above_prompt_tokens": 100, "cache_read_cost_per_1m": "cheap"}]}),
    ("bad/tier-inf-price", {"tiers": [{"above_prompt_tokens": 100, "input_cost_per_1m": float("inf")}]}),
    ("bad/tier-bool-price", {"tiers": [{"above_prompt_tokens": 100, "input_cost_per_1m": True}]}),
    ("bad/tier-unknown-key", {"tiers": [{"above_prompt_tokens": 100, "input_cost_per_1M": 2}]}),
    ("bad/tier-no-price", {"tiers": [{"above_prompt_tokens": 100}]}),
    ("bad/tier-speech", {"endpoint": "speech", "cost_per_1m_chars": 15,
                         "tiers": [{"above_prompt_tokens": 100, "input_cost_per_1m": 2}]}),
]


@pytest.mark.parametrize("model_id, fields", BAD, ids=[b[0] for b in BAD])
def test_a_bad_entry_raises_value_error_naming_the_model(model_id, fields):
    entry = {"id": model_id, "input_cost_per_1m": 1, "output_cost_per_1m": 1} | fields
    with pytest.raises(ValueError) as info:
        spec_from_entry(entry)
    assert model_id in str(info.value)
    with pytest.raises(ValueError, match=model_id):
        load_catalog((entry,))


@pytest.mark.parametrize("entry", [{}, {"id": "no-slash"}, {"id": 7}, {"id": None}])
def test_an_entry_without_a_provider_model_id_is_refused(entry):
    with pytest.raises(ValueError, match="provider/model"):
        spec_from_entry(entry)


def test_google_models_also_answer_to_the_gemini_prefix():
    catalog = load_catalog()
    google = [s for s in catalog if s.id.startswith("google/")]
    assert google
    for spec in google:
        assert catalog.get("gemini/" + spec.id.split("/", 1)[1]) is spec
    assert catalog.get("gemini/no-such-model") is None
    assert catalog.get("gemini/") is None


def test_bad_tier_messages_say_what_is_wrong():
    def error(tiers) -> str:
        with pytest.raises(ValueError) as info:
            spec_from_entry({"id": "x/m", "input_cost_per_1m": 1, "output_cost_per_1m": 1, "tiers": tiers})
        return str(info.value)
    assert error([{"above_prompt_tokens": 0, "input_cost_per_1m": 2}]) == \
        "model x/m: tiers[0]: above_prompt_tokens must be a positive integer"
    assert error([{"above_prompt_tokens": 9, "input_cost_per_1m": 2}, {"above_prompt_tokens": 9, "input_cost_per_1m": 3}]) \
        == "model x/m: tiers[1]: above_prompt_tokens must be strictly increasing (9 after 9)"
    assert error([{"above_prompt_tokens": 9, "output_cost_per_1m": -1}]) == \
        "model x/m tiers[0]: output_cost_per_1m must not be negative"
    assert "unknown key(s) input_cost" in error([{"above_prompt_tokens": 9, "input_cost": 2}])


# ------------------------------------------------------------------ prompt-size tiers
def test_a_tier_keeps_the_base_value_of_every_price_it_omits():
    spec = spec_from_entry({"id": "x/m", "input_cost_per_1m": "1.25", "output_cost_per_1m": 10,
                            "cache_write_cost_per_1m": "1.5",
                            "tiers": [{"above_prompt_tokens": 1000, "input_cost_per_1m": "2.5"},
                                      {"above_prompt_tokens": 5000, "output_cost_per_1m": 20,
                                       "cache_read_cost_per_1m": "0.5"}]})
    low, high = spec.tiers
    assert isinstance(low, PriceTier)
    assert (low.above_prompt_tokens, low.input, low.output, low.cache_read, low.cache_write, low.cache_write_1h) \
        == (1000, Fraction(5, 2), 10, None, Fraction(3, 2), None)
    # every tier inherits from the base entry, not from the tier before it
    assert (high.above_prompt_tokens, high.input, high.output, high.cache_read, high.cache_write) \
        == (5000, Fraction(5, 4), 20, Fraction(1, 2), Fraction(3, 2))
    assert spec_from_entry({"id": "x/flat", "input_cost_per_1m": 1}).tiers == ()
    assert spec_from_entry({"id": "x/none", "input_cost_per_1m": 1, "tiers": []}).tiers == ()


def test_gemini_2_5_pro_has_its_long_prompt_tier():
    spec = load_catalog().get("google/gemini-2.5-pro")
    assert (spec.input, spec.output, spec.cache_read) == (Fraction(5, 4), 10, Fraction(1, 8))
    assert spec.tiers == (PriceTier(200000, input=Fraction(5, 2), output=Fraction(15),
                                    cache_read=Fraction(1, 4)),)
    assert load_catalog().get("anthropic/claude-sonnet-4.5").tiers == ()   # its >200k tier is unreachable


def test_an_override_keeps_the_builtin_tiers_unless_it_names_its_own():
    base = load_catalog().get("google/gemini-2.5-pro")
    kept = load_catalog(({"id": "google/gemini-2.5-pro", "input_cost_per_1m": 1.5},)).get("google/gemini-2.5-pro")
    assert kept.input == Fraction(3, 2) and kept.tiers == base.tiers
    gone = load_catalog(({"id": "google/gemini-2.5-pro", "tiers": []},)).get("google/gemini-2.5-pro")
    assert gone.tiers == ()
    new = load_catalog(({"id": "google/gemini-2.5-pro",
                         "tiers": [{"above_prompt_tokens": 128000, "input_cost_per_1m": 3}]},))
    assert [(t.above_prompt_tokens, t.input, t.output) for t in new.get("google/gemini-2.5-pro").tiers] == \
        [(128000, 3, 10)]


# ------------------------------------------------------------------ /api/models
def _document(catalog: Catalog) -> dict[str, dict]:
    import orjson

    from aicredits.api.meta import catalog_document
    from aicredits.domain.pricing import Rates
    doc = orjson.loads(catalog_document(catalog, Rates(Fraction("83.5"), Fraction("0.15")), set()))
    return {e["id"]: e for e in doc["data"]}


def test_api_models_shows_complete_tiers_with_the_catalog_key_names():
    entries = _document(load_catalog())
    assert entries["google/gemini-2.5-pro"]["tiers"] == [
        {"above_prompt_tokens": 200000, "input_cost_per_1m": 2.5, "output_cost_per_1m": 15.0,
         "cache_read_cost_per_1m": 0.25}]
    assert [i for i, e in entries.items() if "tiers" in e] == ["google/gemini-2.5-pro"]
    # a tier shows the base value of a price it omits, so each tier reads on its own
    catalog = Catalog.from_entries([{"id": "x/m", "input_cost_per_1m": 1, "output_cost_per_1m": 2,
                                     "cache_write_cost_per_1m": 1.5,
                                     "tiers": [{"above_prompt_tokens": 10, "input_cost_per_1m": 3}]}])
    assert _document(catalog)["x/m"]["tiers"] == [
        {"above_prompt_tokens": 10, "input_cost_per_1m": 3, "output_cost_per_1m": 2,
         "cache_write_cost_per_1m": 1.5}]


def test_an_unknown_entry_key_is_refused_naming_the_likely_one():
    """A misspelt price key would otherwise leave the model silently unpriced."""
    with pytest.raises(ValueError, match=r"model x/m: unknown key\(s\) input_cost_per_1M "
                                         r"\(did you mean input_cost_per_1m\?\)"):
        spec_from_entry({"id": "x/m", "input_cost_per_1M": 1, "output_cost_per_1m": 2})
    with pytest.raises(ValueError, match="unknown key"):
        Catalog.from_entries(BUILTIN, [{"id": "openai/gpt-4o-mini", "outputcost": 1}])
