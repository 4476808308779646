"""A fake Sarvam AI upstream: a real aiohttp server on 127.0.0.1 in a background thread, speaking
Sarvam's protocol (protocols.md §6), base URL without a version (like https://api.sarvam.ai).

* ``POST /text-to-speech`` (JSON) - checks ``api-subscription-key``, the text (``text`` or legacy
  ``inputs``), the language (``target_language_code`` or ``language_code``), the bulbul:v2 speaker,
  ``pace`` and ``speech_sample_rate``, and refuses more than 1500 characters (400) like bulbul:v2.
  Answers ``{"request_id", "audios": [<base64 WAV>]}``: a real 16-bit mono WAV made with ``wave``,
  :data:`MS_PER_CHAR` milliseconds per character of text (see :func:`tts_wav`).
* ``POST /speech-to-text`` (multipart) - ``file``, ``model``, ``language_code`` (or ``unknown``);
  answers ``{"request_id", "transcript", "timestamps": null, "diarized_transcript": null, "language_code"}``.

:meth:`FakeSarvam.fail_next` queues error answers. Every request is recorded in ``requests``
(``body`` is the JSON object, or the parsed form with the file as ``{"filename", "content_type", "data"}``).
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

from tests.fakes.openai_media import parse_multipart

MS_PER_CHAR = 10
MAX_CHARS = 1500
SPEAKERS = ("anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh")
LANGUAGES = ("bn-IN", "en-IN", "gu-IN", "hi-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN")
RATES = (8000, 16000, 22050, 24000)
TRANSCRIPTS = {"hi-IN": "नमस्ते दुनिया", "ta-IN": "வணக்கம் உலகம்", "en-IN": "hello world"}


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


@dataclass
class SarvamRecorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    raw: bytes = field(repr=False, default=b"")


def _error(status: int, message: str, code: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": {"message": message, "code": code, "request_id": "req_err"}}))


class FakeSarvam:
    def __init__(self, api_key: str = "sarvam-fake-subscription-key") -> None:
        self.api_key = api_key
        self.port = 0
        self.base_url = ""
        self.requests: list[SarvamRecorded] = []
        self._failures: collections.deque[tuple[int, str]] = collections.deque()
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

    def fail_next(self, status: int, message: str = "The fake Sarvam upstream failed.") -> None:
        """The next authenticated, valid request is answered with this error."""
        with self._lock:
            self._failures.append((status, message))

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
            status, message = self._failures.popleft()
        return _error(status, message, "internal_server_error" if status >= 500 else "invalid_request_error")

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = await request.read()
        rec = SarvamRecorded(request.method, request.path, {k.lower(): v for k, v in request.headers.items()},
                             None, raw)
        with self._lock:
            self.requests.append(rec)
        route = {("POST", "/text-to-speech"): self._tts, ("POST", "/speech-to-text"): self._stt}.get(
            (request.method, request.path.rstrip("/")))
        if route is None:
            return _error(404, f"Not found: {request.method} {request.path}", "not_found_error")
        if request.headers.get("api-subscription-key") != self.api_key:
            return _error(403, "Invalid API subscription key.", "invalid_api_key_error")
        if "authorization" in rec.headers:
            return _error(400, "Unexpected Authorization header.")
        return route(request, rec)

    def _tts(self, request: web.Request, rec: SarvamRecorded) -> web.Response:
        try:
            body = json.loads(rec.raw)
        except ValueError:
            return _error(422, "Body is not JSON.")
        if not isinstance(body, dict):
            return _error(422, "Body must be an object.")
        rec.body = body
        text = body.get("text")
        if text is None and isinstance(body.get("inputs"), list) and body["inputs"]:
            text = body["inputs"][0]
        if not isinstance(text, str) or not text.strip():
            return _error(400, "text is required")
        if len(text) > MAX_CHARS:
            return _error(400, f"Text exceeds the maximum length of {MAX_CHARS} characters for bulbul:v2.")
        lang = body.get("target_language_code") or body.get("language_code")
        if lang not in LANGUAGES:
            return _error(400, f"Invalid target_language_code: {lang!r}")
        if body.get("model", "bulbul:v2") != "bulbul:v2":
            return _error(400, f"Unknown model {body.get('model')!r}")
        if body.get("speaker", "anushka") not in SPEAKERS:
            return _error(400, f"Speaker {body.get('speaker')!r} is not compatible with bulbul:v2")
        rate = body.get("speech_sample_rate", 22050)
        if rate not in RATES:
            return _error(400, f"Invalid speech_sample_rate: {rate!r}")
        pace = body.get("pace", 1.0)
        if not isinstance(pace, (int, float)) or not 0.3 <= pace <= 3.0:
            return _error(400, f"pace must be between 0.3 and 3.0, got {pace!r}")
        failed = self._failure()
        if failed is not None:
            return failed
        audio = base64.b64encode(tts_wav(text, rate)).decode()
        return web.json_response({"request_id": f"req_{next(self._ids)}", "audios": [audio]})

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
        if form.get("model", "saarika:v2") != "saarika:v2":
            return _error(400, f"Unknown model {form.get('model')!r}")
        lang = form.get("language_code", "unknown")
        if lang != "unknown" and lang not in LANGUAGES:
            return _error(400, f"Invalid language_code: {lang!r}")
        failed = self._failure()
        if failed is not None:
            return failed
        said = "hi-IN" if lang == "unknown" else lang
        return web.json_response({"request_id": f"req_{next(self._ids)}",
                                  "transcript": TRANSCRIPTS.get(said, "hello world"), "timestamps": None,
                                  "diarized_transcript": None, "language_code": said})
