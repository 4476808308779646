"""A provider kind added from this module alone (docs/providers.md "Adding a native provider"):
its adapter and `register_kind` call live here, nothing in api/, services/ or store/ knows it.

The "words" upstream is a real HTTP server on 127.0.0.1 with its own little protocol:
POST /generate {"text", "limit", "stream"} answers {"reply", "read", "wrote"} (or, streamed,
one JSON object a line: {"piece"} ... then {"read", "wrote"}); POST /vectors {"texts"} answers
{"vectors", "read"}. The gateway serves `words/echo` (chat, streamed too) and `words/vec`
(embeddings) through it, billing the upstream's counts; a model whose endpoint the kind does not
serve stops the start naming the model, the provider and the endpoint.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from aicredits.catalog import load_catalog
from aicredits.domain.media import InputCosts
from aicredits.providers.base import DONE, ChatResult, StreamEvent, serves
from aicredits.providers.http import map_status
from aicredits.providers.registry import KINDS, build_providers, register_kind
from aicredits.settings import SettingsError, load_settings
from tests.conftest import expected_micros
from tests.inproc import InProcessGateway, sse_data

KEY = "words-secret-key"


# ---------------------------------------------------------------- the upstream
class FakeWords:
    """A real HTTP server speaking the "words" protocol; it records the bodies it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def start(self) -> FakeWords:
        threading.Thread(target=self._loop.run_forever, name="fake-words", daemon=True).start()
        port = asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def _astart(self) -> int:
        app = web.Application()
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/vectors", self._vectors)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-words-key") != KEY:
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        self.bodies.append(body)
        words = body["text"].split()
        reply = list(reversed(words))[: body.get("limit") or len(words)]
        read, wrote = len(words), len(reply)
        if not body.get("stream"):
            return web.json_response({"reply": " ".join(reply), "read": read, "wrote": wrote})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for i, w in enumerate(reply):
            await resp.write(orjson.dumps({"piece": (" " if i else "") + w}) + b"\n")
        await resp.write(orjson.dumps({"read": read, "wrote": wrote}) + b"\n")
        await resp.write_eof()
        return resp

    async def _vectors(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        return web.json_response({"vectors": [[float(len(t)), 1.0] for t in body["texts"]],
                                  "read": sum(len(t.split()) for t in body["texts"])})


# ---------------------------------------------------------------- the adapter
def _text(body: dict) -> str:
    return " ".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))


def _usage(obj: dict) -> dict:
    return {"prompt_tokens": obj["read"], "completion_tokens": obj["wrote"],
            "total_tokens": obj["read"] + obj["wrote"]}


class WordsStream:
    def __init__(self, resp: aiohttp.ClientResponse, model: str) -> None:
        self._resp, self._model = resp, model

    def partial_usage(self) -> dict | None:
        return None

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {"id": "chatcmpl-words", "object": "chat.completion.chunk", "created": 0, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        yield [StreamEvent(self._chunk({"role": "assistant", "content": ""}))]
        async for line in self._resp.content:
            obj = orjson.loads(line)
            if "piece" in obj:
                yield [StreamEvent(self._chunk({"content": obj["piece"]}))]
            else:
                usage_chunk = {**self._chunk({}), "choices": [], "usage": _usage(obj)}
                yield [StreamEvent(self._chunk({}, "stop")), StreamEvent(usage_chunk), StreamEvent(DONE)]

    async def aclose(self) -> None:
        self._resp.close()


class WordsProvider:
    """Chat and embeddings over the words protocol; no images, speech or transcription."""
    max_tokens_field = "limit"   # the gateway's output cap arrives under the name this API takes

    def __init__(self, settings, session: aiohttp.ClientSession, *, connect_timeout: float,
                 first_byte_timeout: float, idle_timeout: float) -> None:
        self.name, self.kind = settings.name, settings.kind
        self._base, self._session = settings.base_url, session
        self._headers = {"x-words-key": settings.api_key or ""}

    def input_costs(self, upstream_id: str) -> InputCosts:
        return InputCosts()

    async def _post(self, path: str, payload: dict) -> aiohttp.ClientResponse:
        resp = await self._session.post(self._base + path, json=payload, headers=self._headers)
        if resp.status != 200:
            raise map_status(resp.status, await resp.read(), resp.headers, self.name, (KEY,))
        return resp

    def _generate(self, body: dict, stream: bool) -> dict:
        return {"text": _text(body), "limit": body.get("limit") or body.get("max_tokens"), "stream": stream}

    async def chat(self, body: dict, target) -> ChatResult:
        async with await self._post("/generate", self._generate(body, False)) as resp:
            obj = await resp.json()
        return ChatResult({"id": "chatcmpl-words", "object": "chat.completion", "created": 0,
                           "model": target.upstream_id, "usage": _usage(obj),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": obj["reply"]}}]})

    async def stream(self, body: dict, target) -> WordsStream:
        return WordsStream(await self._post("/generate", self._generate(body, True)), target.upstream_id)

    async def embed(self, body: dict, target) -> ChatResult:
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        async with await self._post("/vectors", {"texts": texts}) as resp:
            obj = await resp.json()
        return ChatResult({"object": "list", "model": target.upstream_id,
                           "data": [{"object": "embedding", "index": i, "embedding": v}
                                    for i, v in enumerate(obj["vectors"])],
                           "usage": {"prompt_tokens": obj["read"], "total_tokens": obj["read"]}})

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------- the gateway
MODELS = """
[providers.wordy]
kind = "words"
base_url = "{base}"
api_key_env = "WORDS_KEY"

[[models]]
id = "words/echo"
provider = "wordy"
upstream_id = "echo-1"
endpoint = "chat"
context_window = 8000
max_output_tokens = 1000
input_cost_per_1m = 2.0
output_cost_per_1m = 4.0

[[models]]
id = "words/vec"
provider = "wordy"
upstream_id = "vec-1"
endpoint = "embeddings"
context_window = 8000
input_cost_per_1m = 0.5
"""


@pytest.fixture(scope="module")
def words_kind():
    register_kind("words", WordsProvider)
    yield
    KINDS.pop("words")


@pytest.fixture(scope="module")
def fake_words():
    f = FakeWords().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, words_kind, fake_words):
    work = tmp_path_factory.mktemp("words")
    cfg = work / "aicredits.toml"
    cfg.write_text(MODELS.format(base=fake_words.base_url))
    g = InProcessGateway(work, {"AICREDITS_CONFIG": str(cfg), "WORDS_KEY": KEY}).start()
    yield g
    g.stop()


def test_the_kind_serves_chat_and_is_charged_its_counts(gw, fake_words):
    key = gw.create_key(credits_micros=100 * 10**6)
    r = gw.post("/v1/chat/completions", key, json={"model": "words/echo", "max_tokens": 3,
                                                   "messages": [{"role": "user", "content": "one two three four"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "four three two"
    assert fake_words.bodies[-1] == {"text": "one two three four", "limit": 3, "stream": False}
    entry = gw.catalog()["words/echo"]
    assert round(gw.credits(key)["total_spent"] * 10**6) == expected_micros(entry, 4, 3)


def test_the_kind_streams_through_the_gateway(gw, fake_words):
    key = gw.create_key(credits_micros=100 * 10**6)
    r = gw.post("/v1/chat/completions", key, json={
        "model": "words/echo", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "a b c"}]})
    assert r.status_code == 200, r.text
    chunks = sse_data(r.text)
    assert chunks[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text == "c b a"
    assert chunks[-2]["usage"]["completion_tokens"] == 3
    # the gateway capped the output from the hold and the adapter sent it as its own "limit"
    assert fake_words.bodies[-1]["limit"] == 1000
    assert round(gw.credits(key)["total_spent"] * 10**6) == expected_micros(gw.catalog()["words/echo"], 3, 3)


def test_the_kind_serves_embeddings(gw):
    key = gw.create_key(credits_micros=100 * 10**6)
    r = gw.post("/v1/embeddings", key, json={"model": "words/vec", "input": ["x y", "z"]})
    assert r.status_code == 200, r.text
    assert [d["embedding"] for d in r.json()["data"]] == [[3.0, 1.0], [1.0, 1.0]]
    assert r.json()["usage"]["prompt_tokens"] == 3


async def test_a_model_the_kind_cannot_serve_stops_the_start(tmp_path, words_kind):
    cfg = tmp_path / "aicredits.toml"
    cfg.write_text(MODELS.format(base="http://127.0.0.1:9") + """
[[models]]
id = "words/voice"
provider = "wordy"
upstream_id = "voice-1"
endpoint = "speech"
cost_per_1m_chars = 15.0
""")
    settings = load_settings({"AICREDITS_CONFIG": str(cfg), "WORDS_KEY": KEY})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(SettingsError) as err:
            build_providers(settings, session, load_catalog(settings.extra_models))
    assert str(err.value) == "model 'words/voice': provider 'wordy' (kind words) does not serve the speech endpoint"


def test_capabilities_are_read_from_the_adapter(words_kind):
    settings = load_settings({"WORDS_KEY": KEY})
    adapter = WordsProvider(settings.providers["demo"], None, connect_timeout=1, first_byte_timeout=1,
                            idle_timeout=1)
    assert [e for e in ("chat", "embeddings", "images", "speech", "transcription") if serves(adapter, e)] == \
        ["chat", "embeddings"]


def test_an_unregistered_kind_is_a_start_up_error(tmp_path):
    cfg = tmp_path / "aicredits.toml"
    cfg.write_text('[providers.x]\nkind = "telepathy"\nbase_url = "http://127.0.0.1:9"\n')
    with pytest.raises(SettingsError, match=r"\[providers.x\] kind: unknown provider kind 'telepathy' \(known: "):
        load_settings({"AICREDITS_CONFIG": str(cfg)})
