"""domain/media.py: what a prompt's media are (image sizes, PDF pages) read from their bytes, and
the providers' documented formulas; and through prompt_token_bound, the bound each kind gives."""

from __future__ import annotations

import base64
import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aicredits.domain.media import (
    GeminiImages,
    InputCosts,
    PatchImages,
    PixelImages,
    TileImages,
    data_url,
    image_size,
    pdf_pages,
    read_prompt,
)
from aicredits.domain.reservation import UNKNOWN_WINDOW, prompt_token_bound
from tests.api.media_helpers import make_jpeg_header, make_pdf, make_png


def b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def webp_vp8l(w: int, h: int) -> bytes:
    bits = (w - 1) | ((h - 1) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little") + bytes(8)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBP" + b"VP8L" + struct.pack("<I", len(payload)) \
        + payload


def webp_vp8x(w: int, h: int) -> bytes:
    payload = bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + payload


# ------------------------------------------------------------------ reading the bytes
@pytest.mark.parametrize("data, size", [
    (make_png(800, 600), (800, 600)),
    (make_jpeg_header(1920, 1080), (1920, 1080)),          # SOF after a 3 kB APP1 segment
    (b"GIF89a" + struct.pack("<HH", 320, 200) + bytes(20), (320, 200)),
    (webp_vp8l(1000, 700), (1000, 700)),
    (webp_vp8x(4000, 3000), (4000, 3000)),
])
def test_image_size_from_the_header(data, size):
    assert image_size(data) == size


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xda" + bytes(10), make_png(4, 4)[:20]])
def test_unreadable_images_have_no_size(data):
    assert image_size(data) is None


@pytest.mark.parametrize("pages", [1, 7, 100])
@pytest.mark.parametrize("compressed", [False, True])
def test_pdf_pages_in_the_clear_and_in_object_streams(pages, compressed):
    data = make_pdf(pages, compressed)
    if compressed:
        assert b"/Type /Page " not in data and b"/Count" not in data
    assert pdf_pages(data) == pages


def test_pdf_pages_unknown_for_encrypted_or_non_pdf():
    assert pdf_pages(b"hello") is None
    assert pdf_pages(make_pdf(3).replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 9 0 R")) is None


def test_data_urls():
    assert data_url("data:image/png;base64," + base64.b64encode(b"abc").decode()) == ("image/png", b"abc")
    assert data_url(base64.b64encode(b"%PDF-1.4").decode()) == ("", b"%PDF-1.4")
    assert data_url("https://example.com/a.png") is None
    assert data_url("file-abc123") is None
    assert data_url("data:image/png;base64,@@@") is None


# ------------------------------------------------------------------ the formulas
def test_openai_tiles_match_the_documented_examples():
    gpt4o = TileImages(85, 170)
    assert gpt4o.tokens((1024, 1024), "high") == 765        # 768x768: 4 tiles
    assert gpt4o.tokens((2048, 4096), "high") == 1105       # 1024x2048 -> 768x1536: 6 tiles
    assert gpt4o.tokens((4096, 8192), "low") == 85
    assert gpt4o.tokens(None, "high") == 85 + 8 * 170        # the most tiles any image becomes
    assert gpt4o.tokens(None, "auto") == 85 + 8 * 170
    assert TileImages(2833, 5667).tokens((128, 64), "high") == 8500    # gpt-4o-mini, one tile
    assert max(gpt4o.tokens((w, h), "high") for w in range(64, 5000, 97) for h in range(64, 5000, 89)) \
        <= gpt4o.tokens(None, "high")


def test_openai_patches_are_capped():
    mini = PatchImages(Fraction("1.62"))
    assert mini.tokens((1024, 1024), "low") == 1659          # 1024 patches x 1.62, detail ignored
    assert mini.tokens((4000, 1474), "high") == 2489         # capped at 1536 patches (2488.32)
    assert mini.tokens(None, None) == 2489


def test_anthropic_pixels_and_gemini_tiles():
    claude = PixelImages(750, 1600)
    assert claude.tokens((1000, 1000), None) == 1334
    assert claude.tokens((8000, 8000), None) == 1600 and claude.tokens(None, None) == 1600
    gemini = GeminiImages(258)
    assert gemini.tokens((384, 384), None) == 258
    assert gemini.tokens((1024, 1024), None) >= 4 * 258
    assert gemini.tokens(None, None) is None                 # a URL: no bound from the image itself


# ------------------------------------------------------------------ each kind through the bound
OPENAI_MINI = InputCosts(image=TileImages(2833, 5667), pdf_page=6000 + 2833 + 8 * 5667, audio_per_second=20)
CLAUDE = InputCosts(image=PixelImages(750, 1600), pdf_page=7600, audio_per_second=0, tool_prompt=749)


def user(*parts) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe."}, *parts]}]}


def text_only_bound(costs=None) -> int:
    return prompt_token_bound(user(), None, costs)


def test_a_base64_image_is_bounded_by_its_size():
    part = {"type": "image_url", "image_url": {"url": b64(make_png(800, 600), "image/png"), "detail": "high"}}
    body = user(part)
    extra = prompt_token_bound(body, 128_000, OPENAI_MINI) - text_only_bound(OPENAI_MINI)
    assert 2833 + 4 * 5667 <= extra < 2833 + 4 * 5667 + 100      # 4 tiles, plus the part's keys
    claude = prompt_token_bound(body, 200_000, CLAUDE) - text_only_bound(CLAUDE)
    assert 640 <= claude < 740                                  # 800 x 600 / 750


def test_an_image_url_holds_the_formulas_largest():
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    extra = prompt_token_bound(user(part), 128_000, OPENAI_MINI) - text_only_bound(OPENAI_MINI)
    assert extra >= 2833 + 8 * 5667
    gemini = InputCosts(image=GeminiImages(258))
    assert prompt_token_bound(user(part), 1_048_576, gemini) == 1_048_576


def test_pdf_pages_by_file_data_and_the_window_by_file_id():
    pdf = {"type": "file", "file": {"filename": "r.pdf", "file_data": b64(make_pdf(5, True), "application/pdf")}}
    extra = prompt_token_bound(user(pdf), 1_000_000, CLAUDE) - text_only_bound(CLAUDE)
    assert 5 * 7600 <= extra < 5 * 7600 + 100
    by_id = {"type": "file", "file": {"file_id": "file-abc"}}
    assert prompt_token_bound(user(by_id), 128_000, OPENAI_MINI) == 128_000
    assert prompt_token_bound(user(by_id), None, OPENAI_MINI) >= UNKNOWN_WINDOW
    url = {"type": "input_file", "file_url": "https://example.com/report.pdf"}
    assert prompt_token_bound(user(url), 128_000, OPENAI_MINI) == 128_000
    item = {"type": "item_reference", "id": "msg_1"}
    assert prompt_token_bound(user(item), 128_000, OPENAI_MINI) == 128_000


def test_audio_by_its_measured_seconds():
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"x" * 9000).decode(), "format": "wav"}}
    facts = read_prompt(user(part), lambda data, fmt: 12.3)
    assert facts.audio_seconds == [12.3]
    assert facts.text_bytes < 200                               # the base64 is not text
    extra = prompt_token_bound(facts, 128_000, OPENAI_MINI) - text_only_bound(OPENAI_MINI)
    assert 13 * 20 <= extra < 13 * 20 + 100
    unmeasured = read_prompt(user(part), lambda data, fmt: None)
    assert prompt_token_bound(unmeasured, 128_000, OPENAI_MINI) == 128_000


def test_tools_add_the_providers_hidden_prompt():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    assert prompt_token_bound(body, 200_000, CLAUDE) - prompt_token_bound(body, 200_000) == 749
    json_mode = {**plain, "response_format": {"type": "json_object"}}
    assert prompt_token_bound(json_mode, 200_000, CLAUDE) - prompt_token_bound(json_mode, 200_000) == 749
    assert prompt_token_bound(plain, 200_000, CLAUDE) == prompt_token_bound(plain, 200_000)


_plain_keys = st.text(max_size=8).filter(lambda k: k != "type")
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_plain_keys, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_plain_keys, _plain_json, max_size=5), min_size=1, max_size=4))
def test_a_prompt_without_typed_parts_counts_every_key_and_value(messages):
    """Objects without a `type` (messages, tool arguments, schemas) are read on a shorter path: it
    counts what the documented rule counts, every key and value (an absent field, None, counts 4)."""
    from aicredits.domain.media import _strings
    facts = read_prompt({"messages": messages})
    assert facts.text_bytes == _strings(messages) + 4 * 4   # tools, response_format, tool_choice, functions
    assert (facts.images, facts.pdf_pages, facts.audio_seconds, facts.unknown) == ([], [], [], 0)
