"""The fake Sarvam upstream (tests/fakes/sarvam_upstream.py) driven by Sarvam's own Python SDK,
``sarvamai`` 0.1.39 (pinned in constraints.txt): what the SDK sends, the fake accepts; what the fake
answers, the SDK parses into its own types; its errors become the SDK's own exception classes.

Facts taken from the SDK's source (site-packages/sarvamai):
* ``client.py``: ``SarvamAI(*, environment=SarvamAIEnvironment.PRODUCTION, api_subscription_key, headers,
  timeout, follow_redirects, httpx_client, logging)`` - there is no ``base_url``; a custom URL is an
  ``environment.SarvamAIEnvironment(base=..., creative=..., production=...)`` and REST calls use ``.base``.
* ``core/client_wrapper.py``: every request carries ``api-subscription-key`` (no ``Authorization``).
* ``text_to_speech/raw_client.py``: ``convert(text, language_code, speaker, ..., model, ...)`` POSTs JSON to
  ``text-to-speech`` with ``language_code`` (not ``target_language_code``, which the gateway also no longer sends) and leaves out unset fields;
  a 2xx is parsed as ``TextToSpeechResponse{request_id?, audios: list[str]}``; 400/403/422/429/500 raise
  BadRequestError/ForbiddenError/UnprocessableEntityError/TooManyRequestsError/InternalServerError.
* ``speech_to_text/raw_client.py``: ``transcribe(file, model, mode, language_code, with_timestamps,
  input_audio_codec, keyterms)`` POSTs multipart to ``speech-to-text`` and always sends ``keyterms``
  (``json.dumps`` of the omitted value: ``null``); parsed as ``SpeechToTextResponse{request_id?,
  transcript, timestamps?, language_code?, language_probability?}``.
* ``core/http_client.py``: 408/409/429/5xx are retried (``max_retries`` 2 by default, backoff from 1 s).
"""

from __future__ import annotations

import base64
import inspect
import io
import wave

import httpx
import pytest
from sarvamai import AsyncSarvamAI, SarvamAI
from sarvamai.core.api_error import ApiError
from sarvamai.environment import SarvamAIEnvironment
from sarvamai.errors import (
    BadRequestError,
    ForbiddenError,
    InternalServerError,
    TooManyRequestsError,
    UnauthorizedError,
    UnprocessableEntityError,
)
from sarvamai.types import SpeechToTextResponse, TextToSpeechResponse

from tests.fakes.sarvam_upstream import (
    DETECTED_PROBABILITY,
    MAX_CHARS,
    TRANSCRIPTS,
    FakeSarvam,
    tts_frames,
    tts_wav,
)

NO_RETRY = {"max_retries": 0}


def environment(base_url: str) -> SarvamAIEnvironment:
    """The SDK's way to a custom URL: REST calls go to `base` (the others are dubbing and websockets)."""
    return SarvamAIEnvironment(base=base_url, creative=base_url + "/dubbing",
                               production=base_url.replace("http://", "ws://", 1))


@pytest.fixture(scope="module")
def fake():
    f = FakeSarvam().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def sdk(fake, http):
    return SarvamAI(api_subscription_key=fake.api_key, environment=environment(fake.base_url), httpx_client=http)


def read_wav(b64: str) -> wave.Wave_read:
    raw = base64.b64decode(b64, validate=True)
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    return wave.open(io.BytesIO(raw), "rb")


# ---------------------------------------------------------------- the SDK's surface in 0.1.39
def test_sdk_version_and_signatures():
    from sarvamai.version import __version__
    assert __version__ == "0.1.39"
    params = inspect.signature(SarvamAI).parameters
    assert "environment" in params and "api_subscription_key" in params and "base_url" not in params
    with pytest.raises(TypeError):
        SarvamAI(api_subscription_key="k", base_url="http://127.0.0.1:1")        # no such parameter
    convert = inspect.signature(SarvamAI(api_subscription_key="k").text_to_speech.convert).parameters
    assert "language_code" in convert and "target_language_code" not in convert
    with pytest.raises(TypeError):
        SarvamAI(api_subscription_key="k").text_to_speech.convert(text="x", target_language_code="hi-IN")


# ---------------------------------------------------------------- text to speech
def test_tts_convert_is_parsed_and_is_a_wav(sdk, fresh):
    text = "नमस्ते, आप कैसे हैं?"
    resp = sdk.text_to_speech.convert(text=text, language_code="hi-IN", speaker="anushka", model="bulbul:v2")
    assert isinstance(resp, TextToSpeechResponse)
    assert resp.request_id and len(resp.audios) == 1
    w = read_wav(resp.audios[0])
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
    assert w.getnframes() == tts_frames(text, 22050)
    (call,) = fresh.tts_requests()
    assert call.method == "POST" and call.headers["content-type"] == "application/json"
    assert call.headers["api-subscription-key"] == fresh.api_key and "authorization" not in call.headers
    assert call.headers["user-agent"] == "sarvamai/0.1.39"
    # unset optional fields are left out, not sent as null
    assert call.body == {"text": text, "language_code": "hi-IN", "speaker": "anushka", "model": "bulbul:v2"}


def test_tts_every_bulbul_v2_option_the_sdk_has(sdk, fresh):
    resp = sdk.text_to_speech.convert(
        text="Good morning", language_code="en-IN", speaker="karun", model="bulbul:v2", pitch=-0.5, pace=1.5,
        loudness=2.0, speech_sample_rate=16000, enable_preprocessing=True, output_audio_codec="wav",
        enable_cached_responses=False)
    w = read_wav(resp.audios[0])
    assert w.getframerate() == 16000 and w.getnframes() == tts_frames("Good morning", 16000)
    body = fresh.tts_requests()[-1].body
    assert (body["pitch"], body["pace"], body["loudness"], body["speech_sample_rate"]) == (-0.5, 1.5, 2.0, 16000)


def test_tts_text_of_1500_chars_is_spoken_and_1501_is_the_apis_400(sdk):
    ok = sdk.text_to_speech.convert(text="a" * MAX_CHARS, language_code="en-IN", model="bulbul:v2")
    assert read_wav(ok.audios[0]).getnframes() == tts_frames("a" * MAX_CHARS, 22050)
    with pytest.raises(BadRequestError) as exc:
        sdk.text_to_speech.convert(text="a" * (MAX_CHARS + 1), language_code="en-IN", model="bulbul:v2")
    assert exc.value.status_code == 400
    err = exc.value.body["error"]
    assert err["code"] == "invalid_request_error" and "1500" in err["message"] and err["request_id"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"speaker": "shubh"}, "shubh"),                         # a bulbul:v3 voice
    ({"pace": 3.5}, "pace"),
    ({"pitch": 1.2}, "pitch"),
    ({"speech_sample_rate": 48000}, "speech_sample_rate"),   # v3 REST only
    ({"language_code": "fr-FR"}, "fr-FR"),
])
def test_tts_values_bulbul_v2_refuses_raise_bad_request(sdk, kwargs, needle):
    args = {"text": "hello", "language_code": "en-IN", "model": "bulbul:v2", **kwargs}
    with pytest.raises(BadRequestError) as exc:
        sdk.text_to_speech.convert(**args)
    assert needle in exc.value.body["error"]["message"]


def test_tts_omitted_model_is_the_apis_v3_default_which_the_fake_does_not_serve(sdk):
    with pytest.raises(BadRequestError) as exc:
        sdk.text_to_speech.convert(text="hello", language_code="en-IN", speaker="anushka")
    assert "bulbul:v3" in exc.value.body["error"]["message"]


def test_tts_legacy_dialects_still_answered(fake, http):
    """Older SDKs' `target_language_code`, and the batch `inputs` list: one audio each."""
    hdr = {"api-subscription-key": fake.api_key}
    r = http.post(fake.base_url + "/text-to-speech", headers=hdr,
                  json={"inputs": ["one", "two three"], "target_language_code": "hi-IN", "model": "bulbul:v2"})
    resp = TextToSpeechResponse.model_validate(r.json())
    assert r.status_code == 200 and [read_wav(a).getnframes() for a in resp.audios] == \
        [tts_frames("one", 22050), tts_frames("two three", 22050)]
    r = http.post(fake.base_url + "/text-to-speech", headers=hdr,
                  json={"text": ["one", "two"], "language_code": "hi-IN", "model": "bulbul:v2"})
    assert r.status_code == 400 and "Use 'inputs'" in r.json()["error"]["message"]


# ---------------------------------------------------------------- speech to text
def test_stt_transcribe_is_parsed(sdk, fresh):
    audio = tts_wav("a" * 150, 16000)                               # 1.5 s
    resp = sdk.speech_to_text.transcribe(file=("clip.wav", audio, "audio/wav"), model="saarika:v2",
                                         language_code="hi-IN")
    assert isinstance(resp, SpeechToTextResponse)
    assert resp.transcript == TRANSCRIPTS["hi-IN"] and resp.language_code == "hi-IN" and resp.request_id
    assert resp.timestamps is None and resp.language_probability is None
    (call,) = fresh.stt_requests()
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert call.headers["api-subscription-key"] == fresh.api_key
    assert call.body["model"] == "saarika:v2" and call.body["language_code"] == "hi-IN"
    assert call.body["keyterms"] == "null"                          # sent by the SDK even when not given
    assert call.body["file"] == {"filename": "clip.wav", "content_type": "audio/wav", "data": audio}


def test_stt_auto_detect_and_timestamps(sdk, fresh):
    audio = tts_wav("a" * 120, 16000)                               # 1.2 s
    resp = sdk.speech_to_text.transcribe(file=io.BytesIO(audio), model="saarika:v2", language_code="unknown",
                                         with_timestamps=True)               # a bare file object works too
    assert resp.language_code == "hi-IN" and resp.language_probability == DETECTED_PROBABILITY
    ts = resp.timestamps
    assert ts.words == [resp.transcript] and ts.start_time_seconds == [0.0] and ts.end_time_seconds == [1.2]
    assert fresh.stt_requests()[-1].body["with_timestamps"] == "true"


def test_stt_omitted_model_is_the_apis_saaras_v3_default_which_the_fake_does_not_serve(sdk):
    with pytest.raises(BadRequestError) as exc:
        sdk.speech_to_text.transcribe(file=("a.wav", tts_wav("abc", 16000), "audio/wav"), language_code="ta-IN")
    assert "saaras:v3" in exc.value.body["error"]["message"]


# ---------------------------------------------------------------- errors
def test_wrong_key_is_403_forbidden_for_both_endpoints(fake, http):
    bad = SarvamAI(api_subscription_key="wrong", environment=environment(fake.base_url), httpx_client=http)
    with pytest.raises(ForbiddenError) as exc:
        bad.text_to_speech.convert(text="hi", language_code="hi-IN", model="bulbul:v2")
    assert exc.value.status_code == 403 and not isinstance(exc.value, UnauthorizedError)  # Sarvam: 403, not 401
    assert exc.value.body["error"]["code"] == "invalid_api_key_error"
    with pytest.raises(ForbiddenError) as exc:
        bad.speech_to_text.transcribe(file=("a.wav", tts_wav("abc"), "audio/wav"), model="saarika:v2")
    assert exc.value.status_code == 403 and isinstance(exc.value, ApiError)
    assert fake.tts_requests()[0].headers["api-subscription-key"] == "wrong"


@pytest.mark.parametrize("status, error, code", [
    (400, BadRequestError, "invalid_request_error"),
    (422, UnprocessableEntityError, "invalid_request_error"),
    (429, TooManyRequestsError, "rate_limit_exceeded_error"),
    (500, InternalServerError, "internal_server_error"),
])
def test_upstream_failures_become_the_sdks_error_classes(sdk, fresh, status, error, code):
    fresh.fail_next(status, "boom")
    with pytest.raises(error) as exc:
        sdk.text_to_speech.convert(text="hi", language_code="hi-IN", model="bulbul:v2", request_options=NO_RETRY)
    assert exc.value.status_code == status and exc.value.body["error"] == {
        "message": "boom", "code": code, "request_id": exc.value.body["error"]["request_id"]}
    fresh.fail_next(429, "Credits exhausted", code="insufficient_quota_error")
    with pytest.raises(TooManyRequestsError) as exc:
        sdk.speech_to_text.transcribe(file=("a.wav", tts_wav("abc"), "audio/wav"), model="saarika:v2",
                                      request_options=NO_RETRY)
    assert exc.value.body["error"]["code"] == "insufficient_quota_error"


def test_sdk_retries_a_5xx_and_then_parses(sdk, fresh):
    fresh.fail_next(503, "busy")
    resp = sdk.text_to_speech.convert(text="hi", language_code="hi-IN", model="bulbul:v2",
                                      request_options={"max_retries": 1})
    assert len(resp.audios) == 1 and len(fresh.tts_requests()) == 2


# ---------------------------------------------------------------- the async client
async def test_async_client(fake):
    async with httpx.AsyncClient(timeout=10) as http:
        client = AsyncSarvamAI(api_subscription_key=fake.api_key, environment=environment(fake.base_url),
                               httpx_client=http)
        tts = await client.text_to_speech.convert(text="வணக்கம்", language_code="ta-IN", speaker="vidya",
                                                  model="bulbul:v2", speech_sample_rate=24000)
        assert read_wav(tts.audios[0]).getframerate() == 24000
        stt = await client.speech_to_text.transcribe(file=("c.wav", tts_wav("abc"), "audio/wav"),
                                                     model="saarika:v2", language_code="ta-IN")
        assert stt.transcript == TRANSCRIPTS["ta-IN"]
