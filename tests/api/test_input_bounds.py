"""The hold is an upper bound for every kind of input (docs/billing.md): a served gateway against
the fake OpenAI and Anthropic upstreams, which report the usage the provider's documented formula
gives for what was sent. For each kind: the call completes, its charge is exactly the reported usage
x the catalog price, and that charge is within the hold written on its usage row (settle would cap a
charge at the hold: a hold below the real cost loses money)."""

from __future__ import annotations

import base64
import sqlite3
import time
import uuid

import httpx
import pytest

from aicredits.providers.anthropic_translate import anthropic_input_costs
from aicredits.providers.openai_compat import openai_input_costs
from tests.api.media_helpers import make_pdf, make_png
from tests.conftest import expected_micros
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Scenario as Reply
from tests.fakes.audio_files import encode, tone
from tests.fakes.openai_upstream import Scenario

MINI = "openai/gpt-4o-mini"
SONNET = "anthropic/claude-sonnet-4.6"
TEXT = 12          # tokens a provider reports for the short text of these prompts


@pytest.fixture(scope="module")
def anthropic():
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gw(serve_gateway, anthropic):
    return serve_gateway(env={"ANTHROPIC_API_KEY": anthropic.api_key, "ANTHROPIC_BASE_URL": anthropic.base_url})


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key(credits="5000")


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def usage_row(gw, rid: str) -> dict:
    """The call's row in usage_records, read from the gateway's SQLite file."""
    path = gw.db_url.removeprefix("sqlite:///")
    deadline = time.time() + 5
    while True:
        with sqlite3.connect(path) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM usage_records WHERE request_id = ?", (rid,)).fetchone()
        if row is not None or time.time() > deadline:
            break
        time.sleep(0.05)
    assert row is not None, f"no usage row for {rid}"
    return dict(row)


def call(gw, key, path: str, body: dict) -> tuple[httpx.Response, dict]:
    rid = "bound-" + uuid.uuid4().hex
    r = httpx.post(gw.v1 + path, json=body, timeout=30,
                   headers={"Authorization": f"Bearer {key['key']}", "x-request-id": rid})
    assert r.status_code == 200, r.text
    return r, usage_row(gw, rid)


def assert_exact_within_hold(gw, row: dict, model: str, prompt: int, completion: int) -> None:
    want = expected_micros(gw.catalog()[model], prompt, completion)
    assert (row["end_state"], row["prompt_tokens"], row["completion_tokens"]) == ("completed", prompt, completion)
    assert row["cost"] == want, "the charge is the reported usage x the price"
    assert row["cost"] <= row["hold"], "the hold covered the call"


def window_hold(gw, model: str, completion: int) -> int:
    return expected_micros(gw.catalog()[model], gw.catalog()[model]["context_window"], completion)


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is in this?"}, *parts]}]


# ---------------------------------------------------------------- OpenAI (gpt-4o-mini: 2833 + 5667 a tile)
def test_a_base64_image_is_held_by_its_tiles(gw, key, upstream):
    png = make_png(800, 600)                       # 2 x 2 tiles of 512 px
    true = TEXT + 2833 + 4 * 5667
    upstream.enqueue(Scenario(prompt_tokens=true, completion_tokens=5))
    part = {"type": "image_url", "image_url": {"url": data_url(png, "image/png"), "detail": "high"}}
    _, row = call(gw, key, "/chat/completions", {"model": MINI, "messages": user(part), "max_tokens": 5})
    assert_exact_within_hold(gw, row, MINI, true, 5)
    assert row["hold"] < window_hold(gw, MINI, 5) // 4       # bounded by its size, not by the window


def test_an_image_url_is_held_at_the_most_tiles_any_image_makes(gw, key, upstream):
    true = TEXT + 2833 + 8 * 5667                    # a 768 x 2048 image: 2 x 4 tiles
    upstream.enqueue(Scenario(prompt_tokens=true, completion_tokens=5))
    part = {"type": "image_url", "image_url": {"url": "https://images.example.com/tall.png"}}
    _, row = call(gw, key, "/chat/completions", {"model": MINI, "messages": user(part), "max_tokens": 5})
    assert_exact_within_hold(gw, row, MINI, true, 5)
    assert row["hold"] < window_hold(gw, MINI, 5) // 2


def test_a_pdf_file_part_is_held_by_its_pages(gw, key, upstream):
    """The reproduction: a 100-page PDF cost about 60,000 prompt tokens (0.86 INR) while the hold
    counted its base64 as some thousands of bytes of text."""
    pdf = make_pdf(100, compressed=True)
    assert len(data_url(pdf, "application/pdf")) < 60_000 // 2   # what the old hold counted
    upstream.enqueue(Scenario(prompt_tokens=60_000, completion_tokens=20))
    part = {"type": "file", "file": {"filename": "report.pdf", "file_data": data_url(pdf, "application/pdf")}}
    _, row = call(gw, key, "/chat/completions", {"model": MINI, "messages": user(part), "max_tokens": 20})
    assert_exact_within_hold(gw, row, MINI, 60_000, 20)
    assert row["cost"] > 8 * 10**5                  # about 0.86 INR, charged in full


def test_a_file_id_holds_the_whole_context_window(gw, key, upstream):
    upstream.enqueue(Scenario(prompt_tokens=60_000, completion_tokens=20))
    part = {"type": "file", "file": {"file_id": "file-4f3e2d1c"}}
    _, row = call(gw, key, "/chat/completions", {"model": MINI, "messages": user(part), "max_tokens": 20})
    assert_exact_within_hold(gw, row, MINI, 60_000, 20)
    assert row["hold"] >= window_hold(gw, MINI, 20)


def test_a_responses_input_file_by_url_holds_the_whole_context_window(gw, key, upstream):
    upstream.enqueue(Scenario(prompt_tokens=60_000, completion_tokens=20, content="A report."))
    item = {"role": "user", "content": [{"type": "input_text", "text": "Summarise."},
                                        {"type": "input_file", "file_url": "https://files.example.com/report.pdf"}]}
    _, row = call(gw, key, "/responses", {"model": MINI, "input": [item], "max_output_tokens": 20})
    assert_exact_within_hold(gw, row, MINI, 60_000, 20)
    assert row["hold"] >= window_hold(gw, MINI, 20)
    sent = [r for r in upstream.requests if r.path.endswith("/responses")][-1].body
    assert sent["input"] == [item]


def test_input_audio_is_held_by_its_measured_seconds(gw, key, upstream):
    mp3 = encode("mp3", tone(6.4, 16000), 16000)
    true = TEXT + 7 * 10                            # ~10 audio tokens a second
    upstream.enqueue(Scenario(prompt_tokens=true, completion_tokens=5))
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(mp3).decode(), "format": "mp3"}}
    _, row = call(gw, key, "/chat/completions", {"model": MINI, "messages": user(part), "max_tokens": 5})
    assert_exact_within_hold(gw, row, MINI, true, 5)
    assert row["hold"] < expected_micros(gw.catalog()[MINI], 1000, 5)   # seconds x 20, not its base64


# ---------------------------------------------------------------- Anthropic: claude-sonnet-4.6
def test_anthropic_tools_hold_the_hidden_tool_prompt(gw, key, anthropic):
    """A short prompt with one tool: Anthropic adds its tool-use system prompt (589 tokens on
    Sonnet 4.6 with tool_choice any), which the bytes of the request do not show."""
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                               "parameters": {"type": "object",
                                                              "properties": {"q": {"type": "string"}}}}}]
    true = 30 + 589 + 40
    anthropic.enqueue(Reply(input_tokens=true, output_tokens=1))
    body = {"model": SONNET, "messages": [{"role": "user", "content": "Look up 'cat'."}], "tools": tools,
            "tool_choice": "required", "max_tokens": 1}
    _, row = call(gw, key, "/chat/completions", body)
    assert_exact_within_hold(gw, row, SONNET, true, 1)


def test_anthropic_image_and_pdf_are_held_by_pixels_and_pages(gw, key, anthropic):
    png = make_png(1000, 1000)                       # 1,334 tokens
    pdf = make_pdf(3)                                # 3 pages of text and page images
    true = TEXT + 1334 + 3 * (3000 + 1600)
    anthropic.enqueue(Reply(input_tokens=true, output_tokens=8))
    parts = [{"type": "image_url", "image_url": {"url": data_url(png, "image/png")}},
             {"type": "file", "file": {"filename": "a.pdf", "file_data": data_url(pdf, "application/pdf")}}]
    _, row = call(gw, key, "/chat/completions", {"model": SONNET, "messages": user(*parts), "max_tokens": 8})
    assert_exact_within_hold(gw, row, SONNET, true, 8)
    assert row["hold"] < window_hold(gw, SONNET, 8) // 4
    sent = anthropic.requests[-1].body["messages"][0]["content"]
    assert [b["type"] for b in sent] == ["text", "image", "document"]


# ---------------------------------------------------------------- the formulas' tables
def test_the_provider_tables():
    assert openai_input_costs("openai", "gpt-4o-mini-2024-07-18").image.tokens((128, 64), "high") == 8500
    assert openai_input_costs("openai", "gpt-4.1-mini").image.tokens(None, None) == 2489
    assert openai_input_costs("openai", "gpt-4o").image.tokens((1024, 1024), "high") == 765
    assert openai_input_costs("openai_compatible", "llava").image is None   # no documented formula
    assert openai_input_costs("gemini", "gemini-2.5-flash").pdf_page == 258
    assert anthropic_input_costs("claude-sonnet-4-6").tool_prompt >= 589
    assert anthropic_input_costs("claude-3-5-haiku-20241022").tool_prompt >= 355
    assert anthropic_input_costs("claude-future-9").tool_prompt >= 804     # unknown: the largest
