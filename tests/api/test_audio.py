"""Speech and transcription through the gateway with the official openai SDK, against the fake
OpenAI and fake Sarvam upstreams: exact charges per character and per second of audio."""

from __future__ import annotations

import base64
import io
import wave

import httpx
import openai
import pytest

from tests.api.media_helpers import inr, make_mp3, make_wav, speech_micros, spent, transcription_micros
from tests.fakes.audio_files import decode, encode, mp3_with_frame_count, tone
from tests.fakes.openai_media import TRANSCRIPT, speech_seconds
from tests.fakes.openai_upstream import Scenario
from tests.fakes.sarvam_upstream import MAX_CHARS, MS_PER_CHAR, FakeSarvam, tts_frames
from tests.inproc import running

CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
HINDI = "नमस्ते, आप कैसे हैं? मैं ठीक हूँ। "
CODEC_NAMES = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}


def assert_audio(content: bytes, fmt: str, seconds: float, rate: int = 24000) -> None:
    """The bytes decode, with the demuxer of `fmt`, to about `seconds` of audio in that codec (pcm:
    24 kHz 16-bit mono frames). Lossy codecs add an encoder delay of some ms."""
    if fmt == "pcm":
        assert len(content) == 2 * round(seconds * rate)
        return
    codec, got, _ = decode(content, fmt)
    assert CODEC_NAMES[fmt] in codec, codec     # the decoder FFmpeg picked: mp3float, opus, ...
    assert seconds - 0.01 <= got <= seconds + 0.1, (fmt, got, seconds)
TAMIL = "வணக்கம், நீங்கள் எப்படி இருக்கிறீர்கள்?"


@pytest.fixture(scope="module")
def sarvam():
    fake = FakeSarvam().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(serve_gateway, sarvam):
    """OpenAI (fake) and Sarvam (fake) both configured."""
    return serve_gateway(env={"SARVAM_API_KEY": sarvam.api_key, "SARVAM_BASE_URL": sarvam.base_url})


@pytest.fixture
def fresh(sarvam, upstream):
    sarvam.reset()
    yield sarvam
    sarvam.reset()


@pytest.fixture(scope="module")
def wallet(gw):
    return gw.create_key(credits="100")


def client(gw, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0)


def paths(upstream, path):
    return [r for r in upstream.requests if r.path == path]


# ---------------------------------------------------------------- speech: OpenAI
def test_speech_formats_content_types_and_exact_charges(gw, upstream, fresh):
    key = gw.create_key(credits="10")
    entry = gw.catalog()["openai/tts-1"]
    total = 0
    for fmt, ctype in CONTENT_TYPES.items():
        text = f"Hello in {fmt}, from the gateway."
        raw = client(gw, key).audio.speech.with_raw_response.create(
            model="openai/tts-1", voice="alloy", input=text, response_format=fmt)
        assert raw.content == upstream.speech_sent[text]    # OpenAI's own audio, passed through
        assert_audio(raw.content, fmt, speech_seconds(text))
        assert raw.headers["content-type"] == ctype
        want = speech_micros(entry, len(text))
        assert raw.headers["x-aicredits-cost"] == inr(want)
        assert raw.headers["x-aicredits-cache"] == "bypass" and "x-aicredits-overhead-ms" in raw.headers
        sent = paths(upstream, "/v1/audio/speech")[-1].body
        assert sent == {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt}
        total += want
    assert spent(gw, key) == total
    # the default format is mp3
    raw = client(gw, key).audio.speech.with_raw_response.create(model="tts-1", voice="nova", input="Hi")
    assert raw.content == upstream.speech_sent["Hi"] and raw.headers["content-type"] == "audio/mpeg"
    assert_audio(raw.content, "mp3", speech_seconds("Hi"))


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_speech_from_a_server_that_ignores_the_format_is_converted(gw, upstream, wallet, fmt):
    upstream.speech_format = "wav"           # an OpenAI-compatible server that always answers WAV
    text = f"Converted to {fmt} by the gateway."
    raw = client(gw, wallet).audio.speech.with_raw_response.create(
        model="openai/tts-1", voice="alloy", input=text, response_format=fmt)
    assert raw.headers["content-type"] == CONTENT_TYPES[fmt]
    assert_audio(raw.content, fmt, speech_seconds(text))


def test_speech_counts_code_points(gw, upstream, wallet):
    text = "नमस्ते 👋 dünya"       # combining marks and an emoji: code points, not bytes or graphemes
    raw = client(gw, wallet).audio.speech.with_raw_response.create(
        model="tts-1-hd", voice="echo", input=text, speed=1.5, extra_body={"language": "hi"})
    assert raw.headers["x-aicredits-cost"] == inr(speech_micros(gw.catalog()["openai/tts-1-hd"], len(text)))
    sent = paths(upstream, "/v1/audio/speech")[-1].body
    assert sent["speed"] == 1.5 and "language" not in sent


@pytest.mark.parametrize("kwargs, param", [
    ({"input": "x" * 4097}, "input"),
    ({"voice": ""}, "voice"),
    ({"response_format": "ogg"}, "response_format"),
    ({"speed": 5}, "speed"),
    ({"model": "whisper-1"}, "model"),
])
def test_speech_invalid_is_400(gw, upstream, wallet, kwargs, param):
    args = {"model": "tts-1", "voice": "alloy", "input": "hello", **kwargs}
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, wallet).audio.speech.create(**args)
    assert exc.value.status_code == 400 and exc.value.body.get("param") == param
    assert paths(upstream, "/v1/audio/speech") == []


def test_speech_upstream_error_charges_nothing(gw, upstream):
    key = gw.create_key(credits="5")
    upstream.enqueue(Scenario(status=400, error_type="invalid_request_error", error_message="bad voice"))
    with pytest.raises(openai.BadRequestError):
        client(gw, key).audio.speech.create(model="tts-1", voice="alloy", input="hello")
    assert spent(gw, key) == 0 and gw.credits(key["key"])["held"] == 0


# ---------------------------------------------------------------- speech: Sarvam
def _wav(content: bytes) -> wave.Wave_read:
    return wave.open(io.BytesIO(content), "rb")


def test_sarvam_long_input_is_split_and_joined_into_one_wav(gw, fresh):
    key = gw.create_key(credits="20")
    text = (HINDI * 120).strip()       # ~3900 code points
    assert 3000 < len(text) <= 4096
    raw = client(gw, key).audio.speech.with_raw_response.create(model="sarvam/bulbul-v2", voice="nova", input=text)
    calls = fresh.tts_requests()
    assert len(calls) == 3
    pieces = [c.body["text"] for c in calls]
    assert all(len(p) <= MAX_CHARS for p in pieces)
    assert all(p.endswith(("?", "।")) for p in pieces)         # cut at sentence ends
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    for c in calls:
        assert c.headers["api-subscription-key"] == fresh.api_key
        assert (c.body["language_code"], c.body["speaker"], c.body["model"]) == ("hi-IN", "vidya", "bulbul:v2")
    # mp3 by default: the pieces' WAVs joined, then encoded (Sarvam cannot join them)
    assert all("output_audio_codec" not in c.body for c in calls)
    assert raw.headers["content-type"] == "audio/mpeg"
    rate = calls[0].body["speech_sample_rate"]
    assert_audio(raw.content, "mp3", sum(tts_frames(p, rate) for p in pieces) / rate, rate)
    want = speech_micros(gw.catalog()["sarvam/bulbul-v2"], len(text))   # INR price x 1.15, no rate
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert spent(gw, key) == want


@pytest.mark.parametrize("voice, speaker", [
    ("alloy", "anushka"), ("echo", "abhilash"), ("fable", "manisha"), ("onyx", "karun"), ("nova", "vidya"),
    ("shimmer", "arya"), ("coral", "anushka"), ("hitesh", "hitesh"), ("Karun", "karun"),
])
def test_sarvam_voice_mapping(gw, fresh, wallet, voice, speaker):
    client(gw, wallet).audio.speech.create(model="sarvam/bulbul-v2", voice=voice, input="Hello there.",
                                           response_format="wav")
    assert fresh.tts_requests()[-1].body["speaker"] == speaker


@pytest.mark.parametrize("text, extra, lang", [
    (HINDI, {}, "hi-IN"), (TAMIL, {}, "ta-IN"), ("ಕನ್ನಡ ಭಾಷೆ", {}, "kn-IN"), ("ভালো আছি", {}, "bn-IN"),
    ("ਸਤ ਸ੍ਰੀ ਅਕਾਲ", {}, "pa-IN"), ("કેમ છો", {}, "gu-IN"), ("ଓଡ଼ିଆ", {}, "od-IN"), ("తెలుగు", {}, "te-IN"),
    ("മലയാളം", {}, "ml-IN"), ("Good morning, Mumbai!", {}, "en-IN"),
    ("Hello अच्छा है", {}, "hi-IN"), ("Good morning", {"language": "bn"}, "bn-IN"),
    ("Good morning", {"language": "mr-IN"}, "mr-IN"),
])
def test_sarvam_language_from_script_or_request(gw, fresh, wallet, text, extra, lang):
    client(gw, wallet).audio.speech.create(model="sarvam/bulbul-v2", voice="alloy", input=text, extra_body=extra)
    assert fresh.tts_requests()[-1].body["language_code"] == lang


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
@pytest.mark.parametrize("honoured", [True, False])
def test_sarvam_speech_in_every_format(gw, fresh, wallet, fmt, honoured):
    """One request's worth of text: Sarvam is asked for the codec; a server that answers WAV
    whatever it is asked (honoured=False) is converted by the gateway."""
    if not honoured:
        fresh.codecs = ("wav",)
    text = "Namaste, this is Bulbul speaking."
    raw = client(gw, wallet).audio.speech.with_raw_response.create(
        model="sarvam/bulbul-v2", voice="alloy", input=text, response_format=fmt)
    sent = fresh.tts_requests()[-1].body
    assert sent.get("output_audio_codec", "wav") == (fmt if fmt in ("mp3", "opus", "aac", "flac") else "wav")
    assert raw.headers["content-type"] == CONTENT_TYPES[fmt]
    rate = sent["speech_sample_rate"]
    assert_audio(raw.content, fmt, len(text) * MS_PER_CHAR / 1000, rate)


def test_sarvam_pcm_is_raw_frames_and_unsupported_language_is_400(gw, fresh, wallet):
    raw = client(gw, wallet).audio.speech.with_raw_response.create(
        model="sarvam/bulbul-v2", voice="alloy", input="One two three.", response_format="pcm", speed=0.25)
    body = fresh.tts_requests()[-1].body
    assert raw.headers["content-type"] == "audio/pcm" and body["pace"] == 0.3
    assert len(raw.content) == 2 * tts_frames("One two three.", body["speech_sample_rate"])
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, wallet).audio.speech.create(model="sarvam/bulbul-v2", voice="alloy", input="Bonjour",
                                               extra_body={"language": "fr"})
    assert "fr" in exc.value.body["message"]


def test_sarvam_upstream_error_charges_nothing(gw, fresh):
    key = gw.create_key(credits="5")
    fresh.fail_next(400, "Text could not be processed")
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, key).audio.speech.create(model="sarvam/bulbul-v2", voice="alloy", input="Hello.")
    assert "could not be processed" in exc.value.body["message"]
    assert spent(gw, key) == 0 and gw.credits(key["key"])["held"] == 0


def test_sarvam_messages_reach_the_client_without_account_ids(gw, fresh):
    """Sarvam's own words pass; the operator's account ids and keys in them do not."""
    key = gw.create_key(credits="5")
    org, sub = "7c9e6679-7425-40de-944b-e07fc1f90ae7", "sk_live_Ab12Cd34Ef56"
    fresh.fail_next(429, f"Rate limit exceeded for subscription {org} (key {sub}); retry in 2 s.")
    with pytest.raises(openai.RateLimitError) as exc:
        client(gw, key).audio.speech.create(model="sarvam/bulbul-v2", voice="alloy", input="Hello.")
    msg = exc.value.body["message"]
    assert "Rate limit exceeded for subscription [redacted]" in msg and "retry in 2 s" in msg, msg
    assert org not in msg and sub not in msg
    fresh.fail_next(500, f"Internal error in workspace wrkspc_01HZX9K2 for org {org}.")
    with pytest.raises(openai.InternalServerError) as exc:
        client(gw, key).audio.transcriptions.create(model="sarvam/saarika-v2", file=("a.wav", make_wav(1.0)))
    msg = exc.value.body["message"]
    assert "Internal error in workspace [redacted] for org [redacted]." in msg, msg
    assert len(fresh.stt_requests()) == 1     # retries are off in this gateway
    assert spent(gw, key) == 0 and gw.credits(key["key"])["held"] == 0


def test_sarvam_speech_whose_client_gives_up_is_cancelled_and_free(gw, fresh):
    key = gw.create_key(credits="5")
    fresh.hang_next()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.v1 + "/audio/speech", json={"model": "sarvam/bulbul-v2", "voice": "alloy", "input": "Hello."},
                   headers={"Authorization": f"Bearer {key['key']}"}, timeout=httpx.Timeout(10, read=1.0))
    assert fresh.disconnected(timeout=2.0), "the Sarvam request was left running"
    assert len(fresh.tts_requests()) == 1
    assert spent(gw, key) == 0 and gw.credits(key["key"])["held"] == 0


# ---------------------------------------------------------------- transcription: OpenAI
def test_transcription_multipart_wav_bills_rounded_up_seconds(gw, upstream):
    key = gw.create_key(credits="5")
    audio = make_wav(2.3)
    raw = client(gw, key).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("meeting.wav", audio, "audio/wav"), language="en", temperature=0.2)
    assert raw.parse().text == TRANSCRIPT
    sent = paths(upstream, "/v1/audio/transcriptions")[-1].body
    assert sent["file"]["data"] == audio and sent["file"]["filename"] == "audio.wav"
    assert (sent["model"], sent["language"], sent["temperature"], sent["response_format"]) == \
        ("whisper-1", "en", "0.2", "json")
    want = transcription_micros(gw.catalog()["openai/whisper-1"], 3)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert spent(gw, key) == want


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_transcription_text_formats_are_plain_text(gw, upstream, wallet, fmt):
    raw = client(gw, wallet).audio.transcriptions.with_raw_response.create(
        model="gpt-4o-mini-transcribe", file=("a.wav", make_wav(1.0)), response_format=fmt)
    assert raw.headers["content-type"].startswith("text/plain")
    assert TRANSCRIPT in raw.parse()
    assert raw.headers["x-aicredits-cost"] == inr(transcription_micros(
        gw.catalog()["openai/gpt-4o-mini-transcribe"], 1))


def test_transcription_verbose_json_and_granularities(gw, upstream, wallet):
    resp = client(gw, wallet).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", make_wav(1.5)), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    assert resp.text == TRANSCRIPT
    sent = paths(upstream, "/v1/audio/transcriptions")[-1].body
    assert sent["timestamp_granularities[]"] == ["word", "segment"]


def test_transcription_json_body_with_base64(gw, upstream):
    key = gw.create_key(credits="5")
    audio = make_mp3(100)       # 100 x 1152 / 44100 = 2.61 s -> 3 s
    body = {"model": "openai/whisper-1", "language": "en",
            "input_audio": {"data": base64.b64encode(audio).decode(), "format": "mp3"}}
    r = httpx.post(gw.v1 + "/audio/transcriptions", json=body, headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"text": TRANSCRIPT}
    sent = paths(upstream, "/v1/audio/transcriptions")[-1].body
    assert sent["file"]["data"] == audio and sent["file"]["filename"] == "audio.mp3"
    want = transcription_micros(gw.catalog()["openai/whisper-1"], 3)
    assert r.headers["x-aicredits-cost"] == inr(want) and spent(gw, key) == want


@pytest.mark.parametrize("name, data", [
    ("voice.mp3", b"this is not audio at all " * 40),
    ("voice.webm", bytes.fromhex("1a45dfa3") + bytes(200)),
    ("voice.wav", b"RIFF\x10\x00\x00\x00WAVEjunk"),
])
def test_unreadable_audio_is_400_and_free(gw, upstream, wallet, name, data):
    before = spent(gw, wallet)
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, wallet).audio.transcriptions.create(model="whisper-1", file=(name, data))
    assert exc.value.body == {"message": exc.value.body["message"], "type": "invalid_request_error",
                              "code": 400, "param": "file"}
    assert "could not be measured" in exc.value.body["message"]
    assert paths(upstream, "/v1/audio/transcriptions") == [] and spent(gw, wallet) == before


def test_an_mp3_whose_header_lies_is_billed_by_its_real_length(gw, upstream):
    """23,000-frame-class lie in small: a 30 s MP3 whose Xing/Info header claims 40 frames
    (about 1.9 s at 24 kHz) is billed 30 s, as both ways of sending it."""
    key = gw.create_key(credits="5")
    audio = mp3_with_frame_count(30.0, 40)
    entry = gw.catalog()["openai/whisper-1"]
    raw = client(gw, key).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("short.mp3", audio))
    assert raw.headers["x-aicredits-cost"] == inr(transcription_micros(entry, 30))
    r = httpx.post(gw.v1 + "/audio/transcriptions", headers={"Authorization": f"Bearer {key['key']}"},
                   json={"model": "whisper-1", "input_audio": {"data": base64.b64encode(audio).decode(),
                                                               "format": "mp3"}})
    assert r.status_code == 200 and r.headers["x-aicredits-cost"] == inr(transcription_micros(entry, 30))
    assert spent(gw, key) == 2 * transcription_micros(entry, 30)


@pytest.mark.parametrize("kind, rate", [("mp3", 24000), ("wav", 16000), ("flac", 16000), ("ogg", 48000),
                                        ("m4a", 24000), ("webm", 48000), ("aac", 24000)])
def test_every_accepted_format_is_measured_from_its_frames(gw, upstream, wallet, kind, rate):
    audio = encode(kind, tone(4.2, rate), rate)
    raw = client(gw, wallet).audio.transcriptions.with_raw_response.create(model="whisper-1",
                                                                           file=(f"clip.{kind}", audio))
    assert raw.headers["x-aicredits-cost"] == inr(transcription_micros(gw.catalog()["openai/whisper-1"], 5))
    sent = paths(upstream, "/v1/audio/transcriptions")[-1].body["file"]
    assert sent["data"] == audio


def test_transcription_bad_requests(gw, upstream, wallet):
    auth = {"Authorization": f"Bearer {wallet['key']}"}
    url = gw.v1 + "/audio/transcriptions"
    r = httpx.post(url, json={"model": "whisper-1", "input_audio": {"data": "@@@", "format": "wav"}}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_audio.data"
    r = httpx.post(url, json={"model": "whisper-1"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_audio"
    r = httpx.post(url, data={"model": "whisper-1"}, files={"other": ("a.wav", make_wav(1))}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(url, content=b"--x\r\ngarbage", headers={**auth, "content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(url, content=b"abc", headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(url, data={"model": "whisper-1", "response_format": "docx"}, files={"file": ("a.wav", make_wav(1))},
                   headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    assert paths(upstream, "/v1/audio/transcriptions") == []


def test_transcription_402_when_the_wallet_cannot_cover_the_audio(gw, upstream):
    entry = gw.catalog()["openai/whisper-1"]
    key = gw.create_key(credits=inr(transcription_micros(entry, 3) - 1))
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw, key).audio.transcriptions.create(model="whisper-1", file=("a.wav", make_wav(2.3)))
    assert exc.value.status_code == 402 and exc.value.body["type"] == "insufficient_credits"
    assert paths(upstream, "/v1/audio/transcriptions") == []
    ok = client(gw, key).audio.transcriptions.with_raw_response.create(model="whisper-1",
                                                                       file=("a.wav", make_wav(2.0)))
    assert ok.headers["x-aicredits-cost"] == inr(transcription_micros(entry, 2))


# ---------------------------------------------------------------- transcription: Sarvam
def test_sarvam_transcription_language_and_inr_price(gw, fresh):
    key = gw.create_key(credits="5")
    audio = make_wav(2.3)
    resp = client(gw, key).audio.transcriptions.with_raw_response.create(
        model="sarvam/saarika-v2", file=("clip.wav", audio), language="hi")
    assert resp.parse().text == "नमस्ते दुनिया"
    call = fresh.stt_requests()[-1]
    assert call.body["language_code"] == "hi-IN" and call.body["model"] == "saarika:v2"
    assert call.body["file"]["data"] == audio and call.headers["api-subscription-key"] == fresh.api_key
    want = transcription_micros(gw.catalog()["sarvam/saarika-v2"], 3)     # INR 0.5/min x 1.15
    assert resp.headers["x-aicredits-cost"] == inr(want) and spent(gw, key) == want
    r = httpx.post(gw.v1 + "/audio/transcriptions", headers={"Authorization": f"Bearer {key['key']}"},
                   json={"model": "sarvam/saarika-v2", "response_format": "json",
                         "input_audio": {"data": base64.b64encode(make_wav(1.0)).decode(), "format": "wav"}})
    assert r.json() == {"text": "नमस्ते दुनिया", "language": "hi-IN"}
    assert fresh.stt_requests()[-1].body["language_code"] == "unknown"
    srt = client(gw, key).audio.transcriptions.create(model="sarvam/saarika-v2", file=("c.wav", make_wav(1.2)),
                                                      language="ta", response_format="srt")
    assert srt == "1\n00:00:00,000 --> 00:00:01,200\nவணக்கம் உலகம்\n\n"


def test_sarvam_text_without_boundaries_is_cut_hard(gw, fresh, wallet):
    text = "ab" * 1600        # no sentence end, no space
    raw = client(gw, wallet).audio.speech.with_raw_response.create(model="sarvam/bulbul-v2", voice="alloy",
                                                                   input=text, response_format="wav")
    pieces = [c.body["text"] for c in fresh.tts_requests()]
    assert [len(p) for p in pieces] == [1500, 1500, 200] and "".join(pieces) == text
    w = _wav(raw.content)
    assert w.getnframes() == sum(tts_frames(p, w.getframerate()) for p in pieces)


def test_sarvam_models_are_not_served_without_its_key(gateway, key):
    with pytest.raises(openai.NotFoundError) as exc:
        client(gateway, key).audio.speech.create(model="sarvam/bulbul-v2", voice="alloy", input="hello")
    assert "not served" in exc.value.body["message"]


async def test_multipart_beyond_the_body_limit_is_413(upstream, tmp_path):
    """The body limit on an upload (the gateway in this process, tests/inproc.py; the SDK on its client)."""
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path, AICREDITS_MAX_BODY_BYTES="60000") as small:
        key = await small.new_key(5_000_000)
        sdk = openai.AsyncOpenAI(base_url=str(small.client.base_url) + "/v1", api_key=key["key"], max_retries=0,
                                 http_client=small.client)
        with pytest.raises(openai.APIStatusError) as exc:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", make_wav(3.0)))
        assert exc.value.status_code == 413 and exc.value.body["type"] == "request_too_large"
        ok = await sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", make_wav(1.0)))
        assert ok.text == TRANSCRIPT
        assert len(paths(upstream, "/v1/audio/transcriptions")) == 1
