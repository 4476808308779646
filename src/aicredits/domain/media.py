"""What a prompt's non-text input is made of, read from the request's own bytes (no I/O), and
the token formulas providers document for it.

Read here: an image's size from its header (PNG IHDR, JPEG SOF, GIF screen, WebP VP8/VP8L/VP8X),
a PDF's page count (page objects, in the file and in its compressed object streams, and the
page tree's /Count), the bytes of a text file. Audio needs a decoder, so the services measure
it and pass the seconds in (`read_prompt(..., audio_seconds=...)`).

The formulas (`ImageRule`s, `InputCosts`) are filled in per model by each provider adapter
(its `input_costs`): see docs/billing.md for the numbers and where they come from.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

# ------------------------------------------------------------------ bytes of a data: URL
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*);base64,", re.ASCII)


def decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def data_url(value: object) -> tuple[str, bytes] | None:
    """(media type, bytes) of a base64 data: URL, or of bare base64 (media type ""); None when
    the value is neither (an http(s) URL, an id, garbage)."""
    if not isinstance(value, str) or not value:
        return None
    m = _DATA_URL.match(value)
    if m:
        data = decode_base64(value[m.end():])
        return None if data is None else ((m.group(1) or "").lower(), data)
    if value.startswith(("http://", "https://", "gs://", "file-")):
        return None
    data = decode_base64(value)
    return None if data is None else ("", data)


# ------------------------------------------------------------------ image sizes
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:              # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # start of scan before any frame header: unreadable
            return None
        i += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from the image's header; None when the format is not one of
    PNG, JPEG, GIF, WebP or the header is unreadable."""
    size = None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        size = struct.unpack(">II", data[16:24])
    elif data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        size = struct.unpack("<HH", data[6:10])
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            size = (w & 0x3FFF, h & 0x3FFF)
        elif chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif chunk == b"VP8X":
            size = (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return int(size[0]), int(size[1])


# ------------------------------------------------------------------ PDF pages
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_COUNT = re.compile(rb"/Count\s+(\d{1,7})")
_STREAM = re.compile(rb"stream\r?\n")
MAX_INFLATED = 64 * 1024 * 1024     # bytes of object streams inflated per PDF, at most


def _object_streams(data: bytes) -> Iterator[bytes]:
    """The inflated contents of the PDF's compressed object streams (where PDF 1.5+ files keep
    their page objects)."""
    budget = MAX_INFLATED
    for m in _STREAM.finditer(data):
        head = data[max(0, m.start() - 1024):m.start()]
        head = head[head.rfind(b"obj") + 3:] if b"obj" in head else head
        if b"/ObjStm" not in head or b"/FlateDecode" not in head or budget <= 0:
            continue
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data[m.end():m.end() + budget * 4 + 1024], budget)
        except zlib.error:
            continue
        budget -= len(out)
        yield out


def pdf_pages(data: bytes) -> int | None:
    """An upper bound of the PDF's pages: every page object in the file or its object streams
    (objects left over by incremental saves count too), or the page tree's largest /Count,
    whichever is more. None when the bytes are not a PDF, are encrypted (object streams then
    cannot be read) or show no page at all."""
    start = data.find(b"%PDF-", 0, 1024)
    if start < 0 or b"/Encrypt" in data:
        return None
    pages = len(_PAGE.findall(data))
    counts = [int(c) for c in _COUNT.findall(data)]
    for inflated in _object_streams(data):
        pages += len(_PAGE.findall(inflated))
        counts += [int(c) for c in _COUNT.findall(inflated)]
    pages = max([pages, *counts])
    return pages or None


# ------------------------------------------------------------------ what a prompt holds
IMAGE_TYPES = ("image_url", "input_image", "image")
PAYLOAD_KEYS = ("image_url", "file_data", "data", "file_url", "url")   # never counted as text
Size = tuple[int, int] | None


@dataclass
class PromptFacts:
    """A request's prompt, read once; each model's bound is computed from it (reservation.py)."""
    text_bytes: int = 0                 # UTF-8 bytes of its text, tools and formats, keys included
    messages: int = 0
    images: list[tuple[Size, str | None]] = field(default_factory=list)   # (size or None, detail)
    pdf_pages: list[int | None] = field(default_factory=list)              # None: unreadable
    audio_seconds: list[float | None] = field(default_factory=list)        # None: unmeasurable
    unknown: int = 0     # parts whose size the request does not carry: file ids and URLs,
                         # item references, stored responses or prompts, files of other kinds
    tools: bool = False  # tools sent, or JSON mode (which a provider may emulate with a tool)


def _strings(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(_strings(k) + _strings(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_strings(v) for v in value)
    if value is None or isinstance(value, bool):
        return 4
    return len(str(value))


class _Reader:
    def __init__(self, audio_seconds: Callable[[bytes, str], float | None] | None) -> None:
        self.facts = PromptFacts()
        self._audio = audio_seconds

    def walk(self, value: object) -> None:
        f = self.facts
        if isinstance(value, str):
            f.text_bytes += len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.walk(v)
        elif isinstance(value, dict):
            kind = value.get("type")
            if kind is None:    # a message, or any object without a type: its keys and values
                for k, v in value.items():
                    f.text_bytes += _strings(k)
                    if type(v) is str:
                        f.text_bytes += len(v.encode("utf-8", "surrogatepass"))
                    else:
                        self.walk(v)
                return
            if kind in IMAGE_TYPES:
                self._image(value)
            elif kind == "file" and isinstance(value.get("file"), dict):
                self._file(value["file"])
            elif kind == "input_file":
                self._file(value)
            elif kind == "input_audio" and isinstance(value.get("input_audio"), dict):
                self._audio_part(value["input_audio"])
            elif kind == "item_reference":
                f.unknown += 1
            for k, v in value.items():
                if k in PAYLOAD_KEYS and kind in (*IMAGE_TYPES, "input_file", "file"):
                    continue
                if k in ("file", "input_audio", "source") and kind in ("file", "input_audio", "image"):
                    continue
                f.text_bytes += _strings(k)
                self.walk(v)
        elif value is None or isinstance(value, bool):
            f.text_bytes += 4
        else:
            f.text_bytes += len(str(value))

    def _image(self, part: dict) -> None:
        spec = part.get("image_url")
        detail = part.get("detail")
        if isinstance(spec, dict):
            detail = spec.get("detail", detail)
            spec = spec.get("url")
        source = part.get("source")
        if spec is None and isinstance(source, dict):       # Anthropic's shape
            spec = source.get("data") if source.get("type") == "base64" else source.get("url")
        decoded = data_url(spec)
        size = image_size(decoded[1]) if decoded else None
        self.facts.images.append((size, detail if isinstance(detail, str) else None))

    def _file(self, f: dict) -> None:
        facts = self.facts
        if isinstance(f.get("filename"), str):
            facts.text_bytes += _strings(f["filename"])
        decoded = data_url(f.get("file_data"))
        if decoded is None:
            facts.unknown += 1       # a file id or URL: its size is not in the request
            return
        mime, data = decoded
        if mime == "application/pdf" or data[:1024].find(b"%PDF-") >= 0:
            facts.pdf_pages.append(pdf_pages(data))
        elif mime.startswith("image/") or image_size(data) is not None:
            facts.images.append((image_size(data), None))
        elif mime.startswith("text/") or mime in ("application/json", "application/xml"):
            facts.text_bytes += len(data)
        else:
            facts.unknown += 1

    def _audio_part(self, audio: dict) -> None:
        decoded = data_url(audio.get("data"))
        seconds = None
        if decoded is not None and self._audio is not None:
            fmt = audio.get("format")
            seconds = self._audio(decoded[1], fmt if isinstance(fmt, str) else "")
        self.facts.audio_seconds.append(seconds)


def read_prompt(body: dict, audio_seconds: Callable[[bytes, str], float | None] | None = None) -> PromptFacts:
    """The facts of a chat body's prompt (a Responses request is read through its chat view).
    `audio_seconds(data, format)` measures an input_audio part (None when it cannot)."""
    reader = _Reader(audio_seconds)
    messages = body.get("messages") if isinstance(body, dict) else None
    messages = messages if isinstance(messages, list) else []
    reader.walk(messages)
    reader.walk([body.get("tools"), body.get("response_format"), body.get("tool_choice"),
                 body.get("functions")])
    facts = reader.facts
    facts.messages = len(messages)
    rf = body.get("response_format")
    facts.tools = bool(body.get("tools") or body.get("functions")) or (
        isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"))
    return facts


# ------------------------------------------------------------------ the providers' formulas
class ImageRule:
    """Tokens one image is billed as: `tokens(size, detail)`, size None when the request does not
    carry the image (a URL, a file id) or its header is unreadable; None: no bound."""

    def tokens(self, size: Size, detail: str | None) -> int | None:
        raise NotImplementedError


@dataclass(frozen=True)
class TileImages(ImageRule):
    """OpenAI's tile formula (GPT-4o, GPT-4.1, o1/o3, GPT-5...): detail low = `base`; else the image
    is fitted in 2048x2048, its short side brought down to 768, and each 512px tile costs `tile`."""
    base: int
    tile: int

    def tokens(self, size: Size, detail: str | None) -> int | None:
        if detail == "low":
            return self.base
        if size is None:
            return self.base + self.tile * 8      # the most tiles any image becomes (768x2048)
        w: float
        h: float
        w, h = size
        scale = min(1.0, 2048 / max(w, h))
        w, h = w * scale, h * scale
        scale = min(1.0, 768 / min(w, h))
        w, h = w * scale, h * scale
        return self.base + self.tile * math.ceil(w / 512) * math.ceil(h / 512)


@dataclass(frozen=True)
class PatchImages(ImageRule):
    """OpenAI's patch formula (GPT-4.1-mini/nano, o4-mini, GPT-5-mini/nano): 32px patches, at most
    1536 of them, times the model's multiplier; detail is ignored."""
    multiplier: Fraction
    cap: int = 1536

    def tokens(self, size: Size, detail: str | None) -> int | None:
        patches = self.cap if size is None else min(self.cap, math.ceil(size[0] / 32) * math.ceil(size[1] / 32))
        return math.ceil(patches * self.multiplier)


@dataclass(frozen=True)
class PixelImages(ImageRule):
    """Anthropic: width x height / 750 tokens; larger images are scaled down to about `cap` tokens."""
    per_token: int = 750
    cap: int = 1600

    def tokens(self, size: Size, detail: str | None) -> int | None:
        return self.cap if size is None else min(self.cap, math.ceil(size[0] * size[1] / self.per_token))


@dataclass(frozen=True)
class GeminiImages(ImageRule):
    """Gemini: an image within 384x384 is 258 tokens; a larger one is cut into 768x768 tiles
    (crops of a unit of 2/3 of its short side), 258 tokens each. No bound without its size."""
    per_tile: int = 258

    def tokens(self, size: Size, detail: str | None) -> int | None:
        if size is None:
            return None
        w, h = size
        if w <= 384 and h <= 384:
            return self.per_tile
        unit = max(1, math.floor(min(w, h) / 1.5))
        tiles = max(math.ceil(w / 768) * math.ceil(h / 768), math.ceil(w / unit) * math.ceil(h / unit))
        return self.per_tile * tiles


@dataclass(frozen=True)
class InputCosts:
    """How one model bills non-text input. A None formula means its provider documents none: a
    part of that kind bounds the prompt by the whole context window."""
    image: ImageRule | None = None
    pdf_page: int | None = None           # tokens per PDF page: its text and its page image
    audio_per_second: int | None = None   # tokens per second of input audio
    tool_prompt: int = 0                  # tokens the provider adds when tools are sent


NO_FORMULA = InputCosts()
