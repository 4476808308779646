"""Reading usage from OpenAI-shaped responses, and the documented local estimator used
when no usage arrives (a cut stream, an upstream that omits it).

Estimator: a text's tokens are max(fragments, ceil(utf-8 bytes / 4)), where a fragment is
one streamed delta that carried text or tool-call arguments (OpenAI streams about one token
per delta; ~4 bytes per token is the usual English average). A prompt is estimated as
ceil(bytes of its text / 4) + 4 per message + 3, plus an estimate of its images and PDF pages
(estimate_prompt_tokens); base64 payloads are not text.
"""

from __future__ import annotations

from aicredits.domain.media import read_prompt
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


MEDIA_KEYS = ("image_url", "file_data", "file_url")   # payloads, not text
IMAGE_ESTIMATE = 765        # an image whose size is not in the request: a 1024x1024 one at OpenAI's rates
PDF_PAGE_ESTIMATE = 1500    # a PDF page: the low end of Anthropic's 1,500-3,000 text tokens a page


def _strings(value) -> int:
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
    n = _strings(messages) + _strings(body.get("tools"))
    media = _media_estimate(body) if _has_media(messages) else 0
    return -(-n // 4) + 4 * len(messages) + 3 + media


def _has_media(messages) -> bool:
    return isinstance(messages, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages)
