"""One error type for the dev server, carrying a gRPC status code as TF Serving's Status does."""

from __future__ import annotations

from grpc import StatusCode

# TF Serving's REST mapping of status codes (model_servers/http_server.cc, ToHTTPStatusCode).
HTTP_STATUS = {
    StatusCode.OK: 200, StatusCode.CANCELLED: 499, StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400, StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404, StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403, StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400, StatusCode.ABORTED: 409, StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501, StatusCode.INTERNAL: 500, StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500, StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request the server refuses: `code` (grpc.StatusCode) and a message for the client."""

    def __init__(self, code: StatusCode, message: str):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> ServingError:
    return ServingError(StatusCode.INVALID_ARGUMENT, message)
