"""The one error type of serving/ for a refused request, carrying a gRPC status code.

The server raises it with TF Serving's status code (`code`, a `grpc.StatusCode`); the client
raises it (code None) when the server refuses a request or cannot be reached. Its message goes
to clients, so it never holds absolute paths or Python exception text (those go to the server
log with the request id). A bad flag or config file of the programs is a plain TfzooError, as
anywhere in tfzoo, and ServingError is one too.
"""

from __future__ import annotations

import uuid

from tfzoo.errors import TfzooError

# TF Serving's REST mapping of status codes (model_servers/http_server.cc, ToHTTPStatusCode),
# by grpc.StatusCode name so the REST client needs no grpcio.
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(TfzooError):
    """A refused request: a message for the client and, server-side, a `grpc.StatusCode`.

    A TfzooError (so a ValueError), as every user mistake in tfzoo is: a caller catches a
    refused request and a bad flag or config alike with `except tfzoo.TfzooError`.
    """

    def __init__(self, message: str, code=None):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code.name] if self.code is not None else 500


def _code(name: str):
    import grpc  # deferred: the serving extra; the REST client raises ServingError without it

    return getattr(grpc.StatusCode, name)


def invalid(message: str) -> ServingError:
    return ServingError(message, _code("INVALID_ARGUMENT"))


def not_found(message: str) -> ServingError:
    return ServingError(message, _code("NOT_FOUND"))


def unavailable(message: str) -> ServingError:
    return ServingError(message, _code("UNAVAILABLE"))


def new_request_id() -> str:
    """A short random id, in the reply and in every server log line about the request."""
    return uuid.uuid4().hex[:16]
