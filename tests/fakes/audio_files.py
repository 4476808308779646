"""Real audio for the fakes and the tests, made and read with PyAV (FFmpeg's codecs), written
independently of the gateway's own codec code: a tone as 16-bit PCM, encoded in a speech format
(mp3, Ogg Opus, ADTS AAC, FLAC, WAV) or an upload container (m4a, webm), and decoded back
with the demuxer a format names (so a test proves the bytes ARE that format)."""

from __future__ import annotations

import io
import math
import struct
import wave
from functools import cache

import av

# response_format / file kind -> (muxer or demuxer, encoder)
FORMATS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"),
           "flac": ("flac", "flac"), "wav": ("wav", "pcm_s16le"), "m4a": ("mp4", "aac"),
           "webm": ("webm", "libopus"), "ogg": ("ogg", "libopus")}
DEMUXERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "m4a": "mp4",
            "webm": "matroska", "ogg": "ogg"}
CODECS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le", "m4a": "aac",
          "webm": "opus", "ogg": "opus"}


@cache
def tone(seconds: float, rate: int = 24000) -> bytes:
    """16-bit mono PCM: a quiet 440 Hz tone. Its samples repeat every rate/gcd(rate, 440) (600 at
    24 kHz: 11 cycles), so one period is computed and repeated (a sample at a time in Python, a
    few seconds of audio took a second of CPU)."""
    n = round(seconds * rate)
    period = rate // math.gcd(rate, 440)
    one = struct.pack(f"<{period}h", *(int(3000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(period)))
    whole, rest = divmod(n, period)
    return one * whole + one[:2 * rest]


def wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def encode(fmt: str, pcm: bytes, rate: int) -> bytes:
    """Mono 16-bit PCM at `rate` as a file of kind `fmt` (opus/webm need 8/12/16/24/48 kHz)."""
    if fmt == "wav":
        return wav(pcm, rate)
    muxer, codec = FORMATS[fmt]
    samples = len(pcm) // 2
    frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
    frame.planes[0].update(pcm)
    frame.sample_rate = rate
    out = io.BytesIO()
    with av.open(out, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def decode(data: bytes, fmt: str) -> tuple[str, float, int]:
    """(codec name, seconds, sample rate) of `data` read with the demuxer of `fmt`: raises when the
    bytes are not that format."""
    samples, rate = 0, 0
    with av.open(io.BytesIO(data), mode="r", format=DEMUXERS[fmt]) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
    return codec, samples / rate, rate


def mp3_with_frame_count(seconds: float, claimed_frames: int, rate: int = 24000) -> bytes:
    """A real MP3 of `seconds` whose Xing/Info header claims `claimed_frames` frames (a lying
    header, as a client may send to be billed less)."""
    data = encode("mp3", tone(seconds, rate), rate)
    at = max(data.find(b"Xing"), data.find(b"Info"))
    assert at > 0, "the encoder wrote no Xing/Info header"
    flags = struct.unpack(">I", data[at + 4:at + 8])[0]
    assert flags & 1, "the Xing header carries no frame count"
    return data[:at + 8] + struct.pack(">I", claimed_frames) + data[at + 12:]
