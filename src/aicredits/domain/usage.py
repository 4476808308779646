"""Reading usage from OpenAI-shaped responses, and the documented local estimator used
when no usage arrives (a cut stream, an upstream that omits it or sends it incomplete).

The rule for a provider's usage (docs/billing.md): a token count is a non-negative integer, or
a finite non-negative number with a fraction, rounded up. A usage object without such prompt
and completion counts (`{}`, null counts, negative counts, strings) is no usage at all: the
estimator bills the call. Cache and reasoning details that are not counts read as 0.

Estimator: a text's tokens are max(fragments, ceil(utf-8 bytes / 4)), where a fragment is
one streamed delta that carried text or tool-call arguments (OpenAI streams about one token
per delta; ~4 bytes per token is the usual English average). A prompt is estimated as
ceil(bytes of its text / 4) + 4 per message + 3 (its text: the strings of its messages, tools and
legacy functions), plus an estimate of its images and PDF pages (estimate_prompt_tokens); base64
payloads are not text. An embeddings input is ceil(bytes / 4) per string and the length of each
token array.
"""

from __future__ import annotations

import math
from typing import Any

from aicredits.domain.media import read_prompt
from aicredits.domain.pricing import TokenUsage


def token_count(v: object) -> int | None:
    """A provider's token count: a non-negative integer as is, a finite non-negative float
    rounded up; None for anything else (null, a bool, a string, a negative number, NaN)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    if isinstance(v, float) and math.isfinite(v) and v >= 0:
        return math.ceil(v)
    return None


def _count0(v: object) -> int:
    n = token_count(v)
    return 0 if n is None else n


def _prompt(usage: dict) -> int | None:
    return token_count(usage.get("prompt_tokens", usage.get("input_tokens")))


def _completion(usage: dict) -> int | None:
    return token_count(usage.get("completion_tokens", usage.get("output_tokens")))


def _with_details(usage: dict, prompt: int, completion: int, *, prompt_reported: bool = True) -> TokenUsage:
    pd = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
    cd = usage.get("completion_tokens_details", usage.get("output_tokens_details"))
    pd = pd if isinstance(pd, dict) and prompt_reported else {}
    cd = cd if isinstance(cd, dict) else {}
    read = min(prompt, _count0(pd.get("cached_tokens")))
    # cache_write_tokens counts every token written to the cache; the 1-hour part of it, where
    # a provider reports one, is cache_write_1h_tokens (ours)
    written = min(prompt - read, _count0(pd.get("cache_write_tokens")))
    written_1h = min(written, _count0(pd.get("cache_write_1h_tokens")))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_tokens=read,
        cache_write_tokens=written - written_1h,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=_count0(cd.get("reasoning_tokens")),
    )


def usage_from_openai(usage: object) -> TokenUsage | None:
    """A provider's usage object (OpenAI's names, or the Responses API's input/output names),
    or None when it is not an object with valid prompt and completion counts."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _prompt(usage), _completion(usage)
    if prompt is None or completion is None:
        return None
    return _with_details(usage, prompt, completion)


def prompt_from_openai(usage: object) -> int | None:
    """An embeddings usage object's input count (it has no completion), or None when it is not
    an object with a valid prompt count."""
    return _prompt(usage) if isinstance(usage, dict) else None


def fill_usage(usage: object, prompt_estimate: int, completion_estimate: int) -> TokenUsage:
    """The counts a provider reported validly, the estimates for those it did not (the cache
    buckets count only with a reported prompt)."""
    if not isinstance(usage, dict):
        return TokenUsage(prompt_tokens=prompt_estimate, completion_tokens=completion_estimate)
    prompt, completion = _prompt(usage), _completion(usage)
    return _with_details(usage, prompt_estimate if prompt is None else prompt,
                         completion_estimate if completion is None else completion,
                         prompt_reported=prompt is not None)


def estimate_text_tokens(n_bytes: int, fragments: int = 0) -> int:
    return max(fragments, -(-n_bytes // 4))


MEDIA_KEYS = ("image_url", "file_data", "file_url")   # payloads, not text
IMAGE_ESTIMATE = 765        # an image whose size is not in the request: a 1024x1024 one at OpenAI's rates
PDF_PAGE_ESTIMATE = 1500    # a PDF page: the low end of Anthropic's 1,500-3,000 text tokens a page


def _strings(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        audio = "format" in value and "data" in value     # an input_audio payload
        return sum(_strings(v) for k, v in value.items() if k not in MEDIA_KEYS and not (audio and k == "data"))
    if isinstance(value, list):
        return sum(_strings(v) for v in value)
    return 0


def _media_estimate(body: dict) -> int:
    facts = read_prompt(body)
    images = sum(IMAGE_ESTIMATE if size is None else min(1600, -(-size[0] * size[1] // 750))
                 for size, _ in facts.images)
    return images + PDF_PAGE_ESTIMATE * sum(p or 0 for p in facts.pdf_pages)


def estimate_prompt_tokens(body: dict) -> int:
    """ceil(text bytes / 4) + 4 per message + 3, plus each image (w x h / 750, at most 1,600; 765
    when its size is not in the request) and 1,500 per PDF page. Audio is not estimated."""
    messages = body.get("messages") or []
    n = _strings(messages) + _strings(body.get("tools")) + _strings(body.get("functions"))
    media = _media_estimate(body) if _has_media(messages) else 0
    return -(-n // 4) + 4 * len(messages) + 3 + media


def _has_media(messages: object) -> bool:
    return isinstance(messages, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages)


def estimate_input_tokens(value: object) -> int:
    """An embeddings input: ceil(utf-8 bytes / 4) per string, the length of each token array."""
    if isinstance(value, str):
        return estimate_text_tokens(len(value.encode("utf-8", "surrogatepass")))
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return len(value)
    if isinstance(value, list):
        return sum(estimate_input_tokens(v) for v in value)
    return 0


def usage_row(call_id: str, account_id: int, key_id: str | None, created_at: int, *, usage: TokenUsage | None = None,
              **fields: object) -> dict[str, Any]:
    """A call's usage record (a usage_records row without `cost` and `hold`, which the store
    fills in): every column, its tokens from `usage`, the rest from `fields`, else empty (a row
    for a call that never reached a provider: a chat call, no tokens, status 200, completed).
    `units` defaults to the tokens."""
    u = usage or TokenUsage()
    row = {"call_id": call_id, "request_id": call_id, "account_id": account_id, "key_id": key_id, "model": "",
           "provider": "", "deployment": "", "endpoint": "chat", "stream": False,
           "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens,
           "cache_write_1h_tokens": u.cache_write_1h_tokens, "reasoning_tokens": u.reasoning_tokens,
           "units": 0, "latency_ms": 0, "overhead_ms": 0, "status": 200, "cache": "bypass",
           "end_state": "completed", "error": None, "created_at": created_at}
    row.update(fields)
    row["units"] = row["units"] or (u.prompt_tokens + u.completion_tokens)
    return row
