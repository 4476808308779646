"""The fake OpenAI upstream's media routes (used by :mod:`tests.fakes.openai_upstream`):

* ``POST /v1/images/generations`` - ``n`` images as ``url`` or ``b64_json`` (gpt-image-*: always
  ``b64_json``, plus the ``quality``/``size`` it "chose": the requested ones, ``auto`` becoming
  ``medium`` / ``1024x1024``). A prompt containing ``[return:K]`` makes it return K images.
* ``POST /v1/audio/speech`` - :func:`speech_bytes`: real audio in the requested ``response_format``
  (FFmpeg's codecs through PyAV; pcm is 24 kHz 16-bit mono), :data:`SPEECH_MS_PER_CHAR` ms a character.
  :attr:`FakeOpenAI.speech_format` set (e.g. ``"wav"``) makes it answer that format whatever is asked, like
  an OpenAI-compatible server that ignores ``response_format``; the bytes sent are kept in
  :attr:`FakeOpenAI.speech_sent` by input text (Ogg streams carry a random serial number).
* ``POST /v1/audio/transcriptions`` - multipart/form-data; the parsed form (the ``file`` part as
  ``{"filename", "content_type", "data"}``) is stored as the request's ``Recorded.body``; answers
  :data:`TRANSCRIPT` as ``json`` / ``verbose_json`` / ``text`` / ``srt`` / ``vtt``.

Each takes a :class:`Scenario` from the queue like the other routes (``status``, ``first_byte_delay``).
"""

from __future__ import annotations

import base64
import json
import re
import time

from aiohttp import web

from tests.fakes.audio_files import encode, tone

TRANSCRIPT = "Hello from the fake transcription."
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
          "marin", "cedar")


SPEECH_MS_PER_CHAR = 20
SPEECH_RATE = 24000


def speech_seconds(text: str) -> float:
    return len(text) * SPEECH_MS_PER_CHAR / 1000


def speech_bytes(fmt: str, text: str = "hello") -> bytes:
    """The audio the fake answers /audio/speech with: a tone as long as the text, in `fmt`."""
    pcm = tone(speech_seconds(text), SPEECH_RATE)
    return pcm if fmt == "pcm" else encode(fmt, pcm, SPEECH_RATE)


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return web.Response(status=status, text=_dumps(body), content_type="application/json")


async def _scenario(fake, request):
    scenario = fake._next_scenario()
    await fake._sleep(request, scenario.first_byte_delay)
    if scenario.status != 200:
        return scenario, fake._scenario_error(scenario, f"media-{next(fake._ids)}")
    return scenario, None


def parse_multipart(raw: bytes, content_type: str) -> dict:
    """A small independent multipart/form-data parser: {name: str | [str] | {"filename", ...}}."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("no boundary")
    delim = b"--" + m.group(1).encode()
    out: dict = {}
    for chunk in raw.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        data = data[:-2] if data.endswith(b"\r\n") else data
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'name="([^"]*)"', disp).group(1)
        fn = re.search(r'filename="([^"]*)"', disp)
        if fn:
            out[name] = {"filename": fn.group(1), "content_type": headers.get("content-type"), "data": data}
        elif name in out:
            prev = out[name]
            out[name] = (prev if isinstance(prev, list) else [prev]) + [data.decode()]
        else:
            out[name] = data.decode()
    return out


async def images(fake, request: web.Request, rec) -> web.Response:
    body = rec.body
    invalid = fake._invalid(body, rec, ("model", "prompt"))
    if invalid is not None:
        return invalid
    model, n = body["model"], body.get("n", 1)
    if model == "dall-e-3" and n != 1:
        return _error(400, "You must provide n=1 for this model.", "n")
    _, err = await _scenario(fake, request)
    if err is not None:
        return err
    m = re.search(r"\[return:(\d+)\]", body["prompt"])
    count = int(m.group(1)) if m else n
    payload: dict = {"created": int(time.time())}
    if model.startswith("gpt-image"):
        item = {"b64_json": base64.b64encode(PNG_1X1).decode()}
        quality = body.get("quality") or "auto"
        size = body.get("size") or "auto"
        payload.update(quality="medium" if quality == "auto" else quality,
                       size="1024x1024" if size == "auto" else size, output_format="png",
                       usage={"input_tokens": 10, "output_tokens": 100, "total_tokens": 110})
    elif body.get("response_format") == "b64_json":
        item = {"b64_json": base64.b64encode(PNG_1X1).decode()}
    else:
        item = {"url": "https://images.example.invalid/fake.png"}
    if model == "dall-e-3":
        item["revised_prompt"] = body["prompt"]
    payload["data"] = [dict(item) for _ in range(count)]
    return web.Response(text=_dumps(payload), content_type="application/json")


async def speech(fake, request: web.Request, rec) -> web.Response:
    body = rec.body
    invalid = fake._invalid(body, rec, ("model", "input", "voice"))
    if invalid is not None:
        return invalid
    if not isinstance(body["input"], str) or len(body["input"]) > 4096:
        return _error(400, "'input' must be a string of at most 4096 characters.", "input")
    if body["voice"] not in VOICES:
        return _error(400, f"Invalid value for 'voice': {body['voice']!r}.", "voice")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_FORMATS:
        return _error(400, f"Invalid value for 'response_format': {fmt!r}.", "response_format")
    if "language" in body or "models" in body:
        return _error(400, "Unrecognized request argument supplied.")
    _, err = await _scenario(fake, request)
    if err is not None:
        return err
    fmt = getattr(fake, "speech_format", None) or fmt
    ctype = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}.get(fmt, "application/octet-stream")
    audio = speech_bytes(fmt, body["input"])
    fake.speech_sent[body["input"]] = audio
    return web.Response(body=audio, content_type=ctype)


async def transcriptions(fake, request: web.Request, rec) -> web.Response:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return _error(400, "Expected multipart/form-data.")
    try:
        form = parse_multipart(rec.raw, ctype)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return _error(400, "Could not parse multipart form.")
    rec.body = form
    if not isinstance(form.get("file"), dict) or not form["file"]["data"]:
        return _error(400, "Missing required parameter: 'file'.", "file")
    if not isinstance(form.get("model"), str):
        return _error(400, "Missing required parameter: 'model'.", "model")
    _, err = await _scenario(fake, request)
    if err is not None:
        return err
    fmt = form.get("response_format", "json")
    if fmt == "json":
        return web.Response(text=_dumps({"text": TRANSCRIPT}), content_type="application/json")
    if fmt == "verbose_json":
        doc = {"task": "transcribe", "language": "english", "duration": 1.0, "text": TRANSCRIPT, "segments": []}
        return web.Response(text=_dumps(doc), content_type="application/json")
    if fmt == "text":
        return web.Response(text=TRANSCRIPT + "\n", content_type="text/plain")
    if fmt == "srt":
        return web.Response(text=f"1\n00:00:00,000 --> 00:00:01,000\n{TRANSCRIPT}\n\n", content_type="text/plain")
    if fmt == "vtt":
        return web.Response(text=f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{TRANSCRIPT}\n\n",
                            content_type="text/plain")
    return _error(400, f"Invalid value for 'response_format': {fmt!r}.", "response_format")
