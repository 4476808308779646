"""GET /metrics: the Prometheus text format (infra/metrics.py), behind AICREDITS_METRICS_TOKEN as
a bearer token when it is set (docs/operations.md, "Metrics")."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aicredits.api.http import Handler, Request, Send, send_bytes, send_error
from aicredits.errors import AuthenticationFailed


def allowed(authorization: str | None, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics(render: Callable[[], Awaitable[bytes]], content_type: bytes, token: str | None) -> Handler:
    """`render` gives the exposition (PrometheusMetrics.render) in `content_type`."""
    async def handle(req: Request, send: Send) -> None:
        if not allowed(req.authorization(), token):
            exc = AuthenticationFailed("GET /metrics needs 'Authorization: Bearer <the AICREDITS_METRICS_TOKEN "
                                       "value>'.")
            await send_error(send, exc, [(b"x-request-id", req.request_id.encode()),
                                         (b"www-authenticate", b'Bearer realm="metrics"')])
            return
        await send_bytes(send, 200, await render(), [(b"cache-control", b"no-store")], content_type=content_type)
    return handle
