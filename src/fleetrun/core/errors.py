"""The one error hierarchy of fleetrun.

    FleetrunError                   anything fleetrun raises on purpose
    ├── ValidationError             bad input: a malformed value, an unknown field   (400)
    ├── AuthenticationError         no credentials, or credentials that are wrong     (401)
    ├── AccessDeniedError           the caller may not do this                        (403)
    ├── NotFoundError               the named thing does not exist                    (404)
    │   └── ExpiredError            it existed, and retention has deleted it          (410)
    ├── ConflictError               the request clashes with the current state        (409)
    ├── PayloadTooLargeError        a script or a request body over the size limits   (413)
    ├── LimitExceededError          a quota or rate limit was reached                 (429)
    ├── ServerError                 the server failed; the request may be retried     (500)
    └── ConnectionError_            the server could not be reached                   (CLI/SDK only)

The server maps each class to its HTTP status in one place (the app factory); the SDK
maps the status and the error `type` of a response back to the same class, so that a
caller catches the same exception whether it talks to the server or to a store.
Every message is one sentence that says what was wrong and what to do.
"""

from __future__ import annotations


class FleetrunError(Exception):
    """Base of every error fleetrun raises on purpose."""

    status_code = 500
    type = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(FleetrunError):
    status_code = 400
    type = "ValidationError"


class AuthenticationError(FleetrunError):
    status_code = 401
    type = "AuthenticationError"


class AccessDeniedError(FleetrunError):
    status_code = 403
    type = "AccessDenied"


class NotFoundError(FleetrunError):
    status_code = 404
    type = "NotFound"


class ExpiredError(NotFoundError):
    status_code = 410
    type = "Expired"


class ConflictError(FleetrunError):
    status_code = 409
    type = "Conflict"


class PayloadTooLargeError(FleetrunError):
    status_code = 413
    type = "PayloadTooLarge"


class LimitExceededError(FleetrunError):
    status_code = 429
    type = "LimitExceeded"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerError(FleetrunError):
    status_code = 500
    type = "ServerError"


class ConnectionError_(FleetrunError):
    """The server could not be reached at all (raised by the SDK, never by the server)."""

    status_code = 0
    type = "ConnectionError"


ERROR_TYPES: dict[str, type[FleetrunError]] = {
    cls.type: cls
    for cls in (
        ValidationError,
        AuthenticationError,
        AccessDeniedError,
        NotFoundError,
        ExpiredError,
        ConflictError,
        PayloadTooLargeError,
        LimitExceededError,
        ServerError,
    )
}


def error_for(type_: str, status_code: int, message: str) -> FleetrunError:
    """The error class that a response with this `type` and status stands for."""
    cls = ERROR_TYPES.get(type_)
    if cls is None:
        cls = next((c for c in ERROR_TYPES.values() if c.status_code == status_code), FleetrunError)
    return cls(message)
