"""Error mapping: what the client is told when a request fails. A GatewayError is its own
answer; a database the request needed and could not reach is a 503 (never a 500); anything else
is logged with the request id and answered with a 500 that reveals nothing of it."""

from __future__ import annotations

import logging

from aicredits.api.http import Scope
from aicredits.errors import GatewayError, InternalError
from aicredits.ports import StoreUnavailable
from aicredits.services.billing import database_unavailable

log = logging.getLogger("aicredits")


def failure_answer(exc: Exception, scope: Scope, request_id: str) -> GatewayError:
    """The error to answer `exc` with (logged here when it is the gateway's fault)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, StoreUnavailable):   # a read that needed the database (credits): 503, not 500
        log.warning("%s %s (request %s): %s", scope["method"], scope["path"], request_id, exc)
        return database_unavailable()
    log.error("unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id,
              exc_info=exc)
    return InternalError("The gateway failed to handle this request; it has been logged with its request id.")
