"""The shared upstream HTTP client (aiohttp, pooled keep-alive), SSE splitting, and the one
place upstream HTTP failures become our errors (secrets stripped)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson

from aicredits.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)

SECRET_RE = re.compile(r"(sk|pk|rk|key|sess)-[A-Za-z0-9_\-]{6,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+\S+")


def make_session(connect_timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300,
                                     enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None),
        auto_decompress=False, skip_auto_headers=("User-Agent",), json_serialize=lambda o: orjson.dumps(o).decode(),
    )


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return SECRET_RE.sub("[redacted]", text)


def upstream_message(raw: bytes, secrets: tuple[str, ...] = ()) -> str:
    """The provider's error message: OpenAI's {"error": {"message"}}, Anthropic's
    {"type": "error", "error": {"type", "message"}}, Gemini's OpenAI endpoint's one-element
    array [{"error": {"code", "message", "status"}}], or a bare {"message"}."""
    msg = ""
    try:
        data = orjson.loads(raw)
        if isinstance(data, list) and data:
            data = data[0]
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            msg = str(err.get("message") or "")
        elif isinstance(err, str):
            msg = err
        elif isinstance(data, dict) and "message" in data:
            msg = str(data["message"])
    except (orjson.JSONDecodeError, AttributeError):
        msg = raw[:300].decode("utf-8", "replace")
    return scrub(msg.strip(), secrets)[:1000]


def _retry_after(headers) -> int | None:
    raw = headers.get("retry-after") if headers else None
    if raw is None:
        ms = headers.get("retry-after-ms") if headers else None
        if ms is not None:
            try:
                return max(1, int(float(ms) / 1000 + 0.999))
            except ValueError:
                return None
        return None
    try:
        return max(0, int(float(raw)))
    except ValueError:
        return None


def map_status(status: int, raw: bytes, headers, provider: str, secrets: tuple[str, ...] = ()) -> GatewayError:
    """An upstream error status as the client should see it (SPEC §6), marked for the router:
    429/5xx/529/timeouts may be retried; credentials and unknown models may fall back."""
    msg = upstream_message(raw, secrets)
    if status in (400, 422):
        return InvalidRequest(msg or f"{provider} rejected the request")
    if status == 413:
        return RequestTooLarge(msg or f"{provider} says the request is too large")
    if status in (401, 403):
        exc: GatewayError = UpstreamError(
            f"The {provider} provider refused the gateway's credentials; this is not a problem with your "
            "API key. The operator should check the provider key.")
        exc.fallback = True
        return exc
    if status == 402:
        # Anthropic's billing_error: the operator's provider account, never the client's business
        exc = UpstreamError(f"The {provider} provider refused the call because of the gateway's provider "
                            "account (billing); the operator should check it.")
        exc.fallback = True
        return exc
    if status == 404:
        exc = NotFound(msg or f"{provider} does not know this model or path")
        exc.fallback = True
        return exc
    if status == 429:
        exc = RateLimited(f"The {provider} provider is rate limiting requests: {msg}".rstrip(": "),
                          retry_after=_retry_after(headers) or 1)
        exc.retry_hint = _retry_after(headers)
    elif status in (503, 529):   # Anthropic's overloaded_error, OpenAI's and Gemini's 503 UNAVAILABLE
        exc = ServiceUnavailable(f"The {provider} provider is overloaded{': ' + msg if msg else ''}.",
                                 retry_after=_retry_after(headers) or 5)
        exc.retry_hint = _retry_after(headers)
    elif status in (408, 504):
        exc = UpstreamTimeout(f"The {provider} provider timed out.")
    else:
        exc = UpstreamError(f"The {provider} provider failed (HTTP {status}){': ' + msg if msg else ''}.")
        if status < 500:
            return exc
    exc.retryable = exc.fallback = True
    return exc


def _transient(exc: GatewayError) -> GatewayError:
    exc.retryable = exc.fallback = True
    return exc


def connect_error(provider: str) -> GatewayError:
    return _transient(UpstreamError(f"Could not reach the {provider} provider."))


def first_byte_timeout(provider: str) -> GatewayError:
    return _transient(UpstreamTimeout(f"The {provider} provider did not answer in time."))


def split_events(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE events (each ending with its blank line) and the unfinished rest."""
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    parts = buf.split(b"\n\n")
    rest = parts.pop()
    return [p + b"\n\n" for p in parts if p.strip()], rest


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (multi-line data joined by newlines), or None."""
    if event.startswith(b"data: ") and b"\ndata:" not in event:
        return event[6:].rstrip(b"\n")
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None


async def post(session: aiohttp.ClientSession, provider: str, url: str, payload, headers: dict,
               timeout: aiohttp.ClientTimeout, first_byte: float) -> aiohttp.ClientResponse:
    """POST and wait for the response head; a timeout or connect failure becomes our error."""
    try:
        async with asyncio.timeout(first_byte):
            return await session.post(url, data=payload, headers=headers, timeout=timeout)
    except TimeoutError as exc:
        raise first_byte_timeout(provider) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise connect_error(provider) from exc


async def read_all(resp: aiohttp.ClientResponse, provider: str, idle: float) -> bytes:
    """The whole response body, bounded by the stream-idle timeout."""
    try:
        async with asyncio.timeout(idle):
            return await resp.read()
    except TimeoutError as exc:
        resp.close()
        raise first_byte_timeout(provider) from exc
    except (aiohttp.ClientError, OSError) as exc:
        resp.close()
        raise UpstreamError(f"The connection to the {provider} provider broke off.") from exc
