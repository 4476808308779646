"""The real duration of an uploaded audio file, read with mutagen (never guessed): what a
transcription is billed by."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from aicredits.domain.audio import SPEECH_CONTENT_TYPES  # noqa: F401  (re-exported)
from aicredits.errors import InvalidRequest


@dataclass(frozen=True)
class AudioInfo:
    duration: float     # seconds, as the container says
    ext: str            # the extension the format is known by upstream (mp3, wav, flac, ogg, m4a, aac)
    content_type: str

    @property
    def seconds(self) -> int:
        """Billed seconds: rounded up once (float noise below a microsecond ignored)."""
        return max(1, math.ceil(round(self.duration, 6)))


def _classes():
    from mutagen.aac import AAC
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE
    kinds = {MP3: ("mp3", "audio/mpeg"), WAVE: ("wav", "audio/wav"), FLAC: ("flac", "audio/flac"),
             OggOpus: ("ogg", "audio/ogg"), OggVorbis: ("ogg", "audio/ogg"), OggFLAC: ("ogg", "audio/ogg"),
             OggSpeex: ("ogg", "audio/ogg"), MP4: ("m4a", "audio/mp4"), AAC: ("aac", "audio/aac")}
    hints = {"mp3": [MP3], "mpga": [MP3], "mpeg": [MP3], "wav": [WAVE], "wave": [WAVE], "flac": [FLAC],
             "ogg": [OggOpus, OggVorbis, OggFLAC, OggSpeex], "oga": [OggOpus, OggVorbis, OggFLAC],
             "opus": [OggOpus], "m4a": [MP4], "mp4": [MP4], "m4b": [MP4], "aac": [AAC, MP4]}
    return kinds, hints


def format_hint(name: str | None, *, filename: bool = False) -> str:
    """A format name ('WAV' -> 'wav') or a file name's extension ('speech.MP3' -> 'mp3'); '' when
    there is none."""
    if not name:
        return ""
    if filename:
        return name.rsplit(".", 1)[-1].strip().lower() if "." in name else ""
    return name.strip().lower()


def probe(data: bytes, hint: str = "") -> AudioInfo:
    """The audio's duration and format; a 400 when mutagen cannot read it (mp3, wav, flac,
    ogg/opus, m4a/mp4 and aac are readable; webm is not)."""
    if not data:
        raise InvalidRequest("The audio file is empty.", param="file")
    kinds, hints = _classes()
    import mutagen
    found = None
    for cls in hints.get(hint, ()):
        try:
            found = cls(io.BytesIO(data))
            break
        except Exception:   # noqa: BLE001, S112 - mutagen raises many types on foreign data: next reader
            continue
    if found is None:
        try:
            found = mutagen.File(io.BytesIO(data), options=list(kinds))
        except Exception:   # noqa: BLE001 - unreadable, whatever the reason: a 400 below
            found = None
    length = getattr(getattr(found, "info", None), "length", None)
    if found is None or not isinstance(length, (int, float)) or not math.isfinite(length) or length <= 0:
        named = f" ({hint})" if hint else ""
        raise InvalidRequest(
            f"The duration of the audio{named} could not be read, so the call cannot be priced. Send mp3, "
            "wav, flac, ogg/opus or m4a/mp4 audio.", param="file")
    ext, ctype = kinds[type(found)]
    return AudioInfo(float(length), ext, ctype)
