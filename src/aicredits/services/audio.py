"""POST /v1/audio/speech (per input character) and /v1/audio/transcriptions (per second of
audio, measured by decoding every frame of the file, and rounded up once). Both holds are exact: the price is known
before the call, so hold = charge for the model that answers (the hold covers the dearest
model of the fallback chain)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aicredits.domain.audio import SPEECH_CONTENT_TYPES
from aicredits.domain.pricing import audio_seconds_cost, chars_cost
from aicredits.errors import InvalidRequest
from aicredits.ports import KeyAuth
from aicredits.providers.base import AudioUpload, MediaResult, SpeechProvider, TranscriptionProvider
from aicredits.services.audio_probe import format_hint, probe
from aicredits.services.fixed_price import FixedPriceService
from aicredits.services.metering import Meter

MAX_SPEECH_CHARS = 4096
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")


def _opt_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string.", param=key)
    return value


def _model(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("'model' is required and must be a string.", param="model")
    return value


def validate_speech(body: object) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _model(body.get("model"))
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("'input' is required and must be a non-empty string.", param="input")
    if len(text) > MAX_SPEECH_CHARS:
        raise InvalidRequest(f"'input' is at most {MAX_SPEECH_CHARS} characters; it has {len(text)}.",
                             param="input")
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice.strip():
        raise InvalidRequest("'voice' is required and must be a string (alloy, echo, fable, onyx, nova, "
                             "shimmer, ...).", param="voice")
    fmt = body.get("response_format") or "mp3"
    if not isinstance(fmt, str) or fmt not in SPEECH_CONTENT_TYPES:
        raise InvalidRequest(f"'response_format' must be one of {', '.join(SPEECH_CONTENT_TYPES)}.",
                             param="response_format")
    speed = body.get("speed")
    if speed is not None and (not isinstance(speed, (int, float)) or isinstance(speed, bool)
                              or not 0.25 <= speed <= 4.0):
        raise InvalidRequest("'speed' must be a number from 0.25 to 4.0.", param="speed")
    _opt_str(body, "instructions")
    _opt_str(body, "language")
    if body.get("stream_format") not in (None, "audio"):
        raise InvalidRequest("Only stream_format 'audio' is supported: the whole audio is returned.",
                             param="stream_format")
    out = {k: v for k, v in body.items() if k not in ("models", "stream_format")}
    out["response_format"] = fmt
    return out


@dataclass(frozen=True)
class FormFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    """A multipart/form-data request (api/forms.py reads it): text fields, each name with its
    values in order, and files by name."""
    fields: dict[str, list[str]]
    files: dict[str, FormFile]

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


@dataclass
class TranscriptionRequest:
    model: str
    audio: bytes
    hint: str                 # the format the client named (file extension or input_audio.format)
    response_format: str
    fields: dict              # forwarded: language, prompt, temperature, timestamp_granularities[]
    models: object = None     # the request's fallback list


def _transcription_fields(get: Callable[[str], object],
                          get_list: Callable[[str], list[str]]) -> tuple[str, dict]:
    """Validate the common fields (form strings or JSON values) into what is forwarded."""
    fields: dict = {}
    for key in ("language", "prompt"):
        value = get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidRequest(f"'{key}' must be a string.", param=key)
            if value:
                fields[key] = value
    fmt = get("response_format") or "json"
    if fmt not in TRANSCRIPT_FORMATS:
        raise InvalidRequest(f"'response_format' must be one of {', '.join(TRANSCRIPT_FORMATS)}.",
                             param="response_format")
    temp = get("temperature")
    if temp is not None and temp != "":
        try:
            t = float(temp) if isinstance(temp, (int, float, str)) and not isinstance(temp, bool) else math.nan
        except (TypeError, ValueError):
            t = math.nan
        if not 0 <= t <= 1:
            raise InvalidRequest("'temperature' must be a number from 0 to 1.", param="temperature")
        fields["temperature"] = str(temp)
    grans = get_list("timestamp_granularities")
    if grans:
        if not all(g in GRANULARITIES for g in grans):
            raise InvalidRequest("'timestamp_granularities' takes 'word' and/or 'segment'.",
                                 param="timestamp_granularities")
        fields["timestamp_granularities[]"] = list(grans)
    stream = get("stream")
    if stream not in (None, False, "false", "False", ""):
        raise InvalidRequest("Streaming transcription is not supported by this gateway.", param="stream")
    return fmt, fields


def transcription_from_form(form: Form) -> TranscriptionRequest:
    upload = form.files.get("file")
    if upload is None:
        raise InvalidRequest("'file' is required: the audio to transcribe.", param="file")

    def get_list(key: str) -> list[str]:
        return form.fields.get(key + "[]") or form.fields.get(key) or []

    fmt, fields = _transcription_fields(form.get, get_list)
    models = form.fields.get("models[]") or form.fields.get("models")
    hint = format_hint(upload.filename, filename=True)
    return TranscriptionRequest(_model(form.get("model")), upload.data, hint, fmt, fields, models)


def transcription_from_json(body: object) -> TranscriptionRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    audio = body.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str) or not audio["data"]:
        raise InvalidRequest("'input_audio' is required: {\"data\": <base64 audio>, \"format\": \"mp3\"|"
                             "\"wav\"|...}.", param="input_audio")
    hint = audio.get("format")
    if not isinstance(hint, str) or not hint.strip():
        raise InvalidRequest("'input_audio.format' is required (mp3, wav, flac, ogg, m4a, ...).",
                             param="input_audio.format")
    data = audio["data"]
    if data.startswith("data:") and "," in data:     # a data: URL
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("'input_audio.data' is not valid base64.", param="input_audio.data") from None

    def get_list(key: str) -> list[str]:
        value = body.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidRequest(f"'{key}' must be an array of strings.", param=key)
        return value or []

    fmt, fields = _transcription_fields(body.get, get_list)
    return TranscriptionRequest(_model(body.get("model")), raw, format_hint(hint), fmt, fields, body.get("models"))


class AudioService(FixedPriceService):
    async def speech(self, body: object, auth: KeyAuth, request_id: str, started: float) -> tuple[MediaResult, Meter]:
        upstream = validate_speech(body)
        models = body.get("models") if isinstance(body, dict) else None   # (validated: a dict)
        chain = self._router.chain(upstream["model"], "speech", models)
        chars = len(upstream["input"])      # Unicode code points
        meter = Meter(request_id, auth, "speech", started, units=chars)
        result = await self._priced(meter, chain, lambda t: cast(SpeechProvider, t.provider).speech(upstream, t),
                                    lambda s: chars_cost(s, self._rates, chars))
        return result, meter

    async def transcribe(self, req: TranscriptionRequest, auth: KeyAuth, request_id: str,
                         started: float) -> tuple[MediaResult, Meter]:
        chain = self._router.chain(req.model, "transcription", req.models)
        info = await asyncio.to_thread(probe, req.audio, req.hint)   # decodes every frame: CPU work
        seconds = info.seconds
        upload = AudioUpload(req.audio, f"audio.{info.ext}", info.content_type, info.duration, req.response_format,
                             req.fields)
        meter = Meter(request_id, auth, "transcription", started, units=seconds)
        result = await self._priced(meter, chain, lambda t: cast(TranscriptionProvider, t.provider).transcribe(upload, t),
                                    lambda s: audio_seconds_cost(s, self._rates, seconds))
        return result, meter
