"""The request log: one JSON line per /v1 request on `aicredits.calls`, with the request id, the key's
id (never the key), model, status, tokens, cost, latency and cache for a call, and the same line
shape (without a model) for a request that settled nothing."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from aicredits.logs import JsonFormatter
from tests.fakes.openai_upstream import Scenario
from tests.inproc import InProcessGateway

ROUTE = "/v1/chat/completions"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(tmp_path, upstream):
    g = InProcessGateway(tmp_path, {"OPENAI_BASE_URL": upstream.base_url,
                                    "OPENAI_API_KEY": upstream.api_key}).start()
    yield g
    g.stop()


def lines(caplog) -> list[dict]:
    fmt = JsonFormatter()
    out = []
    for record in caplog.records:
        if record.name == "aicredits.calls":
            text = fmt.format(record)
            assert "\n" not in text
            out.append(json.loads(text))
    return out


def test_one_line_per_request(gw, upstream, caplog):
    caplog.set_level(logging.INFO, logger="aicredits.calls")
    key = gw.create_key()
    poor = gw.create_key(credits_micros=1)
    rids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("ok", "stream", "bad_key", "poor", "credits")}

    def post(name, k, **extra):
        return gw.post(ROUTE, k, json={**CHAT, **extra}, headers={"x-request-id": rids[name]})

    assert post("ok", key).status_code == 200
    upstream.enqueue(Scenario(prompt_tokens=30, completion_tokens=5))
    assert post("stream", key, stream=True, stream_options={"include_usage": True}).status_code == 200
    assert post("bad_key", {"key": "sk-" + "1" * 64}).status_code == 401
    assert post("poor", poor).status_code == 402
    assert gw.request("GET", "/v1/credits", key, headers={"x-request-id": rids["credits"]}).status_code == 200
    assert gw.request("GET", "/health").status_code == 200   # not a /v1 request: no line

    got = lines(caplog)
    assert sorted(r["request_id"] for r in got) == sorted(rids.values())   # one line each
    by_rid = {r["request_id"]: r for r in got}
    for name in ("ok", "stream"):
        line, row = by_rid[rids[name]], gw.usage_row(key, rids[name])
        assert line["msg"] == "call"
        assert line["key_id"] == key["id"]
        assert line["model"] == "openai/gpt-4o-mini"
        assert line["status"] == 200
        assert (line["prompt_tokens"], line["completion_tokens"]) == (row["prompt_tokens"], row["completion_tokens"])
        assert line["cost_micros"] == row["cost"] > 0
        assert line["latency_ms"] >= 0 and line["cache"] == "bypass"
    assert by_rid[rids["stream"]]["prompt_tokens"] == 30
    refused = by_rid[rids["bad_key"]]
    assert (refused["msg"], refused["status"], refused["key_id"], refused["route"]) == ("request", 401, None, ROUTE)
    assert (by_rid[rids["poor"]]["status"], by_rid[rids["poor"]]["key_id"]) == (402, poor["id"])
    assert (by_rid[rids["credits"]]["status"], by_rid[rids["credits"]]["key_id"]) == (200, key["id"])
    text = "\n".join(json.dumps(r) for r in got)
    assert key["key"] not in text and poor["key"] not in text and "sk-" + "1" * 64 not in text
