"""The shared upstream HTTP client (aiohttp, pooled keep-alive), and the one place upstream HTTP
failures become our errors (secrets stripped). Streams are read by providers/sse.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

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
from aicredits.providers.base import AudioUpload
from aicredits.settings import ProviderSettings
from aicredits.telemetry import UPSTREAM_HEADERS

# What never reaches a client in a provider's message (docs/errors.md, "Redaction"): keys and
# tokens, and the operator's account identifiers. An id-shaped word needs a digit or a capital
# after its prefix, so that words such as "org-wide" or "user-provided" stay.
_ID = r"(?=[a-z_\-]*[A-Z0-9])[A-Za-z0-9_\-]{6,}"
SECRET_RE = re.compile("|".join((
    r"\b(?:(?:sk|pk|rk)[-_]|(?:key|sess)-)[A-Za-z0-9_\-]{6,}",   # keys: sk-…, sk-ant-…, sk_…, sess-…
    r"AIza[0-9A-Za-z_\-]{20,}",                          # Google API keys
    r"\bBearer\s+\S+",
    r"\b(?:org|user|proj|project|wrkspc|workspace|apikey|acct|account)[-_]" + _ID,   # org-…, proj_…, wrkspc_…
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",   # UUIDs (Anthropic orgs)
    r"(?:(?<=projects/)|(?<=project_number:))[^/\s'\"`,;)]+",   # Google: projects/<id>, project_number:<n>
    r"(?<=project )\d{6,}",                                # Google: "used in project 123456789012"
)))


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


def _retry_after(headers: Mapping[str, str] | None) -> int | None:
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


def map_status(status: int, raw: bytes, headers: Mapping[str, str] | None, provider: str, secrets: tuple[str, ...] = ()) -> GatewayError:
    """An upstream error status as the client should see it (docs/errors.md), marked for the router
    (docs/errors.md, "Retries"): 429 and 5xx refusals cannot have been processed, so they may be
    retried and fall back; credentials, billing and unknown models may fall back; a 408/504 is a
    timeout behind the provider, after which the request may have been processed: neither."""
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
    if status in (408, 504):
        exc = UpstreamTimeout(f"The {provider} provider timed out.")
        exc.provider_fault = True
        return exc
    if status == 429:
        exc = RateLimited(f"The {provider} provider is rate limiting requests: {msg}".rstrip(": "),
                          retry_after=_retry_after(headers) or 1)
        exc.retry_hint = _retry_after(headers)
    elif status in (503, 529):   # Anthropic's overloaded_error, OpenAI's and Gemini's 503 UNAVAILABLE
        exc = ServiceUnavailable(f"The {provider} provider is overloaded{': ' + msg if msg else ''}.",
                                 retry_after=_retry_after(headers) or 5)
        exc.retry_hint = _retry_after(headers)
    else:
        exc = UpstreamError(f"The {provider} provider failed (HTTP {status}){': ' + msg if msg else ''}.")
        if status < 500:
            return exc
    exc.retryable = exc.fallback = exc.provider_fault = True
    return exc


def connect_error(provider: str) -> GatewayError:
    """No connection could be made: the request was never sent, so it may be retried."""
    exc = UpstreamError(f"Could not reach the {provider} provider.")
    exc.retryable = exc.fallback = exc.provider_fault = True
    return exc


def no_answer(provider: str) -> GatewayError:
    """The request was sent and no (whole) answer came in time: it may have been processed (and
    billed by the provider), so it is never sent again."""
    exc = UpstreamTimeout(f"The {provider} provider did not answer in time.")
    exc.provider_fault = True
    return exc


def broken_off(provider: str) -> GatewayError:
    """The connection failed after the request went out: it may have been processed; no retry."""
    exc = UpstreamError(f"The connection to the {provider} provider broke off.")
    exc.provider_fault = True
    return exc


# a request body: JSON bytes, or a multipart form (upload_form)
Payload = bytes | aiohttp.FormData


def upload_form(fields: list[tuple[str, str]], upload: AudioUpload) -> aiohttp.FormData:
    """A multipart/form-data request body: the text fields in order, then the file as `file`."""
    form = aiohttp.FormData()
    for name, value in fields:
        form.add_field(name, value)
    form.add_field("file", upload.data, filename=upload.filename, content_type=upload.content_type)
    return form


class UpstreamClient:
    """One provider's HTTP calls: a POST bounded by the connect and first-byte timeouts, its
    answer read within the stream-idle timeout, an error status mapped to our error (the
    provider's secrets stripped), the answer parsed or opened as a stream."""

    def __init__(self, session: aiohttp.ClientSession, settings: ProviderSettings, headers: dict, *,
                 connect_timeout: float, first_byte_timeout: float, idle_timeout: float) -> None:
        self.session = session
        self.provider = settings.name
        self.headers = headers
        self.secrets = (settings.api_key,) if settings.api_key else ()   # never in a message we pass on
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None)
        self.first_byte = first_byte_timeout
        self.idle = idle_timeout

    async def post(self, url: str, payload: Payload, headers: dict | None = None) -> aiohttp.ClientResponse:
        """POST and wait for the response head. A connection that could not be made (refused, reset
        or timed out while connecting, before the request was sent) may be retried; a timeout
        waiting for the head or a connection lost after the request went out may not. A form
        (upload_form) brings its own Content-Type. Nothing of the client's request headers is
        sent; the trace context only when AICREDITS_OTEL_PROPAGATE_UPSTREAM is on."""
        headers = headers or self.headers
        if isinstance(payload, aiohttp.FormData):
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        trace = UPSTREAM_HEADERS.get()
        if trace:
            headers = {**headers, **trace}
        try:
            async with asyncio.timeout(self.first_byte):
                return await self.session.post(url, data=payload, headers=headers, timeout=self.timeout)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise connect_error(self.provider) from exc
        except TimeoutError as exc:
            raise no_answer(self.provider) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise broken_off(self.provider) from exc

    async def read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The whole response body, within the stream-idle timeout. Whatever stops the read (a
        timeout, a broken connection, the call cancelled because its client left) closes the
        connection, which tells the provider to stop; a partly read answer is never retried."""
        try:
            async with asyncio.timeout(self.idle):
                return await resp.read()
        except TimeoutError as exc:
            resp.close()
            raise no_answer(self.provider) from exc
        except (aiohttp.ClientError, OSError) as exc:
            resp.close()
            raise broken_off(self.provider) from exc
        except BaseException:
            resp.close()
            raise

    async def call(self, url: str, payload: Payload, headers: dict | None = None) -> bytes:
        """POST and read the whole answer; an error status raises our error."""
        resp = await self.post(url, payload, headers)
        raw = await self.read(resp)
        if resp.status != 200:
            raise map_status(resp.status, raw, resp.headers, self.provider, self.secrets)
        return raw

    async def call_json(self, url: str, payload: Payload, headers: dict | None = None) -> tuple[dict, bytes]:
        """POST; the answer, a JSON object, as (parsed, raw bytes)."""
        raw = await self.call(url, payload, headers)
        return self.json_object(raw), raw

    def json_object(self, raw: bytes) -> dict:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"The {self.provider} provider sent an unreadable response.") from exc
        if not isinstance(data, dict):
            raise self.unexpected()
        return data

    def unexpected(self) -> UpstreamError:
        return UpstreamError(f"The {self.provider} provider sent an unexpected response.")

    async def open_stream(self, url: str, payload: Payload) -> aiohttp.ClientResponse:
        """POST a streaming request; the response once it is an event stream (its body unread)."""
        resp = await self.post(url, payload)
        if resp.status != 200:
            raw = await self.read(resp)
            raise map_status(resp.status, raw, resp.headers, self.provider, self.secrets)
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            await self.read(resp)
            raise UpstreamError(f"The {self.provider} provider did not answer with a stream.")
        return resp


class HTTPProvider:
    """What every provider spoken to over HTTP has: its name and kind, its base URL, and its
    UpstreamClient with the gateway's (or its own) timeouts and its default headers."""

    def __init__(self, settings: ProviderSettings, session: aiohttp.ClientSession, headers: dict, *,
                 connect_timeout: float, first_byte_timeout: float, idle_timeout: float) -> None:
        self.name = settings.name
        self.kind = settings.kind
        self._base = settings.base_url.rstrip("/")
        self._http = UpstreamClient(session, settings, headers, connect_timeout=connect_timeout,
                                    first_byte_timeout=first_byte_timeout, idle_timeout=idle_timeout)
        self._secrets = self._http.secrets
        self.first_byte_timeout = first_byte_timeout   # the router bounds all attempts by it

    async def close(self) -> None:
        return None   # the session is the gateway's
