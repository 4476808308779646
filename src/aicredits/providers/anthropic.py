"""Anthropic's Messages API (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version:
2023-06-01`), translated at the edge to and from the gateway's OpenAI shape
(anthropic_translate.py). Streams are translated event by event:

  message_start        -> role chunk (id, model and input/cache usage kept)
  text_delta           -> content delta
  tool_use start       -> tool_calls delta (index counts tool blocks from 0, id, name, "")
  input_json_delta     -> tool_calls argument fragment (JSON mode: a content delta)
  ping, block stop     -> nothing
  message_delta        -> finish chunk (output_tokens is cumulative: the last one wins)
  message_stop         -> usage chunk (choices: []) then DONE
  error                -> a chunk {"error": {...}}: the gateway ends the stream with its error event
A stream that ends without message_stop just ends; the gateway counts it as cut, and bills its
prompt from what message_start reported (`partial_usage()`: input and the cache buckets), its
output from message_delta's count if one came, else from the gateway's estimate of what it relayed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from aicredits.domain.media import InputCosts
from aicredits.domain.usage import token_count
from aicredits.providers.anthropic_translate import (
    JSON_TOOL,
    anthropic_input_costs,
    finish_reason,
    openai_usage,
    to_anthropic,
    to_openai,
)
from aicredits.providers.base import DONE, ChatResult, StreamEvent, Target, UpstreamCut
from aicredits.providers.http import HTTPProvider, scrub
from aicredits.providers.sse import SSEReader, parse_event
from aicredits.settings import ProviderSettings

API_VERSION = "2023-06-01"


class StreamTranslator:
    """Anthropic stream events in, OpenAI chat.completion.chunk dicts (and DONE) out."""

    def __init__(self, json_mode: bool, ttl: str | None, secrets: tuple[str, ...] = ()) -> None:
        self.json_mode = json_mode
        self.ttl = ttl
        self.secrets = secrets
        self.id = "msg"
        self.model: str | None = None
        self.created = int(time.time())
        self.usage: dict = {}
        self.tools: dict[int, int] = {}      # Anthropic block index -> OpenAI tool call index
        self.json_blocks: set[int] = set()   # the JSON-mode tool's blocks (streamed as content)
        self.ended = False                   # message_stop seen
        self.failed = False                  # an error event seen
        self.output_counted = False          # a message_delta's output_tokens covers all output so far

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, name: str | None, ev: dict) -> list:
        kind = name or ev.get("type")
        if kind == "message_start":
            msg = ev.get("message") or {}
            self.id = msg.get("id") or self.id
            self.model = msg.get("model")
            usage = msg.get("usage")
            usage = usage if isinstance(usage, dict) else {}
            # its output_tokens is a placeholder, not a count: only message_delta's counts
            self.usage.update({k: v for k, v in usage.items() if k != "output_tokens"})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            self.output_counted = False   # a count from before this block no longer covers the output
            block, index = ev.get("content_block") or {}, ev.get("index", 0)
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            if block.get("type") != "tool_use":
                return []
            if self.json_mode and block.get("name") == JSON_TOOL:
                self.json_blocks.add(index)
                return []
            k = self.tools[index] = len(self.tools)
            return [self._chunk({"tool_calls": [{"index": k, "id": block.get("id"), "type": "function",
                                                 "function": {"name": block.get("name"), "arguments": ""}}]})]
        if kind == "content_block_delta":
            self.output_counted = False
            delta, index = ev.get("delta") or {}, ev.get("index", 0)
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                if index in self.json_blocks:
                    return [self._chunk({"content": delta["partial_json"]})]
                if index in self.tools:
                    return [self._chunk({"tool_calls": [{"index": self.tools[index],
                                                         "function": {"arguments": delta["partial_json"]}}]})]
            return []
        if kind == "message_delta":
            usage = ev.get("usage")
            usage = usage if isinstance(usage, dict) else {}
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            if token_count(usage.get("output_tokens")) is not None:
                self.output_counted = True
            reason = (ev.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(reason, self.json_mode and not self.tools))]
        if kind == "message_stop":
            self.ended = True
            return [{"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "choices": [], "usage": openai_usage(self.usage, self.ttl)}, DONE]
        if kind == "error":
            self.failed = True
            err = ev.get("error")
            err = err if isinstance(err, dict) else {}
            message = scrub(str(err.get("message") or "The provider reported an error."), self.secrets)
            return [{"error": {"message": f"The Anthropic provider failed mid-stream: {message}",
                               "type": str(err.get("type") or "api_error")}}]
        return []   # ping, content_block_stop, unknown events

    def partial_usage(self) -> dict | None:
        """The usage reported so far, in OpenAI's meaning, with only what Anthropic has told us:
        the prompt side (input + the cache buckets) once message_start (or a message_delta)
        carried it; completion_tokens only when a message_delta's cumulative output_tokens came
        after the last content event, so it covers all output streamed (message_start's
        output_tokens is a placeholder, not a count)."""
        full = openai_usage(self.usage, self.ttl)
        prompt_known = full["prompt_tokens"] is not None   # a valid input_tokens came
        if not prompt_known and not self.output_counted:
            return None
        out: dict = {}
        if prompt_known:
            out["prompt_tokens"] = full["prompt_tokens"]
            out["prompt_tokens_details"] = full["prompt_tokens_details"]
        if self.output_counted:
            out["completion_tokens"] = full["completion_tokens"]
        if prompt_known and self.output_counted:
            out["total_tokens"] = full["total_tokens"]
        return out


class AnthropicStream:
    def __init__(self, resp: aiohttp.ClientResponse, idle_timeout: float, provider: str,
                 translator: StreamTranslator) -> None:
        self._resp = resp
        self._sse = SSEReader(resp, provider, idle_timeout)
        self._provider = provider
        self._tr = translator

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        while not self._tr.ended and (events := await self._sse.read()) is not None:
            out: list[StreamEvent] = []
            for ev in events:
                name, payload = parse_event(ev)
                if payload is None or not payload.strip():
                    continue
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamCut(f"The {self._provider} provider sent an unreadable event.") from exc
                if not isinstance(obj, dict):
                    continue
                out.extend(StreamEvent(item) for item in self._tr.feed(name, obj))
                if self._tr.ended or self._tr.failed:
                    break
            if out:
                yield out
            if self._tr.failed:
                return

    def partial_usage(self) -> dict | None:
        return self._tr.partial_usage()

    async def aclose(self) -> None:
        self._sse.close()
        self._resp.close()   # drops the connection, which cancels the upstream generation


class AnthropicProvider(HTTPProvider):
    def __init__(self, settings: ProviderSettings, session: aiohttp.ClientSession, **timeouts: float) -> None:
        self.max_tokens_field = "max_tokens"
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION,
                   "accept-encoding": "identity"}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        headers.update({k.lower(): v for k, v in settings.headers.items()})   # e.g. anthropic-beta
        # versions from 2026-10-21 on refuse sampling parameters (docs/providers.md, "What the gateway
        # smooths over")
        self._drop_sampling = headers["anthropic-version"] >= "2026-10-21"
        self._input_costs: dict[str, InputCosts] = {}
        super().__init__(settings, session, headers, **timeouts)

    def input_costs(self, upstream_id: str) -> InputCosts:
        """Per upstream id, worked out once (ids come from the configuration: a bounded set)."""
        costs = self._input_costs.get(upstream_id)
        if costs is None:
            costs = self._input_costs[upstream_id] = anthropic_input_costs(upstream_id)
        return costs

    def url(self, path: str = "/v1/messages") -> str:
        return self._base + path

    def _payload(self, body: dict, target: Target, stream: bool) -> tuple[bytes, bool, str | None]:
        payload, json_mode, ttl = to_anthropic(dict(body, stream=stream), target)
        if self._drop_sampling:
            for k in ("temperature", "top_p"):
                payload.pop(k, None)
        return orjson.dumps(payload), json_mode, ttl

    async def chat(self, body: dict, target: Target) -> ChatResult:
        payload, json_mode, ttl = self._payload(body, target, stream=False)
        data, _ = await self._http.call_json(self.url(), payload)
        if not isinstance(data.get("content"), list):
            raise self._http.unexpected()
        try:
            return ChatResult(to_openai(data, json_mode, ttl))
        except (TypeError, ValueError) as exc:   # a tool input nested past orjson's limit
            raise self._http.unexpected() from exc

    async def stream(self, body: dict, target: Target) -> AnthropicStream:
        payload, json_mode, ttl = self._payload(body, target, stream=True)
        resp = await self._http.open_stream(self.url(), payload)
        return AnthropicStream(resp, self._http.idle, self.name, StreamTranslator(json_mode, ttl, self._secrets))

