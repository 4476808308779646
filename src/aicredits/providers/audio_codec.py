"""Speech in the format the client asked for, made with FFmpeg's own codecs (PyAV) where a
provider cannot make it itself: MP3 (LAME), Opus in Ogg, AAC in ADTS, FLAC, WAV, or raw PCM.

Audio a provider sent is decoded with the demuxer its first bytes name (domain/audio.py), never
by FFmpeg's guess. Encoding is CPU work: callers run it in a worker thread."""

from __future__ import annotations

import io
import wave

from aicredits.domain.audio import container_of, is_speech_format
from aicredits.errors import UpstreamError

# response_format -> (muxer, encoder)
ENCODERS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"),
            "flac": ("flac", "flac")}
OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
LAYOUTS = {1: "mono", 2: "stereo"}


def wav_bytes(params: tuple[int, int, int], frames: bytes) -> bytes:
    """A WAV of (channels, sample width, rate) PCM frames."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(params[0])
        w.setsampwidth(params[1])
        w.setframerate(params[2])
        w.writeframes(frames)
    return out.getvalue()


def encode_pcm(pcm: bytes, rate: int, channels: int, fmt: str) -> bytes:
    """16-bit little-endian interleaved PCM as `fmt` (a speech response_format)."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        return wav_bytes((channels, 2, rate), pcm)
    import av

    muxer, codec = ENCODERS[fmt]
    layout = LAYOUTS.get(channels)
    if layout is None:
        raise ValueError(f"{channels} channels")
    samples = len(pcm) // (2 * channels)
    frame = av.AudioFrame(format="s16", layout=layout, samples=samples)
    frame.planes[0].update(pcm[:samples * 2 * channels])
    frame.sample_rate = rate
    out_rate = rate
    if fmt == "opus" and rate not in OPUS_RATES:       # libopus takes these rates only
        out_rate = 48000
    out = io.BytesIO()
    with av.open(out, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=out_rate)
        assert isinstance(stream, av.AudioStream)       # ENCODERS' codecs are audio codecs
        stream.layout = layout
        frames = [frame]
        if out_rate != rate:
            resampler = av.AudioResampler(format="s16", layout=layout, rate=out_rate)
            frames = resampler.resample(frame) + resampler.resample(None)
        for f in frames:
            for packet in stream.encode(f):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def decode_pcm(data: bytes) -> tuple[bytes, int, int]:
    """(16-bit interleaved PCM, sample rate, channels) of audio bytes in an accepted container."""
    demuxer = container_of(data)
    if demuxer is None:
        raise ValueError("not audio in a known container")
    import av

    chunks: list[bytes] = []
    resampler = None
    rate = channels = 0
    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        for frame in container.decode(container.streams.audio[0]):
            if resampler is None:
                channels = min(2, frame.layout.nb_channels if hasattr(frame.layout, "nb_channels")
                               else len(frame.layout.channels))
                rate = frame.sample_rate
                resampler = av.AudioResampler(format="s16", layout=LAYOUTS[channels], rate=rate)
            for out in resampler.resample(frame):
                chunks.append(bytes(out.planes[0])[:out.samples * 2 * channels])
        if resampler is not None:
            for out in resampler.resample(None):
                chunks.append(bytes(out.planes[0])[:out.samples * 2 * channels])
    if not rate:
        raise ValueError("no audio decoded")
    return b"".join(chunks), rate, channels


def conform(data: bytes, fmt: str, provider: str) -> bytes:
    """The audio as `fmt`: as it came when it already is, else decoded and encoded again."""
    if is_speech_format(data, fmt):
        return data
    try:
        pcm, rate, channels = decode_pcm(data)
        return encode_pcm(pcm, rate, channels, fmt)
    except Exception as exc:
        raise UpstreamError(f"The {provider} provider sent audio that could not be converted to {fmt}.") from exc
