"""Audio formats: what speech can be returned in (and its content types), and which container
a file is, read from its first bytes (never from the name a client gives it)."""

from __future__ import annotations

SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}
# the container each speech format comes in (FFmpeg's demuxer names); pcm is headerless
SPEECH_CONTAINERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


def _skip_id3(data: bytes) -> int:
    """Where the audio starts after any ID3v2 tags."""
    pos = 0
    while data[pos:pos + 3] == b"ID3" and len(data) >= pos + 10:
        size = 0
        for b in data[pos + 6:pos + 10]:
            size = (size << 7) | (b & 0x7F)
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def container_of(data: bytes) -> str | None:
    """The container of audio bytes as FFmpeg's demuxer names it (mp3, wav, flac, ogg, mp4,
    matroska, aac for ADTS, mpeg for MPEG-PS), from its magic bytes; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[:4] == b"\x00\x00\x01\xba":
        return "mpeg"
    pos = _skip_id3(data)
    head = data[pos:pos + 2]
    if len(head) == 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        if head[1] & 0xF6 == 0xF0:          # ADTS: 12-bit sync, layer 00
            return "aac"
        if head[1] & 0x06:                  # MPEG audio layer I, II or III
            return "mp3"
    if pos and data[:3] == b"ID3":
        return "mp3"                        # a tag, then frames after some junk: the demuxer resyncs
    return None


def is_speech_format(data: bytes, fmt: str) -> bool:
    """Whether audio bytes are in the container a speech `response_format` names (Ogg Opus for
    opus, ADTS for aac); pcm (headerless) cannot be told and is taken as it is."""
    if fmt == "pcm":
        return True
    if container_of(data) != SPEECH_CONTAINERS.get(fmt):
        return False
    return fmt != "opus" or b"OpusHead" in data[:512]
