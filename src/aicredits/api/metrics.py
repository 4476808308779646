"""GET /metrics: the Prometheus text format (infra/metrics.py), behind AICREDITS_METRICS_TOKEN as
a bearer token when it is set (docs/operations.md, "Metrics")."""

from __future__ import annotations

import hmac

from aicredits.api.http import Request, send_bytes, send_error
from aicredits.errors import AuthenticationFailed


def allowed(authorization: str | None, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(gw, req: Request, send) -> None:
    if not allowed(req.authorization(), gw.settings.metrics_token):
        exc = AuthenticationFailed("GET /metrics needs 'Authorization: Bearer <the AICREDITS_METRICS_TOKEN value>'.")
        await send_error(send, exc, [(b"x-request-id", req.request_id.encode()),
                                     (b"www-authenticate", b'Bearer realm="metrics"')])
        return
    body = await gw.metrics.render()
    await send_bytes(send, 200, body, [(b"cache-control", b"no-store")], content_type=gw.metrics.content_type)
