"""The gateway's own routes, each method's handler given the services it uses (and nothing
else). Every route here has its operation in api/openapi.py (tests/api/test_openapi.py checks)."""

from __future__ import annotations

from aicredits.api import audio, chat, embeddings, images, meta, metrics, responses, webhooks
from aicredits.api.admission import Admission
from aicredits.api.dispatch import Dispatcher, Routes
from aicredits.api.http import (
    ASGIApp,
    BodyBudget,
    Handler,
    Receive,
    Request,
    Scope,
    Send,
    send_bytes,
    send_redirect,
)
from aicredits.wiring import Services


def openapi() -> Handler:
    async def handle(req: Request, send: Send) -> None:
        # loaded with the document, on the first request: its request and response models
        # (pydantic) are not needed to serve
        from aicredits.api.openapi import document as openapi_document
        await send_bytes(send, 200, openapi_document(), [])
    return handle


def root() -> Handler:
    """GET /: the dashboard's front page."""
    async def handle(req: Request, send: Send) -> None:
        await send_redirect(send, "/dashboard/")
    return handle


def build_routes(s: Services, admission: Admission) -> Routes:
    limit = s.settings.max_body_bytes
    models = meta.model_objects(s.catalog, s.served)
    return Routes({
        "/": {"GET": root()},
        "/v1/chat/completions": {"POST": chat.chat_completions(admission, s.chat, limit)},
        "/v1/responses": {"POST": responses.responses(admission, s.responses, limit)},
        "/v1/embeddings": {"POST": embeddings.embeddings(admission, s.embeddings, limit)},
        "/v1/images/generations": {"POST": images.images_generations(admission, s.images, limit)},
        "/v1/audio/speech": {"POST": audio.speech(admission, s.audio, limit)},
        "/v1/audio/transcriptions": {"POST": audio.transcriptions(admission, s.audio, limit)},
        "/v1/credits": {"GET": meta.v1_credits(s.keys, s.metering, s.store, s.cache)},
        "/v1/models": {"GET": meta.v1_models(s.keys, s.metering, models)},
        "/api/models": {"GET": meta.api_models(meta.catalog_document(s.catalog, s.rates, s.served))},
        "/health": {"GET": meta.health()},
        "/health/ready": {"GET": meta.ready(s.store.ping, s.redis.ping if s.redis is not None else None,
                                            s.settings.ready_timeout)},
        "/openapi.json": {"GET": openapi()},
        "/webhooks/razorpay": {"POST": webhooks.razorpay(s.payments)},
        "/metrics": {"GET": metrics.metrics(s.metrics.render, s.metrics.content_type, s.settings.metrics_token)},
    }, {
        # the id may hold slashes: /v1/models/openai/gpt-4o-mini
        meta.MODEL_PREFIX: ("/v1/models/{model}", {"GET": meta.v1_model(s.keys, s.metering, models)}),
    })


def build_dispatcher(s: Services) -> Dispatcher:
    """The raw-ASGI dispatcher of this process's HTTP requests, its routes bound to `s`."""
    admission = Admission(s.keys, s.concurrency)
    return Dispatcher(build_routes(s, admission), admission=admission, metrics=s.metrics,
                      body_budget=BodyBudget(s.settings.body_bytes_in_flight), admin_api=_admin_api(s),
                      dashboard=_dashboard(s), rejected=s.rejected)


# the dashboard and the admin API are built by their first request (Services.built_web)
def _dashboard(s: Services) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await (await s.built_web()).dashboard(scope, receive, send)
    return app


def _admin_api(s: Services) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await (await s.built_web()).admin_api(scope, receive, send)
    return app
