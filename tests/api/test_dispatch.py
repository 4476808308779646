"""api/dispatch.py on its own: the raw-ASGI router and the error mapping (api/failures.py), with
handlers written here and no services behind them (the gateway's own routes are exercised through
the whole app by the other tests in this directory)."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from aicredits.api.dispatch import Dispatcher, Routes
from aicredits.api.http import BodyBudget, ClientGone, send_json
from aicredits.ports import StoreUnavailable


class Counted:
    """telemetry.Metrics' `answered`, recorded."""

    def __init__(self) -> None:
        self.answered_calls: list[tuple[str, int]] = []

    def answered(self, route: str, status: int) -> None:
        self.answered_calls.append((route, status))


async def ok(req, send) -> None:
    await send_json(send, 200, {"path": req.scope["path"]})


async def store_down(req, send) -> None:
    raise StoreUnavailable("connection refused by 10.0.0.5")


async def crash(req, send) -> None:
    raise RuntimeError("secret internal detail")


async def crash_after_start(req, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("too late to answer")


async def gone(req, send) -> None:
    raise ClientGone()


def mounted(name: str):
    async def app(scope, receive, send) -> None:
        await send_json(send, 200, {"app": name})
    return app


ROUTES = Routes({"/v1/ok": {"GET": ok, "POST": ok}, "/v1/store": {"GET": store_down}, "/v1/crash": {"GET": crash},
                 "/v1/late": {"GET": crash_after_start}, "/v1/gone": {"POST": gone}},
                {"/v1/models/": ("/v1/models/{model}", {"GET": ok})})


def dispatcher(metrics: Counted) -> Dispatcher:
    return Dispatcher(ROUTES, admission=None, metrics=metrics, body_budget=BodyBudget(1 << 20),
                      admin_api=mounted("admin"), dashboard=mounted("dashboard"))


def call(d: Dispatcher, method: str, path: str) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"x-request-id", b"rid-1")]}
    asyncio.run(d(scope, receive, send))
    return sent


def answer(sent: list[dict]) -> tuple[int, dict, dict]:
    start, body = sent[0], sent[1]
    return start["status"], dict(start["headers"]), orjson.loads(body["body"])


@pytest.fixture
def metrics() -> Counted:
    return Counted()


def test_a_route_is_found_by_path_and_method(metrics):
    status, _, body = answer(call(dispatcher(metrics), "POST", "/v1/ok"))
    assert (status, body) == (200, {"path": "/v1/ok"})
    assert metrics.answered_calls == [("/v1/ok", 200)]


def test_an_unknown_path_is_a_404_in_the_reference_shape(metrics):
    status, headers, body = answer(call(dispatcher(metrics), "GET", "/v1/nope"))
    assert status == 404 and headers[b"x-request-id"] == b"rid-1"
    assert body == {"error": {"message": "Unknown route: GET /v1/nope.", "type": "not_found_error", "code": 404}}
    assert metrics.answered_calls == [("other", 404)]   # a made-up path cannot grow the metrics


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(metrics):
    status, headers, body = answer(call(dispatcher(metrics), "DELETE", "/v1/ok"))
    assert status == 405 and headers[b"allow"] == b"GET, POST"
    assert body["error"]["type"] == "invalid_request_error"


def test_a_path_ending_in_a_parameter_is_found_by_its_prefix_and_named_by_its_template(metrics):
    d = dispatcher(metrics)
    assert answer(call(d, "GET", "/v1/models/openai/gpt-4o-mini"))[2] == {"path": "/v1/models/openai/gpt-4o-mini"}
    assert metrics.answered_calls == [("/v1/models/{model}", 200)]
    assert answer(call(d, "GET", "/v1/models/"))[0] == 404   # the prefix alone names no model


def test_the_mounted_apps_get_their_paths_and_only_theirs(metrics):
    d = dispatcher(metrics)
    assert answer(call(d, "GET", "/admin/api/users"))[2] == {"app": "admin"}
    assert answer(call(d, "GET", "/admin/api"))[2] == {"app": "admin"}
    assert answer(call(d, "GET", "/dashboard/usage"))[2] == {"app": "dashboard"}
    assert answer(call(d, "GET", "/dashboardx"))[0] == 404
    assert answer(call(d, "GET", "/admin/apix"))[0] == 404


def test_a_database_that_cannot_be_reached_is_a_503_not_a_500(metrics, caplog):
    with caplog.at_level(logging.WARNING, logger="aicredits"):
        status, headers, body = answer(call(dispatcher(metrics), "GET", "/v1/store"))
    assert status == 503 and headers[b"retry-after"] == b"2"
    assert body["error"]["type"] == "service_unavailable" and "10.0.0.5" not in body["error"]["message"]
    assert "rid-1" in caplog.text


def test_a_crash_is_logged_with_its_request_id_and_answered_with_a_500_that_reveals_nothing(metrics, caplog):
    with caplog.at_level(logging.ERROR, logger="aicredits"):
        status, _, body = answer(call(dispatcher(metrics), "GET", "/v1/crash"))
    assert status == 500 and "secret" not in orjson.dumps(body).decode()
    assert "request rid-1" in caplog.text and "secret internal detail" in caplog.text


def test_a_crash_after_the_answer_started_sends_nothing_more(metrics, caplog):
    with caplog.at_level(logging.ERROR, logger="aicredits"):
        sent = call(dispatcher(metrics), "GET", "/v1/late")
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert metrics.answered_calls == [("/v1/late", 200)] and "too late to answer" in caplog.text


def test_a_client_gone_is_answered_nothing_and_counted_as_499(metrics):
    assert call(dispatcher(metrics), "POST", "/v1/gone") == []
    assert metrics.answered_calls == [("/v1/gone", 499)]


def test_route_labels():
    assert ROUTES.label("/v1/ok") == "/v1/ok"
    assert ROUTES.label("/") == ROUTES.label("/dashboard/x") == "/dashboard"
    assert ROUTES.label("/wp-admin.php") == "other"
    assert dict(ROUTES.documented())["/v1/models/{model}"] == {"GET": ok}
