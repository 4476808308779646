"""One error tree. Every error a client can see is a GatewayError; `render` gives the body.

Shape (the reference's): {"error": {"message": str, "type": str, "code": <HTTP status>}}
plus an optional "param".
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    type = "internal_error"
    # set at the provider edge (providers/http.py) for the router (services/routing.py). Only a
    # request the provider cannot have processed is ever sent again (docs/errors.md, "Retries"):
    # retryable: it may succeed on the same deployment (no connection, 429, 5xx before any body);
    # fallback: another deployment or model may serve it (those, and refused credentials or model);
    # provider_fault: counts against the deployment's circuit breaker (timeouts too).
    # Errors the client caused are none of these.
    retryable = False
    fallback = False
    provider_fault = False
    # the provider's own Retry-After, when it gave one: the router waits that long or moves on
    retry_hint: int | None = None

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if status is not None:
            self.status = status

    def body(self) -> dict:
        err: dict = {"message": self.message, "type": self.type, "code": self.status}
        if self.param is not None:
            err["param"] = self.param
        return {"error": err}

    def render(self) -> bytes:
        return orjson.dumps(self.body())

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(self.retry_after).encode())]


class InvalidRequest(GatewayError):
    status, type = 400, "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status, type = 401, "authentication_error"


class InsufficientCredits(GatewayError):
    status, type = 402, "insufficient_credits"


class PermissionDenied(GatewayError):
    status, type = 403, "permission_error"


class NotFound(GatewayError):
    status, type = 404, "not_found_error"


class MethodNotAllowed(GatewayError):
    status, type = 405, "invalid_request_error"


class RequestTimeout(GatewayError):
    status, type = 408, "invalid_request_error"


class RequestTooLarge(GatewayError):
    status, type = 413, "request_too_large"


class UnsupportedMediaType(GatewayError):
    status, type = 415, "invalid_request_error"


class RateLimited(GatewayError):
    status, type = 429, "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int | None = 1, param: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after, param=param, status=status)


class InternalError(GatewayError):
    status, type = 500, "internal_error"


class UpstreamError(GatewayError):
    status, type = 502, "upstream_error"


class ServiceUnavailable(GatewayError):
    status, type = 503, "service_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = 5, param: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after, param=param, status=status)


class UpstreamTimeout(GatewayError):
    status, type = 504, "upstream_timeout"
