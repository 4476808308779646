"""What one body may cost (api/http.py, services/validation.py): its JSON structure counted in
the bytes before parsing, its messages and content parts right after. The attack this guards
against, a 38 MiB chat body of 2.5 million `{"role":"user"}`, took a worker to 930 MB and stalled
its /health for seconds; here it is refused quickly while /health stays fast and the worker's
peak RSS stays low (a real worker process). The limits are checked in process too, with bodies
just under and just over each."""

from __future__ import annotations

import threading
import time

import httpx
import orjson
import pytest

from aicredits.errors import RequestTooLarge
from aicredits.services.validation import (
    MAX_CONTENT_PARTS,
    MAX_JSON_CONTAINERS,
    MAX_JSON_VALUES,
    MAX_MESSAGES,
    check_json_size,
)
from tests.inproc import InProcessGateway

ECHO = "demo/echo"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_body_of_millions_of_tiny_messages_is_refused_quickly_and_the_worker_stays_responsive(start_gateway):
    gw = start_gateway()
    key = gw.create_key(credits="10")["key"]
    body = b'{"model":"demo/echo","messages":[' + b",".join([b'{"role":"user"}'] * 2_500_000) + b"]}"
    assert len(body) > 38 * 2**20
    probes: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                t = time.perf_counter()
                assert client.get(gw.base_url + "/health").status_code == 200
                probes.append(time.perf_counter() - t)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        t = time.perf_counter()
        r = httpx.post(gw.v1 + "/chat/completions", content=body, timeout=60,
                       headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
        took = time.perf_counter() - t
    finally:
        stop.set()
        prober.join()
    assert r.status_code == 413, r.text[:300]
    assert r.json() == {"error": {"message": f"The request body holds more than {MAX_JSON_CONTAINERS:,} JSON "
                                             "objects and arrays; send fewer items.",
                                  "type": "request_too_large", "code": 413}}
    assert took < 10, took   # the old code answered after 20+ s on this machine
    assert len(probes) >= 3 and max(probes) < 1.0, probes   # the old code's /health waited 3-10 s
    assert peak_rss_mib(gw.proc.pid) < 400   # the old code reached 930 MiB
    assert gw.credits(key)["held"] == 0


# ---------------------------------------------------------------- the counting, in process
def test_structure_inside_strings_is_not_counted():
    text = '{[,"\\\\' * 100_000   # brackets, commas, quotes and backslashes, all inside one string
    check_json_size(orjson.dumps({"model": ECHO, "messages": [{"role": "user", "content": text}]}))


@pytest.mark.parametrize("make, limit", [
    (lambda n: orjson.dumps([[]] * (n - 1)), MAX_JSON_CONTAINERS),         # n - 1 arrays in one
    (lambda n: orjson.dumps([{"a": "b"}] * (n - 1)), MAX_JSON_CONTAINERS), # n - 1 objects in an array
    (lambda n: orjson.dumps([1] * n), MAX_JSON_VALUES),                    # n numbers (n - 1 commas + the array)
    (lambda n: orjson.dumps(["x,{\\\""] * n), MAX_JSON_VALUES),            # strings full of structure
])
def test_the_structure_limits_are_exact(make, limit):
    check_json_size(make(limit))
    with pytest.raises(RequestTooLarge):
        check_json_size(make(limit + 1))


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = InProcessGateway(tmp_path_factory.mktemp("limits"), {"AICREDITS_LOG_LEVEL": "CRITICAL"}).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key()


def post(gw, key, path: str, body: dict) -> httpx.Response:
    return gw.post(path, key, content=orjson.dumps(body), headers={"content-type": "application/json"})


def test_past_the_values_limit_is_413_in_the_reference_shape(gw, key):
    body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": [0] * MAX_JSON_VALUES}}
    r = post(gw, key, "/v1/chat/completions", body)
    assert r.status_code == 413
    assert r.json()["error"] == {"message": f"The request body holds more than {MAX_JSON_VALUES:,} JSON values; "
                                            "send fewer items.", "type": "request_too_large", "code": 413}


def test_messages_and_content_parts_are_capped(gw, key):
    ok = post(gw, key, "/v1/chat/completions", {"model": ECHO, "messages": [{"role": "user", "content": "x"}] * MAX_MESSAGES})
    assert ok.status_code == 200, ok.text[:300]
    r = post(gw, key, "/v1/chat/completions", {"model": ECHO, "messages": [{"role": "user"}] * (MAX_MESSAGES + 1)})
    assert r.status_code == 400
    assert r.json()["error"] == {"message": f"'messages' has {MAX_MESSAGES + 1:,} messages; at most {MAX_MESSAGES:,} "
                                            "are accepted.", "type": "invalid_request_error", "code": 400,
                                 "param": "messages"}
    parts = [{"type": "text", "text": "x"}] * (MAX_CONTENT_PARTS // 2 + 1)
    r = post(gw, key, "/v1/chat/completions", {"model": ECHO, "messages": [{"role": "user", "content": parts}] * 2})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (f"The messages in 'messages' have {MAX_CONTENT_PARTS + 2:,} content parts "
                                            f"together; at most {MAX_CONTENT_PARTS:,} are accepted.")


def test_responses_input_items_are_capped(gw, key):
    items = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
    r = post(gw, key, "/v1/responses", {"model": ECHO, "input": items})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input"
    assert r.json()["error"]["message"] == (f"'input' has {MAX_MESSAGES + 1:,} input items; at most "
                                            f"{MAX_MESSAGES:,} are accepted.")
    assert gw.credits(key)["held"] == 0
