"""Every /v1 POST endpoint's body, fuzzed (hypothesis): plausible requests with random fields,
values, unicode (lone surrogates included) and nesting (up to hundreds of levels), and raw junk.
Whatever the body, the answer is never a 500, an error keeps the reference's shape, and no hold
is left open. In-process (tests/inproc.py) against the fake OpenAI and Anthropic upstreams,
so every plausible body also goes the whole way: provider, settlement, answer.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.media_helpers import make_wav
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.inproc import InProcessGateway

EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
WAV = make_wav(0.5)

# ---------------------------------------------------------------- values
ANY_CHAR = st.characters(codec=None, categories=None)   # every code point, lone surrogates included
# any unicode text; one in ten may hold lone surrogates (invalid in JSON text: a 400)
TEXT = st.integers(0, 9).flatmap(lambda i: st.text(ANY_CHAR, max_size=8) if i == 0 else (
    st.text(max_size=12) | st.sampled_from(["", "user", "text", "image_url", "input_text", "\u0000", "नमस्ते", "🙂"])))
LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
        | st.floats() | TEXT)
WORDS = TEXT.filter(bool)   # a non-empty string
JSON = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
                    max_leaves=12)


@st.composite
def deep(draw, inner=JSON):
    """A value inside 1-400 levels of arrays and/or objects (the limits' edges drawn often)."""
    value = draw(inner)
    depth = draw(st.integers(1, 400) | st.sampled_from([98, 99, 100, 101, 251, 252, 253, 254, 255]))
    shape = draw(st.sampled_from(["list", "dict", "both"]))
    for level in range(depth):
        value = [value] if shape == "list" or (shape == "both" and level % 2) else {"x": value}
    return value


ODD = JSON | deep()


def mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """The plausible value 19 times in 20, anything (nested values included) the 20th."""
    return st.integers(0, 19).flatmap(lambda i: ODD if i == 0 else plausible)


def body_of(required: dict, optional: dict) -> st.SearchStrategy:
    """A request: its fields mostly from their plausible strategies, and extra fields (nested too)."""
    return st.fixed_dictionaries(
        {k: mostly(v) for k, v in required.items()},
        optional={**{k: mostly(v) for k, v in optional.items()}, "extra": ODD,
                  "models": mostly(st.lists(st.sampled_from(["openai/gpt-4o", "x"]), max_size=2)),
                  "no_cache": st.booleans()})


# ---------------------------------------------------------------- per endpoint
CHAT_MODELS = st.sampled_from(["openai/gpt-4o-mini", "gpt-4o-mini", "anthropic/claude-sonnet-4.6", "openai/gpt-4o",
                               "anthropic/claude-sonnet-4.6", "openai/text-embedding-3-small", "nope/x", ""])
PART = st.fixed_dictionaries({"type": mostly(st.sampled_from(["text", "image_url", "input_audio", "file", "x"]))},
                             optional={"text": mostly(TEXT), "image_url": ODD, "cache_control": ODD})
MESSAGE = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["user", "system", "assistant", "tool", "developer", "function"]))},
    optional={"content": mostly(TEXT | st.lists(PART, max_size=3)), "name": TEXT, "tool_calls": ODD,
              "tool_call_id": TEXT, "function_call": ODD})
SMALL_INT = st.integers(0, 9).flatmap(lambda i: st.integers(1, 4) if i else (st.integers(-3, 300)
                                                                            | st.integers(-(2**64), 2**64)))
CHAT = body_of({"model": CHAT_MODELS, "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
               {"stream": st.booleans(), "max_tokens": SMALL_INT, "max_completion_tokens": SMALL_INT, "n": SMALL_INT,
                "temperature": st.floats(0, 2), "tools": ODD, "tool_choice": ODD, "functions": ODD,
                "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}), "response_format": ODD,
                "stop": ODD, "cache": ODD})

ITEM = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["user", "system", "assistant", "developer"]))},
    optional={"type": mostly(st.sampled_from(["message", "function_call", "function_call_output", "reasoning"])),
              "content": mostly(TEXT | st.lists(st.fixed_dictionaries(
                  {"type": mostly(st.sampled_from(["input_text", "input_image", "output_text", "refusal"]))},
                  optional={"text": mostly(TEXT), "image_url": ODD}), max_size=3)),
              "call_id": TEXT, "output": ODD, "arguments": ODD, "name": ODD})
RESPONSES = body_of({"model": CHAT_MODELS, "input": WORDS | st.lists(ITEM, min_size=1, max_size=3)},
                    {"stream": st.booleans(), "instructions": TEXT, "max_output_tokens": SMALL_INT, "tools": ODD,
                     "text": ODD, "tool_choice": ODD, "previous_response_id": ODD, "reasoning": ODD,
                     "store": ODD})

EMBEDDINGS = body_of(
    {"model": st.sampled_from(["openai/text-embedding-3-small", "text-embedding-3-large", "openai/gpt-4o-mini"]),
     "input": TEXT | st.lists(TEXT, min_size=1, max_size=4) | st.lists(st.integers(0, 2**40), min_size=1, max_size=4)
     | st.lists(st.lists(st.integers(0, 100), min_size=1, max_size=3), min_size=1, max_size=3) | ODD},
    {"encoding_format": st.sampled_from(["float", "base64", "float", "base64", "x"]), "dimensions": SMALL_INT,
     "user": TEXT})

IMAGES = body_of({"model": st.sampled_from(["openai/dall-e-3", "openai/dall-e-2", "openai/gpt-image-1", "x"]),
                  "prompt": WORDS},
                 {"n": SMALL_INT, "size": st.sampled_from(["1024x1024", "256x256", "1792x1024", "auto", "9x9"]),
                  "quality": st.sampled_from(["standard", "hd", "low", "high", "auto", "x"]),
                  "response_format": st.sampled_from(["url", "b64_json", "x"]),
                  "style": st.sampled_from(["vivid", "natural"])})

SPEECH = body_of({"model": st.sampled_from(["openai/tts-1", "openai/gpt-4o-mini-tts", "sarvam/bulbul-v2", "x"]),
                  "input": WORDS, "voice": st.sampled_from(["alloy", "nova", "x"])},
                 {"response_format": st.sampled_from(["mp3", "opus", "aac", "flac", "wav", "pcm", "x"]),
                  "speed": st.floats(0.25, 4.0), "language": TEXT, "instructions": TEXT})

AUDIO_DATA = st.sampled_from([base64.b64encode(WAV).decode()] * 3 + ["", "not base64!",
                                                                      base64.b64encode(b"RIFF").decode()])
TRANSCRIPTION = body_of(
    {"model": st.sampled_from(["openai/whisper-1", "openai/gpt-4o-transcribe", "x"]),
     "input_audio": st.fixed_dictionaries({"data": mostly(AUDIO_DATA),
                                           "format": mostly(st.sampled_from(["wav", "mp3", "x"]))})},
    {"language": TEXT, "response_format": st.sampled_from(["json", "text", "srt", "verbose_json", "vtt", "x"]),
     "prompt": TEXT, "temperature": st.floats()})

ENDPOINTS = {"/v1/chat/completions": CHAT, "/v1/responses": RESPONSES, "/v1/embeddings": EMBEDDINGS,
             "/v1/images/generations": IMAGES, "/v1/audio/speech": SPEECH, "/v1/audio/transcriptions": TRANSCRIPTION}


def encode(value, ascii_only: bool) -> bytes:
    """JSON text; with lone surrogates either escaped (\\udXXX) or raw (invalid UTF-8)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


RAW = st.binary(max_size=64) | st.sampled_from([b"", b"{", b"[]", b"null", b'{"model":', b"\xff\xfe", b"NaN",
                                               b"[" * 3000 + b"]" * 3000, b'{"a":' * 2000 + b"1" + b"}" * 2000])


# ---------------------------------------------------------------- the gateway
@pytest.fixture(scope="module")
def fake_anthropic():
    f = FakeAnthropic().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fake_openai, fake_anthropic):
    g = InProcessGateway(tmp_path_factory.mktemp("fuzz"), {
        "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_API_KEY": fake_openai.api_key,
        "ANTHROPIC_BASE_URL": fake_anthropic.base_url, "ANTHROPIC_API_KEY": fake_anthropic.api_key,
        "AICREDITS_LOG_LEVEL": "CRITICAL"}).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key(credits_micros=10**6 * 10**6)


def check(gw, key, path: str, content: bytes, ctype: str = "application/json") -> None:
    r = gw.post(path, key, content=content, headers={"content-type": ctype})
    assert r.status_code < 500, (path, content[:300], r.status_code, r.text[:300])
    if r.status_code >= 400:
        doc = r.json()
        assert set(doc) == {"error"}, doc
        err = doc["error"]
        assert {"message", "type", "code"} <= set(err) <= {"message", "type", "code", "param"}, err
        assert err["code"] == r.status_code and isinstance(err["message"], str) and err["message"], err


def no_hold_left(gw, key) -> None:
    cr = gw.credits(key)
    assert cr["held"] == 0 and cr["key"]["held"] == 0, cr


# ---------------------------------------------------------------- JSON endpoints
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_json_bodies_never_500(gw, key, fake_openai, fake_anthropic, path):
    @EXAMPLES
    @given(value=mostly(ENDPOINTS[path]), ascii_only=st.booleans())
    def run(value, ascii_only):
        check(gw, key, path, encode(value, ascii_only))

    run()
    no_hold_left(gw, key)


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_raw_bodies_never_500(gw, key, path):
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(raw=RAW)
    def run(raw):
        check(gw, key, path, raw)

    run()
    no_hold_left(gw, key)


# ---------------------------------------------------------------- multipart transcriptions
HEADER_VALUE = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=24) | st.sampled_from([
    "punycode''%5cx", "utf-8''%ff", "rot13''abc", "idna''%5c", "utf-16''%00", "''", "x", "utf-8''a.wav",
    "iso-8859-1''%e9.wav", "\"a\\\"b.wav\"", "\"unterminated"])
PARAM = st.tuples(st.sampled_from(["name", "filename", "filename*", "name*", "x", ""]), HEADER_VALUE)


@st.composite
def form_part(draw) -> bytes:
    params = draw(st.lists(PARAM, max_size=4))
    name = draw(st.sampled_from(["model", "file", "language", "response_format", "prompt", "x"]))
    disposition = draw(st.sampled_from(["form-data", "attachment", "", "FORM-DATA"]))
    head = f"Content-Disposition: {disposition}; name=\"{name}\"" + "".join(f"; {k}={v}" for k, v in params)
    if draw(st.booleans()):
        head += "\r\nContent-Type: " + draw(st.sampled_from(["audio/wav", "audio/mpeg", "text/plain", "", "x/y"]))
    value = draw(st.sampled_from([WAV, b"openai/whisper-1", b"json", b"", "नमस्ते".encode(), b"\xff\xfe"])
                 | st.binary(max_size=32))
    return head.encode("latin-1") + b"\r\n\r\n" + value


@st.composite
def multipart(draw) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b", "----x", "a" * 70]) | st.text("abcXYZ019'()+_,-./:=?", min_size=1,
                                                                         max_size=20))
    parts = draw(st.lists(form_part(), max_size=5))
    if draw(st.booleans()):   # a well-formed request for the parts to add to
        parts = [b'Content-Disposition: form-data; name="model"\r\n\r\nopenai/whisper-1',
                 b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
                 + WAV, *parts]
    delim = b"--" + boundary.encode()
    body = b"".join(delim + b"\r\n" + p + b"\r\n" for p in parts) + delim + b"--\r\n"
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=8))
    ctype = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}",
                                  f'multipart/form-data; boundary="{boundary}"', "multipart/form-data",
                                  f"multipart/form-data; boundary*=utf-8''{boundary}", "multipart/mixed; boundary=b"]))
    return body, ctype


def test_multipart_transcriptions_never_500(gw, key):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(form=multipart())
    def run(form):
        body, ctype = form
        check(gw, key, "/v1/audio/transcriptions", body, ctype)

    run()
    no_hold_left(gw, key)
