"""The demo provider: answers offline, priced like any model, so a newcomer with no provider
key sees one whole call billed. Opt-in by model id (`demo/...`)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

from aicredits.domain.media import InputCosts
from aicredits.domain.usage import estimate_prompt_tokens, estimate_text_tokens
from aicredits.providers.base import DONE, ChatResult, StreamEvent, Target

WORDS = re.compile(r"\S+\s*")


def _last_user_text(body: dict) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _reply(body: dict, limit: int | None) -> tuple[str, str]:
    said = " ".join(_last_user_text(body).split())[:200]
    text = f"Hello from the aicredits demo model. You said: {said}" if said else "Hello from the aicredits demo model."
    words = WORDS.findall(text)
    if limit is not None and len(words) > limit:
        return "".join(words[:limit]), "length"
    return text, "stop"


def _limit(body: dict) -> int | None:
    for k in ("max_completion_tokens", "max_tokens"):
        v = body.get(k)
        if isinstance(v, int) and v > 0:
            return v
    return None


class DemoStream:
    def __init__(self, body: dict, upstream_id: str) -> None:
        self._body = body
        self._model = upstream_id

    def partial_usage(self) -> dict | None:
        return None   # its usage comes whole, in the last chunk

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        text, reason = _reply(self._body, _limit(self._body))
        base = {"id": "chatcmpl-demo-" + uuid.uuid4().hex[:12], "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self._model}
        yield [StreamEvent({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None}]})]
        words = WORDS.findall(text)
        for w in words:
            await asyncio.sleep(0.01)
            yield [StreamEvent({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})]
        prompt = estimate_prompt_tokens(self._body)
        yield [StreamEvent({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}),
               StreamEvent({**base, "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                                                             "total_tokens": prompt + len(words)}}),
               StreamEvent(DONE)]

    async def aclose(self) -> None:
        return None


class DemoProvider:
    name = "demo"
    kind = "demo"
    max_tokens_field = "max_tokens"

    def input_costs(self, upstream_id: str) -> InputCosts:
        """It bills the estimator's count of the text (media parts are not read): no formula."""
        return InputCosts()

    async def chat(self, body: dict, target: Target) -> ChatResult:
        text, reason = _reply(body, _limit(body))
        prompt = estimate_prompt_tokens(body)
        completion = max(1, estimate_text_tokens(0, len(WORDS.findall(text))))
        return ChatResult({
            "id": "chatcmpl-demo-" + uuid.uuid4().hex[:12], "object": "chat.completion",
            "created": int(time.time()), "model": target.upstream_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })

    async def stream(self, body: dict, target: Target) -> DemoStream:
        return DemoStream(body, target.upstream_id)

    async def close(self) -> None:
        return None
