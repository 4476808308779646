"""The real duration of an audio file, measured from the audio itself: every frame is decoded
(PyAV, FFmpeg's libraries) and its samples counted, so a container or header that lies about
the length (an MP3 Xing/VBRI frame count, a WAV or MP4 header, Ogg granule positions) changes
nothing. What a transcription is billed by, and what bounds an input_audio part of a prompt.

The container is recognised from its first bytes (never from the name the client gives), and
only the formats the API accepts are opened, each with its own demuxer: a file that is none of
them, or whose audio cannot be decoded, cannot be priced and is refused (400)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from aicredits.domain.audio import container_of
from aicredits.errors import InvalidRequest

ACCEPTED = "mp3, mp4, mpeg, mpga, m4a, wav, webm, flac, ogg/opus, aac"
MAX_DECODE_ERRORS = 16     # bad packets skipped before the file counts as undecodable


@dataclass(frozen=True)
class AudioInfo:
    duration: float     # seconds of decoded audio
    ext: str            # the extension the format is known by upstream (mp3, wav, flac, ogg, m4a, webm, ...)
    content_type: str

    @property
    def seconds(self) -> int:
        """Billed seconds: rounded up once (float noise below a microsecond ignored)."""
        return max(1, math.ceil(round(self.duration, 6)))


# demuxer -> (extension, content type) for each accepted container
KINDS = {"mp3": ("mp3", "audio/mpeg"), "wav": ("wav", "audio/wav"), "flac": ("flac", "audio/flac"),
         "ogg": ("ogg", "audio/ogg"), "mp4": ("m4a", "audio/mp4"), "matroska": ("webm", "audio/webm"),
         "aac": ("aac", "audio/aac"), "mpeg": ("mpeg", "audio/mpeg")}


def format_hint(name: str | None, *, filename: bool = False) -> str:
    """A format name ('WAV' -> 'wav') or a file name's extension ('speech.MP3' -> 'mp3'); '' when
    there is none."""
    if not name:
        return ""
    if filename:
        return name.rsplit(".", 1)[-1].strip().lower() if "." in name else ""
    return name.strip().lower()


def _decoded_seconds(data: bytes, demuxer: str) -> float:
    """Seconds of audio in every frame of the first audio stream that decodes (0.0 when none)."""
    import av  # FFmpeg's libraries: imported on first use (not needed by the rest of the gateway)

    samples, rate, errors = 0, 0, 0
    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        streams = container.streams.audio
        if not streams:
            return 0.0
        stream = streams[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                errors += 1
                if errors > MAX_DECODE_ERRORS:
                    break
                continue
            for frame in frames:
                if frame.sample_rate:
                    rate = frame.sample_rate
                    samples += frame.samples
    return samples / rate if rate else 0.0


def measure(data: bytes) -> tuple[str, float] | None:
    """(demuxer, seconds of decoded audio), or None when the data is not accepted audio or holds
    none that decodes."""
    demuxer = container_of(data)
    if demuxer is None:
        return None
    try:
        import av
        try:
            seconds = _decoded_seconds(data, demuxer)
        except (av.FFmpegError, ValueError, OSError):
            return None
    except ImportError:   # pragma: no cover - av is a dependency
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return demuxer, seconds


def measured_seconds(data: bytes, fmt: str = "") -> float | None:
    """Seconds of an input_audio part, or None when they cannot be measured (its prompt bound then
    takes the whole context window)."""
    found = measure(data)
    return found[1] if found else None


def probe(data: bytes, hint: str = "") -> AudioInfo:
    """The audio's measured duration and format; a 400 when it cannot be measured."""
    if not data:
        raise InvalidRequest("The audio file is empty.", param="file")
    found = measure(data)
    if found is None:
        named = f" ({hint})" if hint else ""
        raise InvalidRequest(
            f"The length of the audio{named} could not be measured (it is not audio in an accepted format, or its "
            f"frames do not decode), so the call cannot be priced. Send {ACCEPTED}.", param="file")
    demuxer, seconds = found
    ext, ctype = KINDS[demuxer]
    if demuxer == "mp4" and hint == "mp4":
        ext = "mp4"
    return AudioInfo(seconds, ext, ctype)
