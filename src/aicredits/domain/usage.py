"""Reading usage from OpenAI-shaped responses, and the documented local estimator used
when no usage arrives (a cut stream, an upstream that omits it).

Estimator: a text's tokens are max(fragments, ceil(utf-8 bytes / 4)), where a fragment is
one streamed delta that carried text or tool-call arguments (OpenAI streams about one token
per delta; ~4 bytes per token is the usual English average). A prompt is estimated as
ceil(bytes of its text / 4) + 4 per message + 3.
"""

from __future__ import annotations

from aicredits.domain.pricing import TokenUsage


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def usage_from_openai(usage: dict | None) -> TokenUsage | None:
    if not isinstance(usage, dict):
        return None
    pd = usage.get("prompt_tokens_details") or {}
    cd = usage.get("completion_tokens_details") or {}
    if not isinstance(pd, dict):
        pd = {}
    if not isinstance(cd, dict):
        cd = {}
    prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    read = min(prompt, _int(pd.get("cached_tokens")))
    # cache_write_tokens counts every token written to the cache (SPEC §6); the 1-hour part
    # of it, where a provider reports one, is cache_write_1h_tokens (ours)
    written = min(prompt - read, _int(pd.get("cache_write_tokens")))
    written_1h = min(written, _int(pd.get("cache_write_1h_tokens")))
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=_int(usage.get("completion_tokens", usage.get("output_tokens"))),
        cache_read_tokens=read,
        cache_write_tokens=written - written_1h,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=_int(cd.get("reasoning_tokens")),
    )


def estimate_text_tokens(n_bytes: int, fragments: int = 0) -> int:
    return max(fragments, -(-n_bytes // 4))


def _strings(value) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_strings(v) for k, v in value.items() if k != "image_url")
    if isinstance(value, list):
        return sum(_strings(v) for v in value)
    return 0


def estimate_prompt_tokens(body: dict) -> int:
    messages = body.get("messages") or []
    n = _strings(messages) + _strings(body.get("tools"))
    return -(-n // 4) + 4 * len(messages) + 3
