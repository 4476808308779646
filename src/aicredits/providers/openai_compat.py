"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, Groq, Together, the
Gemini OpenAI endpoint) from configuration alone. Bodies and stream events pass through
byte for byte; only the model id is rewritten and the upstream always asked for usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction

import aiohttp
import orjson

from aicredits.domain.audio import SPEECH_CONTENT_TYPES, is_speech_format
from aicredits.domain.media import GeminiImages, ImageRule, InputCosts, PatchImages, TileImages
from aicredits.errors import UpstreamError
from aicredits.providers.audio_codec import conform
from aicredits.providers.base import (
    DONE,
    AudioUpload,
    ChatResult,
    MediaResult,
    StreamEvent,
    Target,
    UpstreamCut,
)
from aicredits.providers.http import HTTPProvider, scrub, upload_form
from aicredits.providers.sse import SSEReader, event_data
from aicredits.settings import ProviderSettings

# ---------------------------------------------------------------- input formulas (docs/billing.md)
# OpenAI's vision pricing ("Calculating costs" in its images and vision guide), by model id prefix
# (the longest that matches): a tile formula (base, per 512px tile) or a patch multiplier
OPENAI_IMAGES = {
    "gpt-4o": TileImages(85, 170), "chatgpt-4o": TileImages(85, 170), "gpt-4-turbo": TileImages(85, 170),
    "gpt-4-vision": TileImages(85, 170), "gpt-4.1": TileImages(85, 170), "gpt-4.5": TileImages(85, 170),
    "gpt-4o-mini": TileImages(2833, 5667), "gpt-5": TileImages(70, 140), "o1": TileImages(75, 150),
    "o3": TileImages(75, 150), "computer-use-preview": TileImages(65, 129),
    "gpt-4.1-mini": PatchImages(Fraction("1.62")), "gpt-4.1-nano": PatchImages(Fraction("2.46")),
    "o4-mini": PatchImages(Fraction("1.72")), "gpt-5-mini": PatchImages(Fraction("1.62")),
    "gpt-5-nano": PatchImages(Fraction("2.46")),
}
PDF_PAGE_TEXT = 6000        # tokens of extracted text per PDF page (2x the 3,000 a dense page reaches)
OPENAI_AUDIO_PER_SECOND = 20   # ~10 audio tokens a second are reported; doubled for the transcript tokens
GEMINI_PER_ITEM = 258          # Gemini: tokens per small image, per image tile, per PDF page
GEMINI_AUDIO_PER_SECOND = 32


def _longest_prefix(table: dict[str, ImageRule], model: str) -> ImageRule | None:
    best = max((k for k in table if model == k or model.startswith((k + "-", k + "."))),
               key=len, default=None)
    return table[best] if best is not None else None


def openai_input_costs(kind: str, upstream_id: str) -> InputCosts:
    """The documented formulas of the model behind an OpenAI-shaped provider: OpenAI's own
    models by id (an Azure deployment is named by its operator: matched the same way), Gemini's;
    any other server documents none (its media parts hold the whole context window)."""
    if kind == "gemini":
        return InputCosts(image=GeminiImages(GEMINI_PER_ITEM), pdf_page=GEMINI_PER_ITEM,
                          audio_per_second=GEMINI_AUDIO_PER_SECOND)
    if kind not in ("openai", "azure"):
        return InputCosts()
    image = _longest_prefix(OPENAI_IMAGES, upstream_id.lower())
    page_image = image.tokens(None, "high") if image is not None else None
    return InputCosts(image=image, audio_per_second=OPENAI_AUDIO_PER_SECOND,
                      pdf_page=PDF_PAGE_TEXT + page_image if page_image is not None else None)


def count_hidden_output(usage: object) -> bool:
    """Gemini's OpenAI endpoint leaves thinking tokens out of completion_tokens but counts them
    in total_tokens (and bills them as output). Put them back, as OpenAI reports reasoning:
    inside completion_tokens and in completion_tokens_details.reasoning_tokens. True if changed."""
    if not isinstance(usage, dict):
        return False
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not (isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int)) \
            or any(isinstance(v, bool) for v in (prompt, completion, total)):
        return False
    hidden = total - prompt - completion
    if hidden <= 0:
        return False
    usage["completion_tokens"] = completion + hidden
    details = usage.get("completion_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    seen = details.get("reasoning_tokens")
    details["reasoning_tokens"] = (seen if isinstance(seen, int) and not isinstance(seen, bool) else 0) + hidden
    usage["completion_tokens_details"] = details
    return True


def scrub_failure(obj: dict, secrets: tuple[str, ...]) -> dict:
    """A Responses API `error` event or failed Response, its provider message stripped of keys and
    account ids (the message sits at the top of an `error` event, in `response.error` or `error`
    of a failed Response)."""
    out = dict(obj)
    if isinstance(out.get("message"), str):
        out["message"] = scrub(out["message"], secrets)
    holder = out.get("response")
    holder = holder if isinstance(holder, dict) else out
    err = holder.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        err = {**err, "message": scrub(err["message"], secrets)}
        if holder is out:
            out["error"] = err
        else:
            out["response"] = {**holder, "error": err}
    return out


class OpenAIStream:
    def __init__(self, resp: aiohttp.ClientResponse, idle_timeout: float, provider: str,
                 secrets: tuple[str, ...] = (), azure: bool = False, index_tools: bool = False,
                 hidden_output: bool = False) -> None:
        self._secrets = secrets
        self._resp = resp
        self._sse = SSEReader(resp, provider, idle_timeout)
        self._provider = provider
        # Azure opens every stream with a chunk that only carries prompt_filter_results
        # (choices [], id "", model ""): nothing an OpenAI client needs, so it is dropped
        self._azure = azure
        # Gemini (and some other compatible servers) stream each tool call whole with no
        # `index`, which OpenAI clients need to assemble calls: numbered here, 0, 1, ...
        self._index_tools = index_tools
        self._tools_seen = 0
        self._hidden_output = hidden_output   # Gemini: see count_hidden_output

    def partial_usage(self) -> dict | None:
        """OpenAI-shaped servers report usage only in their usage chunk: nothing partial."""
        return None

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        loads = orjson.loads
        while (events := await self._sse.read()) is not None:
            out = []
            for ev in events:
                payload = event_data(ev)
                if payload is None:
                    out.append(StreamEvent(None, ev))
                elif payload == b"[DONE]":
                    out.append(StreamEvent(DONE, ev))
                else:
                    try:
                        obj = loads(payload)
                    except orjson.JSONDecodeError as exc:
                        raise UpstreamCut(f"The {self._provider} provider sent an unreadable event.") from exc
                    if not isinstance(obj, dict):
                        raise UpstreamCut(f"The {self._provider} provider sent an unreadable event.")
                    err = obj.get("error")
                    if err is not None:   # mid-stream error: keep the message, never a secret in it
                        msg = err.get("message") if isinstance(err, dict) else err
                        out.append(StreamEvent({"error": {"message": scrub(str(msg or ""), self._secrets)}}))
                        continue
                    if obj.get("type") in ("error", "response.failed"):   # the Responses API's failures
                        out.append(StreamEvent(scrub_failure(obj, self._secrets)))
                        continue
                    if self._azure and not obj.get("choices") and not obj.get("usage"):
                        continue
                    else:
                        changed = self._index_tools and b'"tool_calls"' in payload and self._number_tools(obj)
                        if self._hidden_output and count_hidden_output(obj.get("usage")):
                            changed = True
                        if changed:   # re-serialised as amended
                            out.append(StreamEvent(obj, None))
                            continue
                    out.append(StreamEvent(obj, ev))
            if out:
                yield out

    def _number_tools(self, obj: dict) -> bool:
        """Give tool-call deltas without an `index` the next one; True if any was given."""
        changed = False
        for choice in obj.get("choices") or ():
            calls = (choice.get("delta") or {}).get("tool_calls") if isinstance(choice, dict) else None
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and "index" not in call:
                    call["index"] = self._tools_seen
                    self._tools_seen += 1
                    changed = True
        return changed

    async def aclose(self) -> None:
        # closing (not releasing) drops the connection, which cancels the upstream generation
        self._sse.close()
        self._resp.close()


class OpenAICompatible(HTTPProvider):
    def __init__(self, settings: ProviderSettings, session: aiohttp.ClientSession, **timeouts: float) -> None:
        # OpenAI's own API takes max_completion_tokens (o-series refuse max_tokens); the rest max_tokens
        self.max_tokens_field = "max_completion_tokens" if settings.kind == "openai" else "max_tokens"
        # /v1/responses is forwarded as is to OpenAI and Azure; other servers get it translated to chat
        self.native_responses = settings.kind in ("openai", "azure")
        self._azure_version = settings.api_version if settings.kind == "azure" else None
        self._input_costs: dict[str, InputCosts] = {}
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if settings.api_key and self._azure_version:
            headers["api-key"] = settings.api_key
        elif settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        headers.update(settings.headers)
        super().__init__(settings, session, headers, **timeouts)

    def input_costs(self, upstream_id: str) -> InputCosts:
        """Per upstream id, worked out once (ids come from the configuration: a bounded set)."""
        costs = self._input_costs.get(upstream_id)
        if costs is None:
            costs = self._input_costs[upstream_id] = openai_input_costs(self.kind, upstream_id)
        return costs

    def url(self, path: str, upstream_id: str) -> str:
        """`path` like '/chat/completions'; Azure puts the deployment in the path and wants its
        api-version."""
        if self._azure_version:
            return f"{self._base}/openai/deployments/{upstream_id}{path}?api-version={self._azure_version}"
        return self._base + path

    def _body(self, body: dict, target: Target, stream: bool) -> bytes:
        out = dict(body)
        out.pop("cache", None)   # Claude prompt caching: meaningless to OpenAI-shaped servers
        out["model"] = target.upstream_id
        if stream:
            opts = dict(out.get("stream_options") or {})
            opts["include_usage"] = True
            out["stream_options"] = opts
        return orjson.dumps(out)

    def _stream(self, resp: aiohttp.ClientResponse, **options: bool) -> OpenAIStream:
        return OpenAIStream(resp, self._http.idle, self.name, self._secrets, **options)

    async def chat(self, body: dict, target: Target) -> ChatResult:
        data, raw_bytes = await self._http.call_json(self.url("/chat/completions", target.upstream_id),
                                                     self._body(body, target, stream=False))
        raw: bytes | None = raw_bytes
        if "choices" not in data:
            raise self._http.unexpected()
        if self.kind == "gemini" and count_hidden_output(data.get("usage")):
            raw = None   # the client is sent the amended usage
        return ChatResult(data, raw)

    async def stream(self, body: dict, target: Target) -> OpenAIStream:
        resp = await self._http.open_stream(self.url("/chat/completions", target.upstream_id),
                                            self._body(body, target, stream=True))
        return self._stream(resp, azure=self._azure_version is not None,
                            index_tools=self.kind in ("gemini", "openai_compatible"),
                            hidden_output=self.kind == "gemini")

    async def post_json(self, path: str, body: dict, target: Target) -> ChatResult:
        """POST a JSON body to an OpenAI-shaped endpoint; the answer as (parsed, raw bytes)."""
        data, raw = await self._http.call_json(self.url(path, target.upstream_id),
                                               orjson.dumps({**body, "model": target.upstream_id}))
        return ChatResult(data, raw)

    async def embed(self, body: dict, target: Target) -> ChatResult:
        return await self.post_json("/embeddings", body, target)

    async def images(self, body: dict, target: Target) -> ChatResult:
        return await self.post_json("/images/generations", body, target)

    async def speech(self, body: dict, target: Target) -> MediaResult:
        """Raw audio bytes in the requested format (`language` is our extension: not sent); bytes
        that are not in it (a compatible server that answers WAV whatever it is asked) are converted."""
        out = {k: v for k, v in body.items() if k != "language"}
        out["model"] = target.upstream_id
        fmt = out.get("response_format") or "mp3"
        raw = await self._http.call(self.url("/audio/speech", target.upstream_id), orjson.dumps(out))
        if not raw:
            raise UpstreamError(f"The {self.name} provider sent no audio.")
        if not is_speech_format(raw, fmt):    # a server that ignored response_format: converted here
            raw = await asyncio.to_thread(conform, raw, fmt, self.name)
        return MediaResult(raw, SPEECH_CONTENT_TYPES[fmt])

    async def transcribe(self, upload: AudioUpload, target: Target) -> MediaResult:
        """multipart/form-data as OpenAI takes it; JSON formats come back as JSON, the others as text."""
        fields = [("model", target.upstream_id), ("response_format", upload.response_format)]
        for name, value in upload.fields.items():
            for v in (value if isinstance(value, list) else [value]):
                fields.append((name, v))
        raw = await self._http.call(self.url("/audio/transcriptions", target.upstream_id), upload_form(fields, upload))
        if upload.response_format in ("json", "verbose_json"):
            try:
                ok = isinstance(orjson.loads(raw), dict)
            except orjson.JSONDecodeError:
                ok = False
            if not ok:
                raise UpstreamError(f"The {self.name} provider sent an unreadable transcription.")
            return MediaResult(raw, "application/json")
        return MediaResult(raw, "text/plain; charset=utf-8")

    # ------------------------------------------------------------------ OpenAI Responses API
    def _responses_url(self) -> str:
        """Azure serves it at /openai/responses, the deployment given as the model."""
        if self._azure_version:
            return f"{self._base}/openai/responses?api-version={self._azure_version}"
        return self._base + "/responses"

    async def responses(self, body: dict, target: Target) -> ChatResult:
        """POST /responses (non-streaming); the answer as (parsed, raw bytes)."""
        data, raw = await self._http.call_json(self._responses_url(), orjson.dumps({**body, "model": target.upstream_id}))
        if data.get("object") != "response":
            raise self._http.unexpected()
        if isinstance(data.get("error"), dict):   # a failed Response: its message reaches the client
            return ChatResult(scrub_failure(data, self._secrets))
        return ChatResult(data, raw)

    async def responses_stream(self, body: dict, target: Target) -> OpenAIStream:
        """POST /responses with stream: true; events as they come (`event:` + `data:`, no [DONE])."""
        payload = orjson.dumps({**body, "model": target.upstream_id, "stream": True})
        return self._stream(await self._http.open_stream(self._responses_url(), payload))

