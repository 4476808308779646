"""A fake Sarvam AI upstream: a real aiohttp server on 127.0.0.1 in a background thread, speaking
Sarvam's protocol (docs/providers.md, "Sarvam"), base URL without a version (like https://api.sarvam.ai).
Checked against Sarvam's own SDK, ``sarvamai`` 0.1.39, by tests/fakes/test_sarvam_upstream.py.

* Auth: ``api-subscription-key``; missing or wrong is 403 ``invalid_api_key_error`` (Sarvam uses 403,
  never 401). Errors are ``{"error": {"message", "code", "request_id"}}`` (the SDK's ``ErrorMessage``).
* ``POST /text-to-speech`` (JSON) - the text as ``text`` (one string; a list is refused like the real
  API does) or legacy ``inputs`` (a list: one audio per item); the language as ``language_code``
  (SDK >= 0.1.29) or ``target_language_code`` (older SDKs, docs); ``model`` (omitted means bulbul:v3
  on the real API, which this fake does not model: only ``bulbul:v2`` is served); the bulbul:v2
  speaker; ``pitch``/``pace``/``loudness`` within the API's bounds; ``speech_sample_rate``;
  ``output_audio_codec`` (``wav`` by default; ``mp3``, ``opus``, ``aac``, ``flac`` encoded with FFmpeg's
  codecs through PyAV; the API's other codecs - linear16, mulaw, alaw - are a 400 here). A JSON ``null``
  means "not given". More than 1500 characters is a 400 like bulbul:v2. Answers ``{"request_id",
  "audios": [<base64 audio>, ...]}``: real 16-bit mono audio, :data:`MS_PER_CHAR` milliseconds per
  character (see :func:`tts_wav`). :attr:`FakeSarvam.codecs` narrows the codecs it honours: any other
  is answered as WAV (a server that ignores the field).
* ``POST /speech-to-text`` (multipart) - ``file``, ``model`` (omitted means saaras:v3 on the real API,
  not modelled: only ``saarika:v2``), ``language_code`` (or ``unknown``), ``with_timestamps``; other
  fields the SDK sends (``keyterms`` is always sent, as ``null``) are ignored. Answers
  ``{"request_id", "transcript", "language_code"}`` plus ``language_probability`` when the language
  was ``unknown`` and ``timestamps`` (``words``/``start_time_seconds``/``end_time_seconds``) only
  when ``with_timestamps`` is true.

:meth:`FakeSarvam.fail_next` queues error answers, :meth:`FakeSarvam.hang_next` an answer that never
comes (:meth:`FakeSarvam.disconnected` tells when its client went away). Every request is recorded in ``requests``
(``body`` is the JSON object, or the parsed form with the file as ``{"filename", "content_type", "data"}``).
A request carrying ``Authorization`` is refused (400): a tripwire so the gateway never sends a bearer key
to Sarvam - the real API would ignore it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import io
import itertools
import json
import math
import struct
import threading
import wave
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.audio_files import encode
from tests.fakes.openai_media import parse_multipart

MS_PER_CHAR = 10
MAX_CHARS = 1500                    # bulbul:v2 (bulbul:v3 allows 2500)
TTS_MODEL = "bulbul:v2"
TTS_DEFAULT_MODEL = "bulbul:v3"     # what the real API uses when `model` is omitted (sarvamai 0.1.39)
TTS_OTHER_MODELS = ("bulbul:v3", "bulbul:v4-flash", "bulbul:v1")
STT_MODEL = "saarika:v2"
STT_DEFAULT_MODEL = "saaras:v3"     # what the real API uses when `model` is omitted (sarvamai 0.1.39)
STT_OTHER_MODELS = ("saaras:v3", "saaras:v4", "saarika:v2.5", "saarika:v1")
SPEAKERS = ("anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh")
LANGUAGES = ("bn-IN", "en-IN", "gu-IN", "hi-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN")
RATES = (8000, 16000, 22050, 24000)
CODECS = ("wav", "mp3", "opus", "aac", "flac")     # output_audio_codec values this fake encodes
API_CODECS = CODECS + ("linear16", "mulaw", "alaw")
TRANSCRIPTS = {"hi-IN": "नमस्ते दुनिया", "ta-IN": "வணக்கம் உலகம்", "en-IN": "hello world"}
DETECTED_PROBABILITY = 0.98         # `language_probability` when the language was auto-detected
# the API's bounds (schema ranges of the TTS reference): pitch -1..1, pace 0.3..3, loudness 0.1..3
BOUNDS = {"pitch": (-1.0, 1.0, 0.0), "pace": (0.3, 3.0, 1.0), "loudness": (0.1, 3.0, 1.0)}
# error.code for a status, as docs.sarvam.ai "Errors & Troubleshooting" and sarvamai's ErrorCode list them
ERROR_CODES = {400: "invalid_request_error", 401: "authentication_error", 403: "invalid_api_key_error",
               404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_exceeded_error", 500: "internal_server_error",
               503: "rate_limit_exceeded_error", 504: "gateway_timeout_error"}
_error_ids = itertools.count(1)
_HANG = web.Response(status=599)   # marker: this request is never answered (FakeSarvam.hang_next)


def tts_frames(text: str, rate: int) -> int:
    """Frames of the audio the fake speaks for `text`."""
    return rate * len(text) * MS_PER_CHAR // 1000


def tts_wav(text: str, rate: int = 22050) -> bytes:
    """A real WAV (16-bit mono) whose length is proportional to the text: a quiet 440 Hz tone."""
    n = tts_frames(text, rate)
    samples = (int(3000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n}h", *samples))
    return out.getvalue()


def tts_audio(text: str, rate: int, codec: str) -> bytes:
    """What the fake speaks for `text`, in `codec`: the WAV of :func:`tts_wav`, or its PCM encoded."""
    audio = tts_wav(text, rate)
    if codec == "wav":
        return audio
    with wave.open(io.BytesIO(audio), "rb") as w:
        pcm = w.readframes(w.getnframes())
    return encode(codec, pcm, rate)


@dataclass
class SarvamRecorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    raw: bytes = field(repr=False, default=b"")


def error_code(status: int) -> str:
    return ERROR_CODES.get(status, "internal_server_error" if status >= 500 else "invalid_request_error")


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "code": code or error_code(status),
                      "request_id": f"req_err_{next(_error_ids)}"}}
    return web.Response(status=status, content_type="application/json", text=json.dumps(body))


def _wav_seconds(data: bytes) -> float:
    """Length of a WAV upload in seconds (0.0 when it is not a readable WAV)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError):
        return 0.0


class FakeSarvam:
    def __init__(self, api_key: str = "sarvam-fake-subscription-key") -> None:
        self.api_key = api_key
        self.port = 0
        self.base_url = ""
        self.requests: list[SarvamRecorded] = []
        self.codecs: tuple[str, ...] = CODECS     # the codecs honoured; any other is answered as WAV
        self._failures: collections.deque[tuple[int, str, str | None]] = collections.deque()
        self._gone = threading.Event()   # a hung request's client went away
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSarvam:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-sarvam", daemon=True)
        self._thread.start()
        ready.wait()
        self.port = asyncio.run_coroutine_threadsafe(self._astart(), loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def _astart(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.25, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    # ------------------------------------------------------------------ test-facing API
    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._gone.clear()
            self.codecs = CODECS

    def fail_next(self, status: int, message: str = "The fake Sarvam upstream failed.",
                  code: str | None = None) -> None:
        """The next authenticated, valid request is answered with this error (``code`` defaults to
        Sarvam's code for the status, e.g. 429 -> ``rate_limit_exceeded_error``; pass
        ``insufficient_quota_error`` for an exhausted account)."""
        with self._lock:
            self._failures.append((status, message, code))

    def hang_next(self) -> None:
        """The next authenticated, valid request is never answered (until the client goes away)."""
        with self._lock:
            self._failures.append((0, "", None))

    def disconnected(self, timeout: float = 5.0) -> bool:
        """Wait until a hung request's client has gone away; True if it did."""
        return self._gone.wait(timeout)

    def tts_requests(self) -> list[SarvamRecorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/text-to-speech"]

    def stt_requests(self) -> list[SarvamRecorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/speech-to-text"]

    # ------------------------------------------------------------------ internals
    def _failure(self) -> web.Response | None:
        with self._lock:
            if not self._failures:
                return None
            status, message, code = self._failures.popleft()
        if status == 0:
            return _HANG
        return _error(status, message, code)

    async def _hang(self, request: web.Request) -> web.Response:
        """Answer nothing until the client closes the connection (or the server stops)."""
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.02)
        self._gone.set()
        return web.Response(status=499)

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = await request.read()
        rec = SarvamRecorded(request.method, request.path, {k.lower(): v for k, v in request.headers.items()},
                             None, raw)
        with self._lock:
            self.requests.append(rec)
        route = {("POST", "/text-to-speech"): self._tts, ("POST", "/speech-to-text"): self._stt}.get(
            (request.method, request.path.rstrip("/")))
        if route is None:
            return _error(404, f"Not found: {request.method} {request.path}")
        if request.headers.get("api-subscription-key") != self.api_key:
            return _error(403, "Invalid API subscription key.")
        if "authorization" in rec.headers:
            return _error(400, "Unexpected Authorization header.")
        out = route(request, rec)
        return await self._hang(request) if out is _HANG else out

    def _tts(self, request: web.Request, rec: SarvamRecorded) -> web.Response:
        try:
            body = json.loads(rec.raw)
        except ValueError:
            return _error(422, "Body is not JSON.")
        if not isinstance(body, dict):
            return _error(422, "Body must be an object.")
        rec.body = body
        given = {k: v for k, v in body.items() if v is not None}      # JSON null = not given
        if "text" in given:
            if not isinstance(given["text"], str):      # the real API's answer to "text": [...]
                return _error(400, "'text' must be a string. Use 'inputs' for multiple text segments.")
            texts = [given["text"]]
        elif "inputs" in given:
            texts = given["inputs"]
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                return _error(400, "'inputs' must be a non-empty list of strings.")
        else:
            return _error(400, "text is required")
        if not all(t.strip() for t in texts):
            return _error(400, "text must not be empty")
        model = given.get("model", TTS_DEFAULT_MODEL)
        if model != TTS_MODEL:
            if model in TTS_OTHER_MODELS:
                return _error(400, f"The fake Sarvam upstream serves {TTS_MODEL} only, not {model!r}"
                                   + (" (the real API's default when `model` is omitted)"
                                      if "model" not in given else ""))
            return _error(400, f"Unknown model {model!r}")
        if any(len(t) > MAX_CHARS for t in texts):
            return _error(400, f"Text exceeds the maximum length of {MAX_CHARS} characters for {TTS_MODEL}.")
        lang = given.get("language_code", given.get("target_language_code"))
        if lang not in LANGUAGES:
            return _error(400, f"Invalid language_code: {lang!r}")
        if given.get("speaker", "anushka") not in SPEAKERS:
            return _error(400, f"Speaker {given.get('speaker')!r} is not compatible with {TTS_MODEL}")
        rate = given.get("speech_sample_rate", 22050)
        if isinstance(rate, bool) or rate not in RATES:
            return _error(400, f"Invalid speech_sample_rate for {TTS_MODEL}: {rate!r}")
        for name, (low, high, default) in BOUNDS.items():
            value = given.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                return _error(400, f"{name} must be between {low} and {high}, got {value!r}")
        if not isinstance(given.get("enable_preprocessing", False), bool):
            return _error(400, "enable_preprocessing must be a boolean")
        codec = given.get("output_audio_codec", "wav")
        if codec not in API_CODECS:
            return _error(400, f"Invalid output_audio_codec: {codec!r}")
        if codec not in CODECS:
            return _error(400, f"The fake Sarvam upstream does not produce {codec!r}")
        if codec == "opus" and int(rate) == 22050:
            return _error(400, "opus takes speech_sample_rate 8000, 16000 or 24000")
        failed = self._failure()
        if failed is not None:
            return failed
        if codec not in self.codecs:
            codec = "wav"
        audios = [base64.b64encode(tts_audio(t, int(rate), codec)).decode() for t in texts]
        return web.json_response({"request_id": f"req_{next(self._ids)}", "audios": audios})

    def _stt(self, request: web.Request, rec: SarvamRecorded) -> web.Response:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return _error(400, "Expected multipart/form-data.")
        try:
            form = parse_multipart(rec.raw, ctype)
        except (ValueError, AttributeError, UnicodeDecodeError):
            return _error(400, "Unparsable multipart body.")
        rec.body = form
        if not isinstance(form.get("file"), dict) or not form["file"]["data"]:
            return _error(400, "file is required")
        model = form.get("model") or STT_DEFAULT_MODEL
        if model != STT_MODEL:
            if model in STT_OTHER_MODELS:
                return _error(400, f"The fake Sarvam upstream serves {STT_MODEL} only, not {model!r}"
                                   + (" (the real API's default when `model` is omitted)"
                                      if not form.get("model") else ""))
            return _error(400, f"Unknown model {model!r}")
        lang = form.get("language_code") or "unknown"
        if lang != "unknown" and lang not in LANGUAGES:
            return _error(400, f"Invalid language_code: {lang!r}")
        stamps = form.get("with_timestamps", "false")
        if stamps not in ("true", "false"):
            return _error(400, f"with_timestamps must be a boolean, got {stamps!r}")
        failed = self._failure()
        if failed is not None:
            return failed
        said = "hi-IN" if lang == "unknown" else lang
        transcript = TRANSCRIPTS.get(said, "hello world")
        out: dict = {"request_id": f"req_{next(self._ids)}", "transcript": transcript, "language_code": said}
        if lang == "unknown":
            out["language_probability"] = DETECTED_PROBABILITY
        if stamps == "true":
            out["timestamps"] = {"words": [transcript], "start_time_seconds": [0.0],
                                 "end_time_seconds": [round(_wav_seconds(form["file"]["data"]), 3)]}
        return web.json_response(out)
