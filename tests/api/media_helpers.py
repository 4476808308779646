"""Shared by the images and audio tests: prices computed independently from /api/models (the
SPEC's formula: USD x 83.5 x 1.15, INR x 1.15, rounded up once), and real audio files."""

from __future__ import annotations

import io
import struct
import wave
from decimal import Decimal
from fractions import Fraction

from tests.conftest import MARKUP, USD_INR


def num(value) -> Fraction:
    return Fraction(Decimal(repr(value)))


def micros(entry: dict, amount: Fraction) -> int:
    """Micro-INR charged for `amount` in the entry's currency."""
    rate = num(float(USD_INR)) if entry["currency"] == "USD" else 1
    m = amount * rate * (1 + num(float(MARKUP))) * 1_000_000
    return -((-m.numerator) // m.denominator)


def image_micros(entry: dict, size: str, quality: str, n: int) -> int:
    return micros(entry, n * num(entry["cost_per_image"][size][quality]))


def speech_micros(entry: dict, chars: int) -> int:
    return micros(entry, chars * num(entry["cost_per_1m_chars"]) / 1_000_000)


def transcription_micros(entry: dict, seconds: int) -> int:
    return micros(entry, Fraction(seconds, 60) * num(entry["cost_per_minute"]))


def inr(m: int) -> str:
    return f"{m // 10**6}.{m % 10**6:06d}"


def spent(gateway, key: dict) -> int:
    return round(gateway.credits(key["key"])["total_spent"] * 10**6)


def make_wav(seconds: float, rate: int = 16000) -> bytes:
    n = round(seconds * rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n}h", *((i * 37) % 2000 - 1000 for i in range(n))))
    return out.getvalue()


def make_mp3(frames: int) -> bytes:
    """`frames` MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, mono, no padding (417 bytes each):
    1152 samples a frame, so frames x 1152 / 44100 seconds."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC0])
    return (header + bytes(417 - 4)) * frames
