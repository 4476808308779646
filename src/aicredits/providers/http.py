"""The shared upstream HTTP client (aiohttp, pooled keep-alive), SSE splitting, and the one
place upstream HTTP failures become our errors (secrets stripped)."""

from __future__ import annotations

import re

import aiohttp
import orjson

from aicredits.errors import (GatewayError, InvalidRequest, NotFound, RateLimited, RequestTooLarge,
                              ServiceUnavailable, UpstreamError, UpstreamTimeout)

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
    msg = ""
    try:
        data = orjson.loads(raw)
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
    """An upstream error status after retries are spent, as the client should see it (SPEC §6)."""
    msg = upstream_message(raw, secrets)
    if status in (400, 422):
        return InvalidRequest(msg or f"{provider} rejected the request")
    if status in (401, 403):
        return UpstreamError(f"The {provider} provider refused the gateway's credentials; the operator has been "
                             "notified. This is not a problem with your API key.")
    if status == 404:
        return NotFound(msg or f"{provider} does not know this model or path")
    if status == 413:
        return RequestTooLarge(msg or f"{provider} says the request is too large")
    if status == 429:
        return RateLimited(f"The {provider} provider is rate limiting requests: {msg}".rstrip(": "),
                           retry_after=_retry_after(headers) or 1)
    if status == 529:
        return ServiceUnavailable(f"The {provider} provider is overloaded.", retry_after=_retry_after(headers) or 5)
    if status == 408 or status == 504:
        return UpstreamTimeout(f"The {provider} provider timed out.")
    return UpstreamError(f"The {provider} provider failed (HTTP {status}){': ' + msg if msg else ''}.")


def connect_error(provider: str) -> GatewayError:
    return UpstreamError(f"Could not reach the {provider} provider.")


def first_byte_timeout(provider: str) -> GatewayError:
    return UpstreamTimeout(f"The {provider} provider did not answer in time.")


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
