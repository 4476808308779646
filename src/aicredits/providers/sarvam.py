"""Sarvam AI (https://api.sarvam.ai): Bulbul text-to-speech and Saarika speech-to-text, spoken
to in Sarvam's own protocol and answered in OpenAI's shapes.

Speech: OpenAI voice names become default bulbul:v2 speakers (Sarvam speaker names pass
through); the language is the request's `language` or the text's script; text longer than
Sarvam's 1500 characters is cut at sentence (else word) boundaries, one request a piece, and
the WAVs joined into one. Every `response_format` is honoured: a text that fits one request
asks Sarvam for the codec itself (`output_audio_codec`: mp3, opus, aac, flac, wav), and what
comes back is checked and, if it is not that format, converted; joined pieces are encoded
here (providers/audio_codec.py); pcm is the WAV's frames. See docs/providers.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import wave

import aiohttp
import orjson

from aicredits.domain.audio import SPEECH_CONTENT_TYPES
from aicredits.errors import GatewayError, InvalidRequest, UpstreamError
from aicredits.providers.audio_codec import conform, decode_pcm, encode_pcm, wav_bytes
from aicredits.providers.base import AudioUpload, MediaResult, Target
from aicredits.providers.http import HTTPProvider, Payload, upload_form
from aicredits.settings import ProviderSettings

MAX_CHARS = 1500             # bulbul:v2's limit per request
SAMPLE_RATE = 24000          # Hz; OpenAI's `pcm` is 24 kHz 16-bit mono, so ask Sarvam for the same
CODECS = ("mp3", "opus", "aac", "flac", "wav")   # response_formats Sarvam's output_audio_codec makes
DEFAULT_SPEAKER = "anushka"
OPENAI_VOICES = {"alloy": "anushka", "echo": "abhilash", "fable": "manisha", "onyx": "karun", "nova": "vidya",
                 "shimmer": "arya", "ash": DEFAULT_SPEAKER, "ballad": DEFAULT_SPEAKER, "coral": DEFAULT_SPEAKER,
                 "sage": DEFAULT_SPEAKER, "verse": DEFAULT_SPEAKER, "marin": DEFAULT_SPEAKER,
                 "cedar": DEFAULT_SPEAKER}
LANGUAGES = ("bn-IN", "en-IN", "gu-IN", "hi-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN")
ALIASES = {"or": "od"}       # ISO 639-1 Odia is "or"; Sarvam says "od"
SCRIPTS = ((0x0900, 0x097F, "hi-IN"), (0x0980, 0x09FF, "bn-IN"), (0x0A00, 0x0A7F, "pa-IN"),
           (0x0A80, 0x0AFF, "gu-IN"), (0x0B00, 0x0B7F, "od-IN"), (0x0B80, 0x0BFF, "ta-IN"),
           (0x0C00, 0x0C7F, "te-IN"), (0x0C80, 0x0CFF, "kn-IN"), (0x0D00, 0x0D7F, "ml-IN"))
SENTENCE_END = re.compile(r"[.!?।॥\n]+[\"'”’)\]]*\s*")


def speaker_for(voice: object) -> str:
    name = str(voice or "").strip().lower()
    if not name:
        return DEFAULT_SPEAKER
    return OPENAI_VOICES.get(name, name)


def detect_language(text: str) -> str:
    """The Indic script most of the text's letters are in, else English (en-IN)."""
    counts: dict[str, int] = {}
    for ch in text:
        cp = ord(ch)
        if cp < 0x0900 or cp > 0x0D7F:
            continue
        for lo, hi, lang in SCRIPTS:
            if lo <= cp <= hi:
                counts[lang] = counts.get(lang, 0) + 1
                break
    return max(counts, key=lambda lang: counts[lang]) if counts else "en-IN"


def language_code(value: object, *, param: str = "language") -> str:
    """'hi' / 'hi-in' / 'hi-IN' -> 'hi-IN'; anything Sarvam does not speak is a 400."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{param}' must be a language code such as 'hi' or 'hi-IN'.", param=param)
    base = value.strip().split("-")[0].split("_")[0].lower()
    code = f"{ALIASES.get(base, base)}-IN"
    if code not in LANGUAGES:
        raise InvalidRequest(f"Sarvam does not support the language '{value}'; supported: "
                             f"{', '.join(LANGUAGES)}.", param=param)
    return code


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Pieces of at most `limit` code points, cut after a sentence end, else at a space."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit + 1]
        cut = 0
        for m in SENTENCE_END.finditer(window):
            if m.end() <= limit:
                cut = m.end()
        if cut < limit // 4:                     # no sentence end worth cutting at: the last space
            space = max(window.rfind(" ", 0, limit), window.rfind("\t", 0, limit))
            cut = space + 1 if space > 0 else limit
        piece = rest[:cut].strip()
        if piece:
            pieces.append(piece)
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def join_wavs(blobs: list[bytes], provider: str) -> tuple[tuple[int, int, int], bytes]:
    """((channels, sample width, rate), PCM frames) of several WAVs played one after another."""
    params = None
    frames = []
    for blob in blobs:
        try:
            with wave.open(io.BytesIO(blob), "rb") as w:
                p = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                frames.append(w.readframes(w.getnframes()))
        except (wave.Error, EOFError) as exc:
            raise UpstreamError(f"The {provider} provider sent unreadable audio.") from exc
        if params is not None and p != params:
            raise UpstreamError(f"The {provider} provider sent audio pieces in different formats.")
        params = p
    if params is None:
        raise UpstreamError(f"The {provider} provider sent no audio.")
    return params, b"".join(frames)


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render_transcript(text: str, language: str | None, duration: float, fmt: str) -> MediaResult:
    """A transcript in the OpenAI `response_format` asked for (one cue for srt/vtt: Sarvam's
    real-time endpoint gives no segment times)."""
    if fmt == "text":
        return MediaResult(text.encode(), "text/plain; charset=utf-8")
    if fmt == "srt":
        body = f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n{text}\n\n"
        return MediaResult(body.encode(), "text/plain; charset=utf-8")
    if fmt == "vtt":
        body = f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(duration, '.')}\n{text}\n\n"
        return MediaResult(body.encode(), "text/plain; charset=utf-8")
    doc: dict[str, object]
    if fmt == "verbose_json":
        doc = {"task": "transcribe", "language": language, "duration": duration, "text": text, "segments": [],
               "usage": {"type": "duration", "seconds": duration}}
    else:
        doc = {"text": text}
        if language:
            doc["language"] = language
    return MediaResult(orjson.dumps(doc), "application/json")


class SarvamProvider(HTTPProvider):
    def __init__(self, settings: ProviderSettings, session: aiohttp.ClientSession, **timeouts: float) -> None:
        headers = {"api-subscription-key": settings.api_key or "", "Content-Type": "application/json",
                   "Accept-Encoding": "identity", **settings.headers}
        super().__init__(settings, session, headers, **timeouts)

    async def _call(self, path: str, payload: Payload) -> dict:
        """POST (JSON, or a form); the answer, a JSON object (an error status is our error, key and
        account ids stripped)."""
        data, _ = await self._http.call_json(self._base + path, payload)
        return data

    async def _speak(self, piece: str, lang: str, speaker: str, pace: float | None, model: str,
                     codec: str = "wav") -> list[bytes]:
        req = {"text": piece, "language_code": lang, "speaker": speaker, "model": model,
               "speech_sample_rate": SAMPLE_RATE}
        if codec != "wav":
            req["output_audio_codec"] = codec
        if pace is not None:
            req["pace"] = pace
        data = await self._call("/text-to-speech", orjson.dumps(req))
        audios = data.get("audios")
        if not isinstance(audios, list) or not audios or not all(isinstance(a, str) for a in audios):
            raise UpstreamError(f"The {self.name} provider sent no audio.")
        try:
            return [base64.b64decode(a, validate=True) for a in audios]
        except (binascii.Error, ValueError) as exc:
            raise UpstreamError(f"The {self.name} provider sent unreadable audio.") from exc

    async def speech(self, body: dict, target: Target) -> MediaResult:
        text = body["input"]
        lang = language_code(body["language"]) if body.get("language") is not None else detect_language(text)
        speaker = speaker_for(body.get("voice"))
        speed = body.get("speed")
        pace = min(3.0, max(0.3, float(speed))) if isinstance(speed, (int, float)) else None
        fmt = body.get("response_format") or "mp3"
        pieces = split_text(text) or [text]
        codec = fmt if len(pieces) == 1 and fmt in CODECS else "wav"   # one piece: Sarvam encodes it
        results = await asyncio.gather(
            *(self._speak(p, lang, speaker, pace, target.upstream_id, codec) for p in pieces), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, (GatewayError, asyncio.CancelledError)):
                    raise r
                raise UpstreamError(f"The {self.name} provider call failed.") from r
        blobs = [blob for r in results if not isinstance(r, BaseException) for blob in r]
        if codec != "wav" and len(blobs) == 1:
            audio = await asyncio.to_thread(conform, blobs[0], fmt, self.name)
            return MediaResult(audio, SPEECH_CONTENT_TYPES[fmt])
        if codec != "wav":      # several audios for one text: joined as PCM, then encoded
            params, frames = await asyncio.to_thread(self._join_any, blobs)
        else:
            params, frames = join_wavs(blobs, self.name)
        if fmt == "pcm":
            return MediaResult(frames, SPEECH_CONTENT_TYPES["pcm"])
        if fmt == "wav":
            return MediaResult(wav_bytes(params, frames), SPEECH_CONTENT_TYPES["wav"])
        if params[1] != 2:
            raise UpstreamError(f"The {self.name} provider sent audio of an unexpected sample width.")
        audio = await asyncio.to_thread(encode_pcm, frames, params[2], params[0], fmt)
        return MediaResult(audio, SPEECH_CONTENT_TYPES[fmt])

    def _join_any(self, blobs: list[bytes]) -> tuple[tuple[int, int, int], bytes]:
        decoded = []
        for blob in blobs:
            try:
                decoded.append(decode_pcm(blob))
            except Exception as exc:
                raise UpstreamError(f"The {self.name} provider sent unreadable audio.") from exc
        if len({(rate, ch) for _, rate, ch in decoded}) != 1:
            raise UpstreamError(f"The {self.name} provider sent audio pieces in different formats.")
        _, rate, channels = decoded[0]
        return (channels, 2, rate), b"".join(pcm for pcm, _, _ in decoded)

    async def transcribe(self, upload: AudioUpload, target: Target) -> MediaResult:
        given = upload.fields.get("language")
        lang = language_code(given) if given else "unknown"
        data = await self._call("/speech-to-text", upload_form([("model", target.upstream_id), ("language_code", lang)],
                                                               upload))
        text = data.get("transcript")
        if not isinstance(text, str):
            raise UpstreamError(f"The {self.name} provider sent no transcript.")
        language = data.get("language_code") if isinstance(data.get("language_code"), str) else None
        return render_transcript(text, language, upload.duration, upload.response_format)

