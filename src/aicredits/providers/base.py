"""What a provider adapter offers the services. Requests and responses are OpenAI-shaped
dicts (the gateway's canonical form); an adapter for another protocol translates at its edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aicredits.domain.catalog import ModelSpec
from aicredits.domain.media import InputCosts

DONE = object()   # the stream's end marker ([DONE] / message_stop)


@dataclass
class ChatResult:
    data: dict                 # the OpenAI-shaped chat.completion
    raw: bytes | None = None   # the upstream's bytes when they need no change (passed through as is)


@dataclass
class StreamEvent:
    data: object               # parsed chunk dict, DONE, or None for a comment/keep-alive
    raw: bytes | None = None   # the exact SSE event bytes (with the blank line), when forwardable as is


class UpstreamCut(Exception):
    """The upstream stream broke off (connection lost, idle timeout, unparsable data)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class Target(Protocol):
    """What an adapter is called for (services/routing.py's Target): the deployment's model id
    upstream, and the catalog entry."""

    @property
    def upstream_id(self) -> str: ...
    @property
    def spec(self) -> ModelSpec: ...


class ChatStream(Protocol):
    def batches(self) -> AsyncIterator[list[StreamEvent]]: ...
    async def aclose(self) -> None: ...

    def partial_usage(self) -> dict | None:
        """What the provider has reported of the usage so far, for a stream that ends without
        its usage chunk (cut, client gone): OpenAI-shaped usage holding only the keys the
        provider actually reported (Anthropic's message_start gives `prompt_tokens` and
        `prompt_tokens_details` with its cache buckets; `completion_tokens` only once a
        cumulative count came), or None when it reports usage only at the end (OpenAI-shaped
        streams). The services estimate what is missing."""


@runtime_checkable
class Adapter(Protocol):
    """What every adapter has, whatever it serves."""
    name: str
    kind: str

    async def close(self) -> None: ...


@runtime_checkable
class ChatProvider(Adapter, Protocol):
    """`/v1/chat/completions` (and `/v1/responses` by translation)."""
    # the request field its API takes for the output cap the gateway sets from the hold:
    # "max_completion_tokens" (OpenAI) or "max_tokens" (everyone else)
    max_tokens_field: str

    async def chat(self, body: dict, target: Target) -> ChatResult: ...
    async def stream(self, body: dict, target: Target) -> ChatStream: ...

    def input_costs(self, upstream_id: str) -> InputCosts:
        """How the model bills image, PDF and audio input and the tool prompt the provider adds:
        its documented formulas, for the hold's prompt bound (domain/reservation.py)."""


@runtime_checkable
class EmbeddingsProvider(Protocol):
    async def embed(self, body: dict, target: Target) -> ChatResult: ...


@runtime_checkable
class ImagesProvider(Protocol):
    async def images(self, body: dict, target: Target) -> ChatResult: ...


@runtime_checkable
class SpeechProvider(Protocol):
    async def speech(self, body: dict, target: Target) -> MediaResult: ...


@runtime_checkable
class TranscriptionProvider(Protocol):
    async def transcribe(self, upload: AudioUpload, target: Target) -> MediaResult: ...


@runtime_checkable
class ResponsesProvider(Protocol):
    """`/v1/responses` forwarded as is (otherwise it is translated to chat). `native_responses`
    says whether this instance's upstream speaks it (an OpenAI-shaped server may not)."""
    native_responses: bool

    async def responses(self, body: dict, target: Target) -> ChatResult: ...
    async def responses_stream(self, body: dict, target: Target) -> ChatStream: ...


# catalog endpoint (domain/catalog.py ENDPOINTS) -> the capability an adapter needs to serve it
CAPABILITIES: dict[str, type] = {
    "chat": ChatProvider,
    "embeddings": EmbeddingsProvider,
    "images": ImagesProvider,
    "speech": SpeechProvider,
    "transcription": TranscriptionProvider,
}


def serves(provider: object, endpoint: str) -> bool:
    """Whether the adapter has the capability the catalog endpoint needs."""
    proto = CAPABILITIES.get(endpoint)
    return proto is not None and isinstance(provider, proto)


def native_responses(provider: object) -> bool:
    return isinstance(provider, ResponsesProvider) and provider.native_responses


@dataclass
class MediaResult:
    """A non-JSON (or not necessarily JSON) answer: audio bytes, transcription text."""
    body: bytes
    content_type: str


@dataclass
class AudioUpload:
    """A transcription request, whatever way it arrived (multipart file or JSON base64)."""
    data: bytes
    filename: str               # with the extension of the format actually read (audio.wav)
    content_type: str
    duration: float             # seconds, read from the file
    response_format: str = "json"
    fields: dict = field(default_factory=dict)   # other form fields to forward: {name: str | [str]} (language, prompt, ...)
