"""The TeamUp error body, and the exception that carries it to the response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MESSAGES = {
    400: "Your request was invalid.",
    401: "Authentication credentials were not provided or are invalid.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Could not satisfy the request Accept header.",
    414: "Request target too long.",
    429: "Request was throttled.",
    431: "Request header fields too large.",
    500: "A server error occurred.",
    503: "The service is temporarily unavailable.",
}

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    414: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "api_error",
    503: "api_error",
}


@dataclass
class ApiError(Exception):
    """An error answer: status, TeamUp code, message and per-parameter messages."""

    status: int
    code: str
    message: str | None = None
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The error body of SEMANTICS.md section 8, keys in its order."""
        return {
            "code": self.code,
            "field_errors": self.field_errors,
            "message": self.message or MESSAGES.get(self.status, "Error."),
            "type": TYPES.get(self.status, "api_error"),
        }


def invalid(parameter: str, *messages: str) -> ApiError:
    """A 400 ``parameter_invalid`` naming what is wrong with ``parameter``."""
    return ApiError(400, "parameter_invalid", field_errors={parameter: list(messages)})


def not_found() -> ApiError:
    return ApiError(404, "not_found")
