"""The prompt bound of a chat or Responses call: its prompt read once (images, PDFs and audio
measured from the request's bytes), then bounded for every deployment that may answer it by that
model's documented formulas (its provider's `input_costs`); the hold takes the largest."""

from __future__ import annotations

import asyncio
from typing import cast

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.media import PromptFacts, read_prompt
from aicredits.domain.reservation import prompt_token_bound
from aicredits.providers.base import ChatProvider
from aicredits.services.audio_probe import measured_seconds
from aicredits.services.routing import Router

TEXT_PARTS = ("text", "input_text", "output_text", "refusal")


def _has_media(body: dict) -> bool:
    """Whether any message holds a part other than text (an image, file or audio)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(not isinstance(p, dict) or p.get("type") not in TEXT_PARTS
                                             for p in content):
            return True
    return False


async def prompt_facts(body: dict) -> PromptFacts:
    """The prompt's facts; a body with media parts is read in a worker thread: decoding base64
    images, inflating PDF object streams and decoding audio is CPU work."""
    if _has_media(body):
        return await asyncio.to_thread(read_prompt, body, measured_seconds)
    return read_prompt(body, measured_seconds)


def chain_bound(router: Router, chain: list[ModelSpec], facts: PromptFacts) -> int:
    """The largest prompt bound over every configured deployment of every model of the chain."""
    bound = 0
    for spec in chain:
        for d in spec.deployments:
            provider = router.providers.get(d.provider)     # a chat model's: checked at start-up
            if provider is not None:
                bound = max(bound, prompt_token_bound(facts, spec.context_window,
                                                      cast(ChatProvider, provider).input_costs(d.upstream_id)))
    return bound
