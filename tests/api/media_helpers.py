"""Shared by the images and audio tests: prices computed independently from /api/models (the
docs/billing.md's formula: USD x 83.5 x 1.15, INR x 1.15, rounded up once), and real audio files."""

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


# ---------------------------------------------------------------- images and PDFs, made by hand
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int, height: int) -> bytes:
    """A real grayscale PNG of width x height (all black)."""
    import zlib
    raw = (b"\x00" + bytes(width)) * height
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 9)) + _png_chunk(b"IEND", b""))


def make_jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG: SOI, a JFIF APP0 segment, an EXIF-sized APP1, then SOF0."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + bytes(3000)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + app1 + sof + b"\xff\xd9"


def make_pdf(pages: int, compressed: bool = False) -> bytes:
    """A PDF of `pages` pages, each with a line of text. compressed: PDF 1.5 style, the page tree
    and every page object inside a Flate-compressed object stream (no '/Type /Page' in the clear)."""
    import zlib
    first = 3
    page_ids = list(range(first, first + pages))
    content_ids = list(range(first + pages, first + 2 * pages))
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    tree = {2: b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages}
    leaves = {p: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>" % c
              for p, c in zip(page_ids, content_ids)}
    streams = {c: b"BT /F1 12 Tf 72 720 Td (Page %d of the report) Tj ET" % (n + 1)
               for n, c in enumerate(content_ids)}
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")

    def put(num: int, body: bytes) -> None:
        out.extend(b"%d 0 obj\n" % num + body + b"\nendobj\n")

    put(1, objects[1])
    if compressed:
        packed = {**tree, **leaves}
        header = b" ".join(b"%d %d" % (num, 0) for num in packed)   # offsets are not read here
        data = zlib.compress(header + b"\n" + b"\n".join(packed.values()))
        put(first + 2 * pages, b"<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\nstream\n"
            % (len(packed), len(header) + 1, len(data)) + data + b"\nendstream")
    else:
        for num, body in {**tree, **leaves}.items():
            put(num, body)
    for num, body in streams.items():
        put(num, b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream")
    out.extend(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")
    return bytes(out)
