"""The bodies of the public API as pydantic models: the one source of /openapi.json's schemas
(api/openapi.py turns them into JSON Schema). They describe what the handlers accept and send;
the handlers themselves validate with services/validation.py and friends, and the schemathesis
run in tests/api/test_openapi.py checks that the live server and these models agree.

Request models allow fields they do not list (they are passed to the provider unchanged);
provider answers passed through are open objects with the fields the gateway relies on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aicredits.services.validation import MAX_MESSAGES, ROLES

ERROR_TYPES = ("invalid_request_error", "authentication_error", "insufficient_credits", "not_found_error", "request_too_large", "rate_limit_error", "internal_error", "upstream_error",
               "service_unavailable", "upstream_timeout")
Model = Annotated[str, Field(min_length=1, description="`provider/model`, e.g. `openai/gpt-4o-mini` (a bare "
                                                          "OpenAI name resolves to its `openai/` entry); "
                                                          "GET /api/models lists them.",
                             examples=["demo/echo", "openai/gpt-4o-mini"])]
Fallbacks = Annotated[list[str], Field(description="Gateway field: models to try in order when the first fails "
                                                   "(never forwarded).")]


class Open(BaseModel):
    """An object that may carry more fields than listed."""
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------ errors
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str
    type: Literal[ERROR_TYPES]  # type: ignore[valid-type]   # the tuple's values
    code: int = Field(description="Equal to the HTTP status.")
    param: str | None = Field(None, description="The request field at fault, when there is one.")


class Error(BaseModel):
    """Every error: the reference's shape."""
    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


# ------------------------------------------------------------------------------ chat
class ContentPart(Open):
    """A part of a message's content, as in OpenAI's API (text, image_url, input_audio, file, ...)."""
    type: str


class Message(Open):
    role: Literal[tuple(sorted(ROLES))]  # type: ignore[valid-type]   # the set's values
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Tool(Open):
    type: str = "function"
    function: dict[str, Any] | None = None


class StreamOptions(Open):
    include_usage: bool | None = Field(None, description="Send a last chunk with `usage` (with `usage.cost` in "
                                                         "INR) and empty `choices`.")


class ChatCompletionRequest(Open):
    """OpenAI's chat completions request. Fields not listed are passed to the provider unchanged;
    `cache`, `no_cache` and `models` are gateway fields and are never forwarded. At most 10,000
    messages and 10,000 content parts together."""
    model: Model
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool | None = Field(None, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, description="The provider checks the range.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate per choice; bounds the hold.")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for `max_tokens`.")
    n: int | None = Field(None, ge=1, le=128, description="Choices; the hold covers `max_tokens × n`.")
    response_format: dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    models: Fallbacks | None = None
    no_cache: bool | None = Field(None, description="Skip the gateway's response caches for this request: neither "
                                                    "looked up nor stored (`x-aicredits-cache: bypass`). Never "
                                                    "forwarded.")


class Usage(Open):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = Field(None, description="INR charged; in the streaming usage chunk only.")


class ChatChoice(Open):
    index: int | None = None
    message: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletion(Open):
    """The provider's `chat.completion` (demo models: the gateway's own)."""
    id: str
    object: Literal["chat.completion"]
    created: int | None = None
    model: str | None = None
    choices: list[ChatChoice]
    usage: Usage | None = None


# ------------------------------------------------------------------------------ responses
class ResponsesRequest(Open):
    """OpenAI's Responses API request: native for OpenAI models, translated to chat for others.
    At most 10,000 input items."""
    model: Model
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_MESSAGES)]
    instructions: str | None = None
    stream: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    models: Fallbacks | None = None


class Response(Open):
    id: str
    object: Literal["response"]
    status: str | None = None
    output: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None


# ------------------------------------------------------------------------------ embeddings
class EmbeddingsRequest(Open):
    model: Model
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, up to 2048 strings, or token arrays.")
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] | None = None
    models: Fallbacks | None = None


class Embedding(Open):
    object: str | None = None
    index: int | None = None
    embedding: list[float] | str


class EmbeddingList(Open):
    object: Literal["list"]
    data: list[Embedding]
    model: str | None = None
    usage: dict[str, Any] | None = None


# ------------------------------------------------------------------------------ images
class ImagesRequest(Open):
    model: Model
    prompt: str = Field(min_length=1)
    n: int | None = Field(None, ge=1)
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    models: Fallbacks | None = None


class ImagesResponse(Open):
    created: int | None = None
    data: list[dict[str, Any]]


# ------------------------------------------------------------------------------ audio
class SpeechRequest(Open):
    model: Model
    input: str = Field(min_length=1, max_length=4096)
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: float | None = None
    language: str | None = Field(None, description="Sarvam: the speech language (else detected from the text).")
    models: Fallbacks | None = None


class InputAudio(BaseModel):
    data: str = Field(description="The audio file, base64.")
    format: str | None = None


class TranscriptionJson(Open):
    """The reference's JSON form of a transcription request."""
    model: Model
    input_audio: InputAudio
    language: str | None = None
    prompt: str | None = None
    response_format: str | None = None
    models: Fallbacks | None = None


class TranscriptionForm(BaseModel):
    """multipart/form-data, as the SDKs send it."""
    file: bytes = Field(json_schema_extra={"format": "binary"})
    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: str | None = None
    temperature: float | None = None


class Transcription(Open):
    text: str


# ------------------------------------------------------------------------------ account, models, health
class KeyCredits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    limit: float | None = Field(description="The key's lifetime limit in INR, or null.")
    spent: float
    held: float


class CacheSavings(BaseModel):
    """What response-cache hits saved this account; present when a cache is on (docs/caching.md)."""
    model_config = ConfigDict(extra="forbid")
    hits: int
    tokens_saved: int = Field(description="Prompt and completion tokens the hits did not send upstream.")
    saved: float = Field(description="INR not charged thanks to hits.")


class Credits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: Literal["credits"]
    balance: float = Field(description="Available INR: the wallet balance minus the holds of calls in flight.")
    currency: Literal["INR"]
    held: float = Field(description="INR held by calls in flight.")
    total_added: float = Field(description="INR added by grants and top-ups, ever (refunds taken off).")
    total_spent: float = Field(description="INR charged, ever.")
    key: KeyCredits | None
    cache: CacheSavings | None = None


class ModelObject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: Literal["list"]
    data: list[ModelObject]


class PriceTier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    above_prompt_tokens: int = Field(ge=1)
    input_cost_per_1m: float | None = None
    output_cost_per_1m: float | None = None
    cache_read_cost_per_1m: float | None = None
    cache_write_cost_per_1m: float | None = None
    cache_write_1h_cost_per_1m: float | None = None


class CatalogEntry(BaseModel):
    """Prices are in the entry's `currency`, per 1M tokens unless named otherwise."""
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    provider: str
    endpoint: Literal["chat", "embeddings", "images", "speech", "transcription"]
    modalities: list[str]
    currency: Literal["USD", "INR"]
    context_window: int | None
    max_output_tokens: int | None = Field(None, description="Chat models only.")
    input_cost_per_1m: float = Field(ge=0)
    output_cost_per_1m: float = Field(ge=0)
    cache_read_cost_per_1m: float | None = None
    cache_write_cost_per_1m: float | None = None
    cache_write_1h_cost_per_1m: float | None = None
    cost_per_1m_chars: float | None = Field(None, description="Speech: per 1M input characters.")
    cost_per_minute: float | None = Field(None, description="Transcription: per minute of audio.")
    cost_per_image: dict[str, dict[str, float]] | None = Field(None, description="Images: size → quality → price.")
    tiers: list[PriceTier] | None = None
    priced: bool = Field(description="Every price the endpoint bills by is known; an unpriced model is never served.")
    available: bool = Field(description="Priced, and its provider is configured here.")


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: Literal["list"]
    data: list[CatalogEntry]
    usd_inr_rate: float = Field(description="INR per USD applied to USD prices.")
    markup: float = Field(description="Fraction added to every price: 0.15 is 15 %.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ready", "unavailable"]
    db: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable", "disabled"]


class WebhookAck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="What the event led to: credited, already_credited, refused, failed, pending, "
                                    "debited or ignored.")
